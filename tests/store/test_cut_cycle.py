"""Incremental head cut: maintain(budget_s=...) cuts a cycle's nodes over several calls."""
from __future__ import annotations

import glob
import math
import os
import shutil
import textwrap

import numpy as np
import pytest

from killed_child import run_and_kill
from gpufleet.store import Matcher, StoreOptions, TimeSeriesStore

T0 = 1_700_006_400.0  # a multiple of 86400
NODES = [f"n{i:02d}" for i in range(12)]
OPTS = dict(head_span_s=100.0)


def k(metric: str, **labels: str):
    return (metric, tuple(sorted(labels.items())))


class Fleet:
    """Pushes every 5 s from NODES (a series that comes and goes, NaN gaps); keeps the truth."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.truth: dict[tuple[str, str], dict[float, float]] = {}
        self.t = 0

    def push(self, s: TimeSeriesStore, nodes=NODES) -> float:
        ts = T0 + 5.0 * self.t + 0.25
        for node in nodes:
            keys = [k("util", gpu=str(g)) for g in range(3)]
            if (self.t // 13) % 2 == 0:
                keys.append(k("util", gpu="9"))
            vals = np.round(self.rng.normal(50, 20, len(keys)), 2)
            vals[self.rng.random(len(keys)) < 0.05] = np.nan
            assert s.append(node, ts, keys, vals.tolist()) == 0
            for key, v in zip(keys, vals):
                if not np.isnan(v):
                    self.truth.setdefault((node, dict(key[1])["gpu"]), {})[ts] = float(v)
        self.t += 1
        return ts

    def check(self, s: TimeSeriesStore) -> None:
        """Every acknowledged sample exactly once, at raw resolution."""
        end = T0 + 5.0 * self.t + 10
        got = s.query_range("util", [], T0, end, 1.0, "last")
        assert {(r.labels["node"], r.labels["gpu"]) for r in got} == set(self.truth)
        for r in got:
            want = self.truth[(r.labels["node"], r.labels["gpu"])]
            assert r.timestamps.tolist() == [math.floor(t) for t in want]
            assert r.values == list(want.values())
        # all stored samples of each series, blocks and head: a duplicate would show here
        for sid in s.series_index.match("util", []):
            lab = s.series_index.labels(sid)
            ts, cols = s._gather(sid, 0, -math.inf, math.inf)
            want = self.truth[(lab["node"], lab["gpu"])]
            assert ts.tolist() == list(want) and cols[0].tolist() == list(want.values())


def _wals(path: str) -> list[str]:
    return sorted(glob.glob(os.path.join(path, "wal", "*.log")))


def _snapshot(s: TimeSeriesStore) -> list:
    out = []
    for step, agg in ((1.0, "last"), (60.0, "avg"), (60.0, "max"), (3600.0, "min"), (3600.0, "last")):
        start = T0 if step < 3600 else T0 - 3600 * 24 * 3  # long ranges read rollups
        for r in s.query_range("util", [Matcher("gpu", "=~", "0|9")], start, T0 + 7200, step, agg):
            out.append((step, agg, tuple(sorted(r.labels.items())), r.timestamps.tolist(), r.values))
    out.append(tuple(s.latest(n) for n in NODES))
    return sorted(out, key=repr)


def _same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, tuple) and len(x) == 5 and isinstance(x[4], list):
            assert x[:4] == y[:4]
            assert np.allclose(x[4], y[4], rtol=0, atol=1e-9)
        else:
            assert x == y


def test_budget_none_cuts_everything_in_one_call(tmp_path) -> None:
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path, StoreOptions(**OPTS))
    f = Fleet()
    for _ in range(25):
        ts = f.push(s)
    r = s.maintain(ts)
    assert r["cut"] == 1 and r["cut_nodes"] == len(NODES) and r["pending_nodes"] == 0
    assert s.stats()["samples_in_head"] == 0 and len(_wals(path)) == 1
    assert s.maintain(ts)["cut"] == 0
    f.check(s)
    s.close()


def test_budgeted_cycle_spans_calls_and_then_deletes_the_old_wal(tmp_path) -> None:
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path, StoreOptions(**OPTS))
    f = Fleet()
    for _ in range(25):
        ts = f.push(s)
    (old,) = _wals(path)
    r = s.maintain(ts, budget_s=0.0)  # a spent budget still cuts one node
    assert r["cut"] == 1 and r["cut_nodes"] == 1 and r["pending_nodes"] == len(NODES) - 1
    assert len(_wals(path)) == 2 and old in _wals(path)
    calls = 1
    while s.maintain(ts, budget_s=0.0)["pending_nodes"]:
        ts = f.push(s, NODES[::3])  # pushes keep coming into the new generation
        calls += 1
        f.check(s)
    assert calls == len(NODES) - 1
    (new,) = _wals(path)
    assert new != old and not os.path.exists(old)
    # only pushes since each node's cut are left in the head
    assert 0 < s.stats()["samples_in_head"] < sum(len(v) for v in f.truth.values())
    f.check(s)
    s.close()
    s = TimeSeriesStore(path, StoreOptions(**OPTS))  # the new generation replays on its own
    f.check(s)
    for _ in range(3):
        f.push(s)
    f.check(s)
    s.close()


def test_interrupted_cycle_recovers_every_sample_exactly_once(tmp_path) -> None:
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path, StoreOptions(**OPTS))
    f = Fleet()
    for _ in range(25):
        ts = f.push(s)
    for _ in range(5):  # cut 5 of 12 nodes, with pushes (to cut and uncut nodes) in between
        assert s.maintain(ts, budget_s=0.0)["cut_nodes"] == 1
        ts = f.push(s)
    assert s.maintain(ts, budget_s=0.0)["pending_nodes"] == len(NODES) - 6
    ts = f.push(s)
    crashed = str(tmp_path / "crashed")
    shutil.copytree(path, crashed)  # what a kill -9 here leaves (appends are in the OS)
    s.close()  # closing mid-cycle: the cycle is simply not finished
    for p in (path, crashed):
        s = TimeSeriesStore(p, StoreOptions(**OPTS))
        assert len(_wals(p)) == 2
        f.check(s)
        # the dedup clock survived for cut and uncut nodes alike
        assert s.append(NODES[0], ts, [k("util", gpu="0")], [1.0]) == 1
        assert s.append(NODES[-1], ts, [k("util", gpu="0")], [1.0]) == 1
        s.close()
    # carry on from the crashed copy: pushes, a new cycle covering both old generations
    s = TimeSeriesStore(crashed, StoreOptions(**OPTS))
    for _ in range(3):
        ts = f.push(s)
    while True:
        r = s.maintain(ts + 200, budget_s=0.0)
        f.check(s)
        if not r["pending_nodes"]:
            break
        ts = f.push(s, NODES[5:])
    assert len(_wals(crashed)) == 1
    s.close()
    s = TimeSeriesStore(crashed, StoreOptions(**OPTS))
    f.check(s)
    s.maintain(ts + 86400, full=True)
    f.check(s)
    assert s.stats()["samples_in_head"] == 0 and s.stats()["bytes_wal"] == 0
    s.close()


def test_queries_agree_whether_data_is_in_head_or_blocks(tmp_path) -> None:
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path, StoreOptions(merge_fanout=2, **OPTS))
    f = Fleet(seed=7)
    for _ in range(90):  # crosses minute buckets; earlier cycles leave blocks to merge with
        ts = f.push(s)
        s.maintain(ts, budget_s=0.0)
    while s._cycle_nodes is not None:
        s.maintain(ts, budget_s=0.0)
    for _ in range(15):
        ts = f.push(s)
    assert len(s._head_nodes) == len(NODES)
    before = _snapshot(s)
    steps = 0
    r = s.maintain(ts + 150, budget_s=0.0)  # a new cycle: nodes move from head to blocks one by one
    while r["pending_nodes"] or s._job is not None:
        _same(_snapshot(s), before)
        r = s.maintain(ts + 150, budget_s=0.0)
        steps += 1
    assert steps >= len(NODES) - 1
    _same(_snapshot(s), before)
    s.maintain(ts + 86400, full=True)
    _same(_snapshot(s), before)
    f.check(s)
    s.close()


def test_budgeted_merges_span_calls_and_survive_close(tmp_path) -> None:
    path = str(tmp_path / "db")
    opts = StoreOptions(merge_fanout=100, **OPTS)  # no tiered merges: blocks pile up
    s = TimeSeriesStore(path, opts)
    f = Fleet(seed=3)
    for _ in range(60):
        ts = f.push(s)
        s.maintain(ts, budget_s=0.0)
    s._cut_head()  # finish the cycle and empty the head: only merges are left
    assert len(s._blocks[0]) >= 10
    before = _snapshot(s)
    late = T0 + 7200 + 600 + 1  # the 2 h window is final: merge it, a little per call
    s.maintain(late, budget_s=1e-4)
    assert s._job is not None and s._job.pos < len(s._job.nids)
    _same(_snapshot(s), before)
    s.close()  # mid-merge: its temp file goes, its inputs stay
    assert not glob.glob(os.path.join(path, "blocks", "*", "*.tmp"))
    s = TimeSeriesStore(path, opts)
    _same(_snapshot(s), before)
    calls = 0
    while True:
        r = s.maintain(late, budget_s=1e-4)
        calls += 1
        _same(_snapshot(s), before)
        if not r["merged"] and s._job is None and not s._compact_dirty:
            break
    assert calls > 3
    assert len([b for b in s._blocks[0] if b.window == T0]) == 1
    f.check(s)
    s.close()


def test_idle_maintain_with_budget_does_nothing(tmp_path) -> None:
    s = TimeSeriesStore(str(tmp_path / "db"), StoreOptions(**OPTS))
    f = Fleet()
    ts = f.push(s)
    for i in range(50):
        r = s.maintain(ts + i, budget_s=0.05)
        assert r == {"cut": 0, "cut_nodes": 0, "pending_nodes": 0, "merged": 0, "deleted": 0}
    s.close()


CHILD = textwrap.dedent(
    """
    import sys
    from gpufleet.store import TimeSeriesStore, StoreOptions
    store = TimeSeriesStore(sys.argv[1], StoreOptions(head_span_s=40.0, merge_fanout=3))
    keys = [("gpu_util", (("gpu", str(g)),)) for g in range(4)]
    for i in range(200000):
        for n in range(6):
            store.append(f"node-{n}", 1000.0 + i, keys, [float((i + g + n) % 101) for g in range(4)])
        store.maintain(1000.0 + i, budget_s=0.0)  # cycles spread over calls, merges too
        print(i, flush=True)
    """
)


def test_kill_9_mid_cycle_keeps_every_acknowledged_push(tmp_path) -> None:
    path = str(tmp_path / "db")
    last = run_and_kill(CHILD, path, lambda i: i >= 400 and len(_wals(path)) > 1)  # mid-cycle
    assert last >= 400
    s = TimeSeriesStore(path, StoreOptions(head_span_s=40.0, merge_fanout=3))
    got = s.query_range("gpu_util", [], 1000.0, 1000.0 + last + 10, 1.0, "last")
    assert len(got) == 24
    for r in got:
        g, n = int(r.labels["gpu"]), int(r.labels["node"].split("-")[1])
        m = len(r.values)
        assert m in (last + 1, last + 2)  # + possibly the push in flight
        i = np.arange(m)
        assert r.timestamps.tolist() == (1000.0 + i).tolist()
        assert r.values == ((i + g + n) % 101).astype(float).tolist()
    s.close()


@pytest.mark.parametrize("budget", [None, 0.0])
def test_full_ignores_budget_and_empties_wal(tmp_path, budget) -> None:
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path, StoreOptions(**OPTS))
    f = Fleet()
    for _ in range(25):
        ts = f.push(s)
    s.maintain(ts, budget_s=0.0)  # a cycle in progress
    f.push(s)
    s.maintain(ts + 86400, full=True, budget_s=budget)
    st = s.stats()
    assert st["samples_in_head"] == 0 and st["bytes_wal"] == 0 and len(_wals(path)) == 1
    assert all(len(s._blocks[r]) == 1 for r in (0, 60, 3600))
    f.check(s)
    s.close()


def test_a_budgeted_call_asked_to_yield_ends_after_one_node(tmp_path) -> None:
    """The hub passes yield_to (a history read waits for the store's lock): the slice ends at the
    next node, as if its budget were spent, and the cycle carries on at the next call."""
    s = TimeSeriesStore(str(tmp_path / "db"), StoreOptions(**OPTS))
    f = Fleet()
    for _ in range(25):
        ts = f.push(s)
    asked: list[int] = []

    def reader_waits() -> bool:
        asked.append(1)
        return True

    r = s.maintain(ts, budget_s=60.0, yield_to=reader_waits)
    assert r["cut_nodes"] == 1 and r["pending_nodes"] == len(NODES) - 1 and asked
    r = s.maintain(ts, budget_s=60.0, yield_to=lambda: False)  # nobody waits: the budget decides
    assert r["cut_nodes"] == len(NODES) - 1 and r["pending_nodes"] == 0
    n = len(asked)
    s.maintain(ts, yield_to=reader_waits)
    assert len(asked) == n  # without a budget it is not asked
    f.check(s)
    s.close()
