"""The overview's per-node summary, key by key (docs/ui.md lists them): pinned, since the live
stream's deltas and every open page depend on these exact keys and roundings."""

from __future__ import annotations

from gpufleet.hub.fleet import NodeView
from gpufleet.hub.ui.summary import node_summary
from gpufleet.snapshot import Gpu, GpuProcess, MigInstance, NodeSnapshot

MiB = 1 << 20


def test_every_key_of_a_node_summary() -> None:
    snap = NodeSnapshot(
        node="n1", timestamp=1000.123, labels={"rack": "r1"},
        values={"cpu_utilization_ratio": 0.256, "memory_total_bytes": 64e9, "memory_used_bytes": 16e9},
        gpus=[
            Gpu(index=0, uuid="G0", model="H100", vendor="nvidia",
                values={"utilization_ratio": 0.975, "memory_used_bytes": 1536.4 * MiB, "memory_total_bytes": 80 * 1024 * MiB,
                        "temperature_celsius": 71.5, "power_watts": 399.6, "processes": 9.0},
                processes=[GpuProcess(pid=1, user="bob", memory_bytes=1), GpuProcess(pid=2, user="alice", memory_bytes=1),
                           GpuProcess(pid=3, user="", memory_bytes=1), GpuProcess(pid=4, user="bob", memory_bytes=1)]),
            Gpu(index=1, uuid="G1", model="H100", vendor="nvidia", values={"processes": 2.0, "up": 0.0}),
            Gpu(index=12, uuid="G12", model="H100", vendor="nvidia", values={"memory_total_bytes": 40 * 1024 * MiB},
                mig=[MigInstance(gpu_instance=1, uuid="M1", profile="3g.40gb",
                               values={"graphics_engine_active_ratio": 0.5, "memory_total_bytes": 3.0}),
                     MigInstance(gpu_instance=2, uuid="M2", profile="1g.10gb",
                               values={"graphics_engine_active_ratio": 0.1, "memory_total_bytes": 1.0})]),
        ])
    v = NodeView("n1", status="up", agent_url="http://10.0.0.1:9401")
    v.snapshot = snap
    assert node_summary(v) == {
        "st": "up", "l": {"rack": "r1"}, "ts": 1000.12, "c": 26, "mt": 64000000000, "m": 25, "n": 3, "md": "H100",
        "g0": [98, 1536, 72, 400, 4], "gm0": 81920, "gu0": "?,alice,bob",
        "g1": [None, None, None, None, 2], "gd1": 1,
        "g12": [40, None, None, None, None], "gm12": 40960,
    }
    assert list(node_summary(v))[8:] == ["g0", "gm0", "gu0", "g1", "gd1", "g12", "gm12"]

    v.labels = {"cluster": "c"}  # the hub's labels for the node win over the snapshot's
    v.agent_url = None
    s = node_summary(v)
    assert s["l"] == {"cluster": "c"} and s["sp"].startswith("node n1 registered no address")
