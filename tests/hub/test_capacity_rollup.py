"""The hub's fleet capacity and per-group rollup: /metrics, hub values (alerts), groups file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from access import authed_client
from gpufleet.allocation.derive import apply
from gpufleet.allocation.grant import Grant
from gpufleet.hub.capacity import CapacityExtension, rollup
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.snapshot import Gpu, GpuProcess, MigInstance, NodeSnapshot, UserUsage


def node(name: str, holders: dict[int, tuple[str, float]], gpus: int = 4, group: dict[str, str] | None = None,
         mig: bool = False) -> NodeSnapshot:
    """`holders`: GPU index -> (user, utilisation); on a MIG node GPU 0 has a 3g and a 4g slice."""
    out = []
    for i in range(gpus):
        user, util = holders.get(i, ("", 0.0))
        procs = [GpuProcess(pid=100 + i, user=user, gpu_instance=1 if mig and i == 0 else None)] if user else []
        g = Gpu(index=i, uuid=f"GPU-{name}-{i}", model="NVIDIA H100", vendor="nvidia",
                values={} if mig and i == 0 else {"utilization_ratio": util}, processes=procs)
        if mig and i == 0:
            g.mig = [MigInstance(gpu_instance=1, profile="3g.40gb", values={"graphics_engine_active_ratio": util}),
                     MigInstance(gpu_instance=2, profile="4g.40gb", values={"graphics_engine_active_ratio": 0.0})]
        out.append(g)
    snap = NodeSnapshot(node=name, timestamp=time.time(), gpus=out,
                        usage=[UserUsage(user=u) for u, _ in holders.values()])
    apply(snap, groups=group)
    return snap


def test_rollup_sums_nodes_and_groups_users() -> None:
    a = node("a", {0: ("alice", 0.9), 1: ("alice", 0.0), 2: ("bob", 0.5)}, group={"alice": "nlp", "bob": "cv"})
    b = node("b", {0: ("carol", 0.02)}, mig=True, group={"carol": "nlp"})
    fleet, groups = rollup([a, b])
    assert fleet["fleet_gpus_free"] == 1 + 3 and fleet["fleet_gpus_held"] == 3 + 1
    assert fleet["fleet_gpu_equivalents_capacity"] == 8.0
    assert fleet["fleet_gpu_equivalents_held"] == pytest.approx(3 + 3 / 7, abs=1e-6)
    assert fleet["fleet_gpu_equivalents_idle_held"] == pytest.approx(1 + 3 / 7, abs=1e-6)
    assert fleet["fleet_gpu_equivalents_free"] == pytest.approx(1 + 3 + 4 / 7, abs=1e-6)
    assert groups["nlp"]["users"] == 2 and groups["nlp"]["gpus_allocated"] == 3
    assert groups["nlp"]["gpu_equivalents"] == pytest.approx(2 + 3 / 7, abs=1e-6)
    assert groups["nlp"]["gpu_equivalents_idle"] == pytest.approx(1 + 3 / 7, abs=1e-6)
    # alice: 0.9 and 0.0 on two whole GPUs, carol 0.02 on 3/7 of one
    assert groups["nlp"]["held_gpu_utilization_ratio"] == pytest.approx(0.9 / (2 + 3 / 7) + 0.02 * (3 / 7) / (2 + 3 / 7),
                                                                       abs=1e-6)
    assert groups["cv"]["gpu_equivalents"] == 1.0
    # The hub's groups file wins over what agents report.
    _, regrouped = rollup([a, b], {"alice": "ml", "carol": "ml"})
    assert sorted(regrouped) == ["cv", "ml"] and regrouped["ml"]["users"] == 2
    assert rollup([]) == ({}, {})


def test_hub_metrics_and_values_carry_fleet_and_groups(tmp_path: Path) -> None:
    gfile = tmp_path / "groups.csv"
    gfile.write_text("user,group\nalice,nlp\nbob,vision\n")
    hub = Hub(HubOptions(data=tmp_path / "data", groups_file=gfile))
    try:
        ext = CapacityExtension(hub)
        with authed_client(hub, [ext], role="viewer", background=False) as c:
            now = time.time()
            hub.fleet.update(node("a", {0: ("alice", 0.9), 1: ("bob", 0.01)}), now)
            hub.fleet.update(node("b", {2: ("alice", 0.7)}, gpus=8), now)
            text = c.get("/metrics").text
            assert "gpufleet_hub_fleet_gpu_equivalents_capacity 12" in text
            assert "gpufleet_hub_fleet_gpu_equivalents_idle_held 1" in text
            assert "gpufleet_hub_fleet_gpus_free 9" in text
            assert 'gpufleet_group_gpu_equivalents{group="nlp"} 2' in text
            assert 'gpufleet_group_gpu_equivalents_idle{group="vision"} 1' in text
            assert hub.values()["fleet_gpu_equivalents_held"] == 3.0  # what the alert engine reads
            # The file changes: the next rollup (after its one-second cache) follows it.
            gfile.write_text("user,group\nalice,ml\nbob,ml\n")
            ext._at = -1.0
            text = c.get("/metrics").text
            assert 'gpufleet_group_users{group="ml"} 2' in text and 'group="nlp"' not in text
    finally:
        hub.close()


def test_a_bad_groups_file_stops_the_hub_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "g.yaml"
    bad.write_text("groups: [alice]\n")
    r = subprocess.run([sys.executable, "-m", "gpufleet", "hub", "--data", str(tmp_path / "d"), "--listen",
                        "127.0.0.1:0", "--groups-file", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"--groups-file: {bad}: expected 'groups:'" in r.stderr, r.stderr


def test_builtin_accounting_rules_fire_on_the_hubs_figures(tmp_path: Path) -> None:
    from gpufleet.hub.alerts.engine import FIRING, Engine, NodeInput
    from gpufleet.hub.alerts.rules import load_rules

    hub = Hub(HubOptions(data=tmp_path / "data"))
    try:
        hub.extensions.append(CapacityExtension(hub))
        eng = Engine(load_rules(None).rules)
        firing: dict[str, float] = {}
        for minute in range(0, 125, 5):
            t = 1.8e9 + minute * 60.0
            snap = node("a", {0: ("alice", 0.01), 1: ("alice", 0.02)}, gpus=2)
            snap.timestamp = t
            hub.fleet.update(snap, t)
            hub.extensions[-1]._at = -1.0  # type: ignore[attr-defined]  # a fresh rollup at each step
            eng.evaluate([NodeInput("a", {}, snap)], hub.values(), now=t)
            for a in eng.alerts.values():
                if a.state == FIRING:
                    firing.setdefault(a.labels["alertname"], minute)
        assert firing["GpufleetFleetWaste"] == 30 and firing["GpufleetCapacityLow"] == 15
        assert firing["GpufleetCapacityUnderOneGpu"] == 15
        assert firing["GpufleetUserGpusIdle"] == 120
        alert = next(a for a in eng.alerts.values() if a.labels["alertname"] == "GpufleetUserGpusIdle")
        assert alert.labels["user"] == "alice" and alert.labels["node"] == "a"
    finally:
        hub.close()
