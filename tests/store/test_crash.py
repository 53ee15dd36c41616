"""kill -9 of a process mid-ingest: everything append() returned for survives."""
from __future__ import annotations

import textwrap

import numpy as np

from gpufleet.store import TimeSeriesStore, StoreOptions
from killed_child import run_and_kill

CHILD = textwrap.dedent(
    """
    import sys
    from gpufleet.store import TimeSeriesStore, StoreOptions
    opts = StoreOptions(head_span_s=50.0)
    store = TimeSeriesStore(sys.argv[1], opts)
    keys = [("gpu_util", (("gpu", str(g)),)) for g in range(16)]
    for i in range(200000):
        store.append("node-a", 1000.0 + i, keys, [float((i + g) % 101) for g in range(16)])
        if i % 97 == 0:
            store.maintain(1000.0 + i)  # cuts the head into blocks now and then
        print(i, flush=True)
    """
)


def test_kill_9_keeps_every_acknowledged_push(tmp_path) -> None:
    path = str(tmp_path / "db")
    last = run_and_kill(CHILD, path, lambda i: i >= 1500)
    assert last >= 1500

    store = TimeSeriesStore(path, StoreOptions(head_span_s=50.0))
    got = store.query_range("gpu_util", [], 1000.0, 1000.0 + last + 10, 1.0, "last")
    assert len(got) == 16
    for res in got:
        g = int(res.labels["gpu"])
        n = len(res.values)
        # all acknowledged pushes, plus possibly the one in flight at the kill
        assert n in (last + 1, last + 2)
        i = np.arange(n)
        assert res.timestamps.tolist() == (1000.0 + i).tolist()
        assert res.values == ((i + g) % 101).astype(float).tolist()
    # the node's dedup clock survived too: re-sending an old push is dropped
    keys = [("gpu_util", (("gpu", str(g)),)) for g in range(16)]
    assert store.append("node-a", 1000.0 + last, keys, [0.0] * 16) == 16
    store.close()
