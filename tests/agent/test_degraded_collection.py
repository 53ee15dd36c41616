"""A hung collector does not stop the others; an NVML field failing on one GPU costs only that field."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from backends.fake_nvml import NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_UNKNOWN, FakeDevice, FakeNvml
from conftest import FIXTURES, eventually
from gpufleet.agent.collect import Collection
from gpufleet.backends.nvml import NvmlBackend
from gpufleet.collectors import build
from gpufleet.collectors.base import CollectContext
from gpufleet.exposition import render
from gpufleet.snapshot import NodeSnapshot
from realparts import agent


class _Fast:
    def __init__(self, name: str) -> None:
        self.name = name

    def collect(self, snap: NodeSnapshot) -> None:
        snap.values[f"{self.name}_seen"] = 1.0


class _Hanging:
    name = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self, snap: NodeSnapshot) -> None:
        self.calls += 1
        self.release.wait(30)
        snap.values["hanging_seen"] = 1.0


def _by_name(snap: NodeSnapshot) -> dict[str, object]:
    return {c.collector: c for c in snap.collectors}


def test_a_hung_collector_times_out_and_is_skipped_until_it_returns() -> None:
    hanging = _Hanging()
    col = Collection("n1", [_Fast("a"), hanging, _Fast("b")], collector_timeout=0.2)
    t0 = time.perf_counter()
    snap = col.run()
    first = time.perf_counter() - t0
    st = _by_name(snap)
    assert 0.2 <= first < 1.0
    assert st["a"].success and st["b"].success and not st["hanging"].success
    assert "timed out after 0.2 s" in st["hanging"].error
    assert snap.values == {"a_seen": 1.0, "b_seen": 1.0}
    # While it stays stuck, later rounds skip it at once: the rest keeps flowing at full pace.
    t0 = time.perf_counter()
    snap = col.run()
    assert time.perf_counter() - t0 < 0.1 and hanging.calls == 1
    st = _by_name(snap)
    assert "still hung" in st["hanging"].error and st["hanging"].errors_total == 2
    assert snap.values == {"a_seen": 1.0, "b_seen": 1.0}
    # It returns: the next round runs it again.
    hanging.release.set()
    eventually(lambda: not col._hung["hanging"][0].is_alive(), timeout=5, what="the hung call to return")
    snap = col.run()
    assert _by_name(snap)["hanging"].success and hanging.calls == 2
    assert snap.values == {"a_seen": 1.0, "hanging_seen": 1.0, "b_seen": 1.0}


def test_a_hung_procfs_read_in_a_real_agent_leaves_the_rest_flowing(tmp_path: Path) -> None:
    """/proc/loadavg is a FIFO nobody writes: reading it blocks forever, like a stuck mount."""
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "proc", proc, symlinks=True)
    (proc / "loadavg").unlink(missing_ok=True)
    os.mkfifo(proc / "loadavg")
    with agent(tmp_path, "--procfs", str(proc), "--simulate", "2xRTX4090", "--interval", "0.5",
               "--collector-timeout", "0.5") as (_, url):
        def metrics() -> str:
            return httpx.get(f"{url}/metrics", timeout=5).text

        def value(name: str, text: str) -> float | None:
            m = re.search(rf"^{name} (\S+)$", text, re.M)
            return float(m.group(1)) if m else None

        def success(collector: str, text: str) -> float | None:
            return value(rf'gpufleet_collector_success\{{[^}}]*collector="{collector}"[^}}]*\}}', text)

        text = eventually(lambda: (t := metrics()) and success("cpu", t) == 0 and t,
                          timeout=20, what="the cpu collector reported failed")
        n0 = value(r"gpufleet_agent_collections_total(?:\{[^}]*\})?", text)
        t0 = time.monotonic()
        eventually(lambda: (value(r"gpufleet_agent_collections_total(?:\{[^}]*\})?", metrics()) or 0) >= n0 + 6,
                   timeout=10, what="six more collections")
        rate = 6 / (time.monotonic() - t0)
        text = metrics()
        assert re.search(r'^gpufleet_gpu_power_watts\{[^}]*gpu="1"', text, re.M), "accelerators still flow"
        assert success("accelerators", text) == 1
        print(f"\nhung /proc/loadavg: {rate:.1f} collections/s go on (interval 0.5 s)")
        # The mount "comes back": a real file in place of the FIFO, and the stuck read gets its data.
        fd = os.open(proc / "loadavg", os.O_WRONLY)
        (tmp_path / "loadavg").write_bytes(b"0.50 0.40 0.30 1/200 4242\n")
        os.replace(tmp_path / "loadavg", proc / "loadavg")
        os.write(fd, b"0.50 0.40 0.30 1/200 4242\n")
        os.close(fd)
        eventually(lambda: success("cpu", metrics()) == 1, timeout=20, what="the cpu collector back")


def test_nvml_errors_per_field_and_device_through_the_agent() -> None:
    """One field failing on one GPU is absent from that GPU's series only; a lost GPU is down alone."""
    devs = [FakeDevice(uuid=f"GPU-{n:08x}-aaaa-bbbb-cccc-dddddddddddd",
                       pci_bus_id=f"00000000:{0x18 + n:02X}:00.0".encode()) for n in range(3)]
    devs[0].errors = {"nvmlDeviceGetPowerUsage": NVML_ERROR_NOT_SUPPORTED}
    devs[1].errors = {"nvmlDeviceGetTemperatureV": NVML_ERROR_UNKNOWN, "nvmlDeviceGetFanSpeed": NVML_ERROR_UNKNOWN}
    backend = NvmlBackend(nvml=FakeNvml(devs))
    backend.open()
    col = Collection("n1", build(CollectContext(backend=backend), ["accelerators"]))
    col.run()
    text = render(col.run()).decode()

    def has(metric: str, gpu: int) -> bool:
        return re.search(rf'^{metric}\{{[^}}]*gpu="{gpu}"', text, re.M) is not None

    assert not has("gpufleet_gpu_power_watts", 0) and has("gpufleet_gpu_power_watts", 1)
    assert has("gpufleet_gpu_power_watts", 2) and has("gpufleet_gpu_temperature_celsius", 0)
    assert not has("gpufleet_gpu_temperature_celsius", 1) and not has("gpufleet_gpu_fan_speed_ratio", 1)
    assert has("gpufleet_gpu_temperature_celsius", 2) and has("gpufleet_gpu_utilization_ratio", 1)
    assert re.search(r'^gpufleet_collector_success\{[^}]*collector="accelerators"[^}]*\} 1$', text, re.M)
    for g in range(3):
        assert re.search(rf'^gpufleet_gpu_up\{{[^}}]*gpu="{g}"[^}}]*\}} 1$', text, re.M)
