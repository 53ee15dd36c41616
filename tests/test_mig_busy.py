"""MIG GPUs report no whole-GPU utilisation: the overview, heatmap and `top` use their instances'."""

from __future__ import annotations

import msgspec

from gpufleet.agent.collect import Collection
from gpufleet.backends.sim import SimBackend
from gpufleet.collectors import SIMULATED_NODE, build
from gpufleet.collectors.base import CollectContext
from gpufleet.hub.fleet import Fleet
from gpufleet.hub.ui.summary import node_summary
from gpufleet.snapshot import gpu_busy_ratio, to_json
from gpufleet.tui.layout import gpu_line
from gpufleet.tui.model import build as build_rows

GiB = 1024.0**3


def test_busy_ratio_of_a_mig_gpu_weighs_instances_by_their_memory() -> None:
    assert gpu_busy_ratio({"utilization_ratio": 0.3}, [{"graphics_engine_active_ratio": 1.0}]) == 0.3
    mig = [{"graphics_engine_active_ratio": 0.9, "memory_total_bytes": 40 * GiB},  # 4g.40gb
           {"graphics_engine_active_ratio": 0.1, "memory_total_bytes": 10 * GiB},  # 1g.10gb
           {"memory_total_bytes": 10 * GiB}]  # no reading: left out, not counted as 0
    assert abs(gpu_busy_ratio({}, mig) - (0.9 * 40 + 0.1 * 10) / 50) < 1e-12  # type: ignore[operator]
    assert gpu_busy_ratio({}, []) is None and gpu_busy_ratio({}, [{"memory_total_bytes": 1.0}]) is None


def _mig_node() -> tuple[object, list[float]]:
    backend = SimBackend("4xA100-mig", node="mig-01", seed=3)
    col = Collection("mig-01", build(CollectContext(backend=backend, options={"node": "mig-01"}), SIMULATED_NODE))
    snap = col.run(now=1000.0)
    snap = col.run(now=1030.0)  # jobs placed and running
    want = [gpu_busy_ratio(g.values, [m.values for m in g.mig]) for g in snap.gpus]
    assert all(g.mig and "utilization_ratio" not in g.values for g in snap.gpus)
    assert all(w is not None for w in want) and any(w > 0.05 for w in want)  # type: ignore[operator]
    return snap, want  # type: ignore[return-value]


def test_overview_and_heatmap_use_the_instances() -> None:
    snap, want = _mig_node()
    fleet = Fleet(down_after=120)
    fleet.update(snap, 1030.0, None)  # type: ignore[arg-type]
    s = node_summary(fleet.nodes["mig-01"])
    assert [s[f"g{i}"][0] for i in range(4)] == [round(w * 100) for w in want]


def test_top_counts_busy_mig_gpus() -> None:
    snap, want = _mig_node()
    data = msgspec.json.decode(to_json(snap))  # type: ignore[arg-type]
    fleet = build_rows([data], {})
    gpus = fleet.nodes[0].gpus
    assert [g.util for g in gpus] == want  # the instances' activity, not a missing whole-GPU reading
    busy = sum(1 for w in want if w >= 0.05)
    assert len(fleet.free_gpus()) <= 4 - busy
    line = "".join(seg.text for seg in gpu_line(gpus[0], fleet.nodes[0], 120))
    assert f"{100 * want[0]:3.0f}%" in line
