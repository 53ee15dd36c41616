"""The store's series index at a fleet's join, in-process: what a node's first push costs it.

Run: .venv/bin/python benchmarks/bench_series_index.py [--nodes 1000]

Each simulated node (benchmarks/_hubload.py: 8 GPUs + a 224-CPU host, ~990 series) registers
its first push's keys, as the hub's store does. Prints the CPU per node, the index's memory
(tracemalloc), series.log's size, the time to open it again (a hub restart), and label queries
over the fleet. For A/B runs against another tree: `PYTHONPATH=/path/to/old/src` (this script
keeps it first on the path).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line  # noqa: E402
import _hubload  # noqa: E402

for p in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if p:
        sys.path.insert(0, p)  # _hubload puts this tree's src first: an A/B run wants the other


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    a = ap.parse_args()
    import msgspec

    from gpufleet.series import snapshot_series
    from gpufleet.snapshot import NodeSnapshot
    from gpufleet.store import Matcher
    from gpufleet.store.series_index import SeriesIndex

    print(f"# bench_series_index: {machine_line()}")
    tmpl = _hubload.build_templates(1, "hub")
    keys = []
    for i in range(a.nodes):
        name = _hubload.node_name(i)
        body = _hubload.stamp(tmpl[_hubload.profile_of(i)][0], name.encode(), b"1000.0")
        snap = msgspec.convert(msgspec.json.decode(body)["snapshots"][0], NodeSnapshot)
        keys.append((name, list(snapshot_series(snap, _hubload.node_labels(i))[0])))
    cpu = 0.0
    index = SeriesIndex(os.path.join(tempfile.mkdtemp(prefix="bench-series-index-"), "series.log"))
    for name, ks in keys:  # timed without tracemalloc (it slows allocation several-fold)
        c0 = time.process_time()
        index.sids_for(index.node_id(name), ks)
        cpu += time.process_time() - c0
    index.close()
    log = os.path.join(tempfile.mkdtemp(prefix="bench-series-index-"), "series.log")
    gc.collect()
    tracemalloc.start()
    index = SeriesIndex(log)
    for name, ks in keys:
        index.sids_for(index.node_id(name), ks)
    gc.collect()
    mem = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    series = sum(len(ks) for _, ks in keys)
    print(f"# join: {cpu / a.nodes * 1e3:.2f} ms CPU per node's first push ({series / a.nodes:.0f} series), "
          f"index {mem / 2**20:.1f} MiB for {series:,} series, series.log {os.path.getsize(log) / 2**20:.1f} MiB")
    metric = "gpufleet_gpu_utilization_ratio"
    one = _hubload.node_name(a.nodes // 2)
    for what, ms in [("one GPU of one node", [Matcher("node", "=", one), Matcher("gpu", "=", "3")]),
                     ("gpu=0 on every node", [Matcher("gpu", "=", "0")]),
                     ("every GPU of the fleet", [])]:
        runs = 200 if "one node" in what else 5
        c0 = time.perf_counter()
        for _ in range(runs):
            got = index.match(metric, ms)
        dt = (time.perf_counter() - c0) / runs
        print(f"# query {metric} ({what}): {len(got)} series, match {dt * 1e3:.3f} ms")
    index.close()
    del index, keys
    gc.collect()
    c0 = time.process_time()
    SeriesIndex(log).close()
    print(f"# reopen (a restart): {time.process_time() - c0:.2f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
