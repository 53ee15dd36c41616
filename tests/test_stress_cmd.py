"""`gpufleet stress`: drives a running simulator end to end; without torch or CuPy it says how, in one line."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import eventually
from gpufleet.backends import sim_control
from gpufleet.backends.sim import SimBackend
from realparts import Proc, free_port, gpufleet


def _run(control: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpufleet("stress", *args), capture_output=True, text=True, timeout=60,
                          env={**os.environ, sim_control.ENV: str(control)})


def test_without_torch_or_cupy_it_says_how(tmp_path: Path) -> None:
    assert importlib.util.find_spec("torch") is None and importlib.util.find_spec("cupy") is None
    r = _run(tmp_path / "no-simulator-here", "--seconds", "5")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
    assert "pip install torch" in lines[0] and "never installs them" in lines[0] and "--simulate" in lines[0]
    for bad, says in ((("--gpus", "a,b"), "--gpus"), (("--load", "1.5"), "--load"), (("--seconds", "0"), "--seconds")):
        r = _run(tmp_path / "x", *bad)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr


def test_the_simulator_reads_the_control_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sim_control.ENV, str(tmp_path))
    monkeypatch.setattr(sim_control, "CHECK_EVERY_S", 0.0)  # every sample looks at the file
    b = SimBackend("2xRTX4090", seed=3, node="n1")
    sim_control.write(sim_control.Stress(0.97, time.time() + 60, gpus=(1,)))
    for _ in range(3):
        gpus = b.sample()
        assert gpus[1].values["utilization_ratio"] >= 0.97
    assert sim_control.simulators() == [os.getpid()]
    sim_control.write(sim_control.Stress(1.0, time.time() + 60, nodes=("another-node",)))
    b.sample()  # a stress for another node: this one's jobs decide
    assert b._devs[0].stress_util is None and b._devs[1].stress_util is None  # noqa: SLF001
    sim_control.write(sim_control.Stress(0.5, time.time() - 1))  # over
    b.sample()
    assert all(d.stress_util is None for d in b._devs)  # noqa: SLF001
    for junk in ("", "{", '{"load": 2, "until": 1}', '{"until": 1}'):
        assert sim_control.parse(junk) is None


@pytest.mark.realparts
def test_stress_drives_a_simulated_agent(tmp_path: Path) -> None:
    control = tmp_path / "control"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    agent = Proc(gpufleet("agent", "--simulate", "2xRTX4090", "--interval", "0.5", "--listen", f"127.0.0.1:{port}"),
                 tmp_path / "agent.log", env={sim_control.ENV: str(control)})
    stress = None
    try:
        agent.wait_http(f"{url}/healthz")
        eventually(lambda: sim_control.simulators(control), timeout=15, what="the simulator's presence")

        def util(gpu: int) -> float:
            snap = httpx.get(f"{url}/api/v1/snapshot", timeout=5).json()
            return float(snap["gpus"][gpu]["values"]["utilization_ratio"])

        stress = Proc(gpufleet("stress", "--gpus", "1", "--seconds", "8", "--load", "0.99"), tmp_path / "stress.log",
                      env={sim_control.ENV: str(control)})
        eventually(lambda: util(1) >= 0.99, timeout=15, what="GPU 1 at the stress load")
        # it stays there, round after round, and shows in /metrics as in the snapshot
        seen = time.monotonic()
        while time.monotonic() - seen < 1.5:
            assert util(1) >= 0.99
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        line = next(x for x in metrics.splitlines()
                    if x.startswith("gpufleet_gpu_utilization_ratio{") and 'gpu="1"' in x)
        assert float(line.rsplit(" ", 1)[1]) >= 0.99
        assert stress.p.wait(30) == 0 and "done" in stress.log() and "GPUs 1 at 99%" in stress.log()
        assert not (control / sim_control.STRESS_FILE).exists()  # cleaned up: the simulator goes back to its jobs
    finally:
        if stress is not None:
            stress.stop()
        agent.stop()


def test_duty_cycle_reaches_the_load() -> None:
    """The real path's loop with the GPU library faked at its boundary: 2 ms kernels."""
    from gpufleet.stress_gpu import Engine, run

    calls: dict[int, int] = {0: 0, 1: 0}

    def make(gpu: int):  # type: ignore[no-untyped-def]
        def work() -> None:
            calls[gpu] += 1
            time.sleep(0.002)
        return work

    got = run(Engine("fake", lambda: 2, make), [0, 1], seconds=1.5, load=0.5)
    assert set(got) == {0, 1} and all(0.4 <= v <= 0.65 for v in got.values()), got
    assert all(n > 50 for n in calls.values())
    assert run(Engine("fake", lambda: 1, make), [0], seconds=1.0, load=1.0)[0] > 0.9
