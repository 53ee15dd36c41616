"""Real GPU load for `gpufleet stress`: duty-cycled matrix multiplications with torch or CuPy.

In each period (0.1 s) a GPU multiplies matrices for `load` of the period and sleeps the rest,
timing the work with a device synchronisation, so utilisation (the share of time a kernel
runs) settles near `load`. Neither library is a dependency: `find_engine` imports whichever
is installed, and says how to install one when neither is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import UserError

PERIOD_S = 0.1
SIZE = 4096  # 4096^2 fp16 matrices: ~30 us on an H100, 5 ms on a small GPU; many fit a period

MISSING = ("gpufleet stress needs PyTorch or CuPy with CUDA to load real GPUs (it never installs them): "
           "`pip install torch` or `pip install cupy-cuda12x`; on a simulated node start the simulator first "
           "(`gpufleet up --simulate N` or `gpufleet agent --simulate PROFILE`) or pass --simulate")


@dataclass(slots=True)
class Engine:
    name: str
    count: Callable[[], int]
    make_work: Callable[[int], Callable[[], None]]  # GPU index -> one unit of work, synchronised


def _torch() -> Engine | None:
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None

    def make(gpu: int) -> Callable[[], None]:
        dev = torch.device("cuda", gpu)
        a = torch.randn(SIZE, SIZE, device=dev, dtype=torch.float16)
        b = torch.randn(SIZE, SIZE, device=dev, dtype=torch.float16)

        def work() -> None:
            torch.matmul(a, b)
            torch.cuda.synchronize(dev)
        return work
    return Engine("torch", torch.cuda.device_count, make)


def _cupy() -> Engine | None:
    try:
        import cupy  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver or no device: CuPy raises its own CUDARuntimeError
        return None
    if n == 0:
        return None

    def make(gpu: int) -> Callable[[], None]:
        with cupy.cuda.Device(gpu):
            a = cupy.random.standard_normal((SIZE, SIZE), dtype=cupy.float32).astype(cupy.float16)
            b = cupy.random.standard_normal((SIZE, SIZE), dtype=cupy.float32).astype(cupy.float16)

        def work() -> None:
            with cupy.cuda.Device(gpu):
                cupy.matmul(a, b)
                cupy.cuda.Device(gpu).synchronize()
        return work
    return Engine("cupy", lambda: n, make)


def find_engine() -> Engine:
    for find in (_torch, _cupy):
        engine = find()
        if engine is not None:
            return engine
    raise UserError(MISSING)


def run(engine: Engine, gpus: list[int], seconds: float, load: float,
        stop: threading.Event | None = None) -> dict[int, float]:
    """Load each GPU for `seconds`; returns the busy share each achieved."""
    stop = stop or threading.Event()
    achieved: dict[int, float] = {}
    errors: list[BaseException] = []

    def drive(gpu: int) -> None:
        try:
            work = engine.make_work(gpu)
            busy_total = 0.0
            start = time.monotonic()
            end = start + seconds
            while not stop.is_set() and time.monotonic() < end:
                period_start = time.monotonic()
                while time.monotonic() - period_start < load * PERIOD_S:
                    work()
                busy_total += time.monotonic() - period_start
                rest = PERIOD_S - (time.monotonic() - period_start)
                if rest > 0:
                    stop.wait(rest)
            achieved[gpu] = busy_total / max(1e-9, time.monotonic() - start)
        except Exception as e:  # out of memory, a GPU taken away: reported per GPU
            errors.append(e)

    threads = [threading.Thread(target=drive, args=(g,), name=f"stress-gpu{g}", daemon=True) for g in gpus]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise UserError(f"stress on the GPU failed: {type(errors[0]).__name__}: {errors[0]}")
    return achieved
