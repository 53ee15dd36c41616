"""Faults with real processes: kill -9 mid-merge, and a hub started on a store damaged in every file kind."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np

from access import bearer, make_api_key
from gpufleet.store import StoreOptions, TimeSeriesStore
from killed_child import run_and_kill
from realparts import Proc, free_port, gpufleet

CHILD = textwrap.dedent(
    """
    import sys
    from gpufleet.store import TimeSeriesStore, StoreOptions
    store = TimeSeriesStore(sys.argv[1], StoreOptions(head_span_s=20.0, merge_fanout=2))
    keys = [("gpu_util", (("gpu", str(g)),)) for g in range(4)]
    for i in range(200000):
        for n in range(6):
            store.append(f"node-{n}", 1000.0 + i, keys, [float((i + g + n) % 101) for g in range(4)])
        store.maintain(1000.0 + i, budget_s=0.0)  # merges advance one node per call
        print(i, flush=True)
    """
)


def test_kill_9_mid_merge_keeps_every_acknowledged_push(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    # killed while a merged block is half written (its .tmp exists)
    last = run_and_kill(CHILD, path, lambda i: i >= 300 and bool(glob.glob(os.path.join(path, "blocks", "*", "*.tmp"))))
    assert last >= 300
    t0 = time.monotonic()
    s = TimeSeriesStore(path, StoreOptions(head_span_s=20.0, merge_fanout=2))
    recovered_s = time.monotonic() - t0
    got = s.query_range("gpu_util", [], 1000.0, 1000.0 + last + 10, 1.0, "last")
    assert len(got) == 24 and not s.damage
    for r in got:
        g, n = int(r.labels["gpu"]), int(r.labels["node"].split("-")[1])
        m = len(r.values)
        assert m in (last + 1, last + 2)  # every acknowledged push, + possibly the one in flight
        i = np.arange(m)
        assert r.timestamps.tolist() == (1000.0 + i).tolist()
        assert r.values == ((i + g + n) % 101).astype(float).tolist()
    assert not glob.glob(os.path.join(path, "blocks", "*", "*.tmp"))
    s.close()
    print(f"kill -9 mid-merge: 0 acknowledged samples lost, reopened in {recovered_s:.1f} s")


def _damage(p: Path, at: int, n: int = 64) -> None:
    b = bytearray(p.read_bytes())
    b[at:at + n] = bytes(x ^ 0x5A for x in b[at:at + n])
    p.write_bytes(bytes(b))


def test_hub_starts_on_a_store_damaged_in_every_file_kind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = TimeSeriesStore(str(data / "tsdb"))
    keys = [("gpufleet_gpu_utilization_ratio", (("gpu", str(g)),)) for g in range(4)]
    now = time.time()
    for i in range(300):
        if i == 150:
            s.maintain(now - 300 + i, full=True)
        for node in ("a", "b", "c"):
            s.append(node, now - 300 + i, keys, [float(i % 9)] * 4)
    s.close()
    tsdb = data / "tsdb"
    wal = next((tsdb / "wal").glob("*.log"))
    _damage(wal, wal.stat().st_size // 4)  # 64 bytes a quarter in
    index = tsdb / "series.log"
    _damage(index, index.stat().st_size // 2, 4)
    blk = next((tsdb / "blocks" / "r0").glob("*.blk"))
    _damage(blk, blk.stat().st_size - 40, 8)  # its index
    snap = tsdb / "series.snap"
    _damage(snap, snap.stat().st_size - 10, 4)
    key = make_api_key(data, "viewer")
    port = free_port()
    t0 = time.monotonic()
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data)), tmp_path / "hub.log")
    try:
        hub.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        started_s = time.monotonic() - t0
        # what was set aside is counted on the hub's /metrics, for an alert or a dashboard
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=bearer(key), timeout=10).text
        damaged = [ln for ln in metrics.splitlines() if ln.startswith("gpufleet_hub_store_damaged_total ")]
        assert damaged and float(damaged[0].split()[1]) >= 4, damaged
    finally:
        hub.stop()
    log = hub.log_path.read_text(errors="replace")
    assert "gpufleet/store/" not in log  # no traceback through the store
    lines = [x for x in log.splitlines() if " ERROR gpufleet.store: " in x]
    for f in (wal, index, blk, snap):
        assert sum(str(f) in x for x in lines) == 1, (f, lines)
    print(f"hub with every store file kind damaged: up in {started_s:.1f} s")
    # what the hub set aside stays aside; the store is clean again
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    r = subprocess.run([sys.executable, "-m", "gpufleet", "store", "check", "--data", str(data)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
