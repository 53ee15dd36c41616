"""--compat node: node_exporter's names, types, label names and values, held against a real
node_exporter (Debian's prometheus-node-exporter) reading the same host."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.agent.service import AgentService
from gpufleet.config import AgentConfig
from gpufleet.exposition import render
from gpufleet.snapshot import Disk
from realparts import node_exporter, promtool_check_metrics
from sample_snapshot import sample_snapshot


def _families(text: str) -> dict[str, tuple[str, set[frozenset[str]], list[tuple[dict[str, str], float]]]]:
    """name -> (type, label-name sets, samples); counters keyed by their full `_total` name."""
    out = {}
    for f in text_string_to_metric_families(text):
        name = f.name + "_total" if f.type == "counter" else f.name
        out[name] = (f.type, {frozenset(s.labels) for s in f.samples}, [(s.labels, s.value) for s in f.samples])
    return out


def test_derived_readings_and_one_row_per_block_device() -> None:
    snap = sample_snapshot()
    snap.values.update(swap_total_bytes=8e9, swap_used_bytes=1e9, memory_available_bytes=50e9)
    snap.cpus[0].values.update(user_seconds_total=12.5, idle_seconds_total=100.0)
    snap.disks = [
        Disk(device="/dev/vda1", mountpoint="/", fstype="ext4",
             values={"size_bytes": 100.0, "used_bytes": 30.0, "free_bytes": 60.0, "read_bytes_total": 5.0}),
        Disk(device="/dev/vda1", mountpoint="/var/lib/docker", fstype="ext4",
             values={"size_bytes": 100.0, "used_bytes": 30.0, "free_bytes": 60.0, "read_bytes_total": 5.0}),
    ]
    fams = _families(render(snap, compat=("node",)).decode())
    assert fams["node_memory_SwapFree_bytes"][2] == [({}, 7e9)]
    assert fams["node_memory_MemAvailable_bytes"][2] == [({}, 50e9)]
    assert fams["node_cpu_seconds_total"][2] == [({"cpu": "0", "mode": "user"}, 12.5),
                                                 ({"cpu": "0", "mode": "idle"}, 100.0)]
    free = fams["node_filesystem_free_bytes"][2]
    assert free[0] == ({"device": "/dev/vda1", "fstype": "ext4", "mountpoint": "/"}, 70.0)  # size - used
    assert fams["node_filesystem_avail_bytes"][2][0][1] == 60.0
    assert fams["node_disk_read_bytes_total"][2] == [({"device": "vda1"}, 5.0)]
    assert fams["node_network_receive_bytes_total"][2] == [({"device": "eth0"}, 12345.0)]
    assert fams["node_uname_info"][2][0][0]["release"] == "6.1.0"
    # absent readings stay absent (this snapshot has no load5, no MemFree)
    assert "node_load5" not in fams and "node_memory_MemFree_bytes" not in fams


@pytest.mark.realparts
def test_names_types_labels_and_values_match_a_real_node_exporter(tmp_path: Path) -> None:
    svc = AgentService(AgentConfig(node="cmp", backend="none", compat=["node"]))
    svc.collect_once()
    body = svc.collect_once().body("text", False)
    ours = _families(body.decode())
    with node_exporter(tmp_path) as (_, url):
        theirs = _families(httpx.get(f"{url}/metrics").text)
    node_names = {n for n in ours if n.startswith("node_")}
    assert {"node_cpu_seconds_total", "node_load1", "node_load5", "node_load15", "node_memory_MemTotal_bytes",
            "node_memory_MemAvailable_bytes", "node_memory_MemFree_bytes", "node_memory_Cached_bytes",
            "node_memory_Buffers_bytes", "node_memory_SwapTotal_bytes", "node_memory_SwapFree_bytes",
            "node_memory_SReclaimable_bytes", "node_time_seconds",
            "node_filesystem_size_bytes", "node_filesystem_avail_bytes", "node_filesystem_free_bytes",
            "node_network_receive_bytes_total", "node_network_transmit_bytes_total", "node_disk_read_bytes_total",
            "node_disk_written_bytes_total", "node_disk_io_time_seconds_total", "node_boot_time_seconds",
            "node_uname_info"} <= node_names
    for name in node_names:
        assert name in theirs, f"{name}: node_exporter has no such family"
        assert ours[name][0] == theirs[name][0], f"{name}: type {ours[name][0]}, node_exporter {theirs[name][0]}"
        assert ours[name][1] <= theirs[name][1] or ours[name][1] == theirs[name][1], \
            f"{name}: labels {ours[name][1]}, node_exporter {theirs[name][1]}"
    # the same host read twice: identities agree, slow readings nearly so
    for name in ("node_memory_MemTotal_bytes", "node_boot_time_seconds", "node_memory_SwapTotal_bytes"):
        assert ours[name][2][0][1] == pytest.approx(theirs[name][2][0][1], rel=1e-3, abs=1), name
    assert ours["node_time_seconds"][2][0][1] == pytest.approx(theirs["node_time_seconds"][2][0][1], abs=60)
    cpus = {(lbl["cpu"], lbl["mode"]) for lbl, _ in ours["node_cpu_seconds_total"][2]}
    assert cpus == {(lbl["cpu"], lbl["mode"]) for lbl, _ in theirs["node_cpu_seconds_total"][2]}
    idle = {lbl["cpu"]: v for lbl, v in theirs["node_cpu_seconds_total"][2] if lbl["mode"] == "idle"}
    for lbl, v in ours["node_cpu_seconds_total"][2]:
        if lbl["mode"] == "idle":
            assert v == pytest.approx(idle[lbl["cpu"]], abs=30), lbl  # read seconds apart
    sizes = {lbl["mountpoint"]: v for lbl, v in theirs["node_filesystem_size_bytes"][2]}
    for lbl, v in ours["node_filesystem_size_bytes"][2]:
        if lbl["mountpoint"] in sizes:
            assert v == sizes[lbl["mountpoint"]], lbl
    # promtool's lint flags node_exporter's own camelCase memory names (node_memory_MemTotal_bytes):
    # node_exporter gets the same findings; nothing else may be flagged.
    rc, out = promtool_check_metrics(body)
    problems = [line for line in out.splitlines() if line.strip()]
    assert rc in (0, 3) and problems, out
    assert all(p.startswith("node_memory_") and "not 'camelCase'" in p for p in problems), out
