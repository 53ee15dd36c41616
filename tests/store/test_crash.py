"""kill -9 of a process mid-ingest: everything append() returned for survives."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np

from gpufleet.store import TimeSeriesStore, StoreOptions

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
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    env["PYTHONPATH"] = os.path.abspath(src) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path], stdout=subprocess.PIPE, env=env, text=True)
    last = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        last = int(line)
        if last >= 1500:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert last >= 1500
    for line in proc.stdout:  # acknowledgements still in the pipe when the kill landed
        if line.endswith("\n"):
            last = int(line)

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
