"""The GPU health rules on the simulator's fault profile: a failing memory is flagged for drain
and reset, a flaky NVLink and a hot GPU are named, and the healthy GPUs stay quiet (fixed seed)."""

from __future__ import annotations

from gpufleet.backends.sim import SimBackend
from gpufleet.hub.alerts.engine import FIRING, Engine, NodeInput
from gpufleet.hub.alerts.rules import load_rules
from gpufleet.snapshot import NodeSnapshot
from conftest import FakeClock

T0 = 1_700_000_000.0
HEALTH = {"GpufleetGpuRowRemapFailure", "GpufleetGpuUncorrectableRowRemap", "GpufleetGpuRowRemapPending",
          "GpufleetGpuNvlinkErrors", "GpufleetGpuThermalThrottling"}


def test_fault_profile_fires_the_health_alerts_on_the_right_gpus() -> None:
    clock = FakeClock(T0)
    backend = SimBackend("8xH100-faults", seed=0, node="hgx-bad", clock=clock)
    engine = Engine(load_rules(None).rules)
    fired: dict[str, set[str]] = {}  # alert -> GPUs it fired for
    while clock.t <= T0 + 4 * 3600:
        snap = NodeSnapshot(node="hgx-bad", timestamp=clock.t, gpus=backend.sample())
        engine.evaluate([NodeInput("hgx-bad", {}, snap)], {}, now=clock.t)
        for a in engine.alerts.values():
            if a.state == FIRING:
                fired.setdefault(a.labels["alertname"], set()).add(a.labels["gpu"])
        clock.t += 60.0
    assert fired["GpufleetGpuRowRemapFailure"] == {"3"}  # drain
    # the profile's raised random fault rate gives other GPUs an uncorrectable error now and then
    assert "3" in fired["GpufleetGpuUncorrectableRowRemap"]  # drain, then reset
    assert "3" in fired["GpufleetGpuRowRemapPending"]  # reset needed
    assert fired["GpufleetGpuNvlinkErrors"] == {"5"}
    assert fired["GpufleetGpuThermalThrottling"] == {"1"}


def test_a_healthy_node_fires_none_of_them() -> None:
    clock = FakeClock(T0)
    backend = SimBackend("8xH100", seed=0, node="hgx-ok", clock=clock)
    engine = Engine(load_rules(None).rules)
    while clock.t <= T0 + 2 * 3600:
        snap = NodeSnapshot(node="hgx-ok", timestamp=clock.t, gpus=backend.sample())
        engine.evaluate([NodeInput("hgx-ok", {}, snap)], {}, now=clock.t)
        assert not {a.labels["alertname"] for a in engine.alerts.values() if a.state == FIRING} & HEALTH
        clock.t += 60.0
