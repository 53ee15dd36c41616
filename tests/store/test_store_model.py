"""The store against a plain in-memory model (hypothesis RuleBasedStateMachine).

Nodes join, leave and come back, push out of order and twice, change their
series lists; maintain() (budgeted, whole, full) and close/reopen happen between
any two steps.  After each step every query equals the model, and maintain()
never raises.  CI runs a few dozen programs; ``pytest --slow`` runs thousands.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gpufleet.store import StoreOptions, TimeSeriesStore

SLOW = os.environ.get("GPUFLEET_TEST_SLOW") == "1"
if SLOW:
    pytestmark = pytest.mark.timeout(0)  # a long run is the point: no per-test limit
T0 = 1_700_006_400.0  # a multiple of every window
NODES = ("n0", "n1", "n2", "n3")
KEYS = tuple(("util", (("gpu", str(g)),)) for g in range(3)) + (("temp", (("gpu", "0"),)),)
# small head spans and fanout, so a short program cuts, merges and finalises windows
OPTS = dict(head_span_s=40.0, merge_fanout=2, window_grace_s=60.0,
            windows={0: 3600, 60: 7200, 3600: 86400 * 30})

values = st.one_of(st.integers(0, 100).map(float), st.floats(0, 1000, allow_nan=False).map(lambda v: round(v, 2)),
                   st.just(math.nan))


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="gpufleet-model-")
        self.store = TimeSeriesStore(self.dir, StoreOptions(**OPTS))
        self.truth: dict[tuple[str, str, str], dict[float, float]] = {}  # (node, metric, gpu) -> ts -> value
        self.last: dict[str, float] = {}  # the node's dedup clock: its newest accepted push
        self.latest: dict[str, tuple[float, dict]] = {}
        self.clock = T0  # newest time seen, for maintain(now)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _accept(self, node: str, ts: float, keys: list, vals: list[float]) -> int:
        """What the model says append returns (samples dropped), updating it when accepted."""
        if ts <= self.last.get(node, -math.inf):
            return len(keys)
        self.last[node] = ts
        for (metric, labels), v in zip(keys, vals):
            if not math.isnan(v):
                self.truth.setdefault((node, metric, labels[0][1]), {})[ts] = v
        self.latest[node] = (ts, {k: v for k, v in zip(keys, vals) if not math.isnan(v)})
        self.clock = max(self.clock, ts)
        return 0

    @rule(node=st.sampled_from(NODES), dt=st.integers(-30, 60), keys=st.sets(st.sampled_from(KEYS), min_size=1),
          data=st.data())
    def push(self, node: str, dt: int, keys: set, data: st.DataObject) -> None:
        """A push at the node's clock + dt seconds: out of order (and dropped) when dt <= 0."""
        base = self.last.get(node, self.clock - 30)
        ts = max(T0, base + dt + 0.25)
        ks = sorted(keys)
        vals = data.draw(st.lists(values, min_size=len(ks), max_size=len(ks)))
        want = self._accept(node, ts, ks, vals)
        assert self.store.append(node, ts, ks, vals) == want

    @precondition(lambda self: bool(self.latest))
    @rule(data=st.data())
    def push_again(self, data: st.DataObject) -> None:
        """An agent retrying a push the hub already stored: dropped, nothing changes."""
        node = data.draw(st.sampled_from(sorted(self.latest)))
        ts, got = self.latest[node]
        keys = sorted(got) or [KEYS[0]]
        assert self.store.append(node, ts, keys, [got.get(k, 1.0) for k in keys]) == len(keys)

    @rule(node=st.sampled_from(NODES), n=st.integers(1, 20), step=st.integers(1, 30))
    def backfill(self, node: str, n: int, step: int) -> None:
        """A spool replay: several pushes at once, the older ones already stored are dropped."""
        start = self.last.get(node, self.clock) - step * (n // 2)
        tss = [max(T0, start) + step * i + 0.5 for i in range(n)]
        keys = list(KEYS[:2])
        rows = [[float((i * 7) % 100), float(i % 3)] for i in range(n)]
        want = sum(self._accept(node, t, keys, r) for t, r in zip(tss, rows))
        assert self.store.append_rows(node, tss, keys, rows) == want

    @rule(ahead=st.sampled_from([0.0, 30.0, 300.0, 1200.0]), how=st.sampled_from(["budget0", "whole", "full"]))
    def maintain(self, ahead: float, how: str) -> None:
        now = self.clock + ahead
        if how == "budget0":
            self.store.maintain(now, budget_s=0.0)
        else:
            self.store.maintain(now, full=how == "full")

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = TimeSeriesStore(self.dir, StoreOptions(**OPTS))

    @invariant()
    def queries_equal_the_model(self) -> None:
        got = {}
        for metric in ("util", "temp"):
            for r in self.store.query_range(metric, [], T0, self.clock + 1, 0.25, "last"):
                got[(r.labels["node"], metric, r.labels["gpu"])] = (r.timestamps.tolist(), r.values)
        want = {k: ([math.floor(t * 4) / 4 for t in sorted(v)], [v[t] for t in sorted(v)])
                for k, v in self.truth.items() if v}
        assert got == want
        for node in NODES:
            if node in self.latest:
                ts, vals = self.latest[node]
                lt = self.store.latest(node)
                assert lt is not None and lt[0] == ts and lt[1] == vals
            else:
                assert self.store.latest(node) is None
        assert self.store.stats()["damaged"] == 0


StoreModel.TestCase.settings = settings(
    max_examples=1000 if SLOW else 25,
    stateful_step_count=80 if SLOW else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStoreModel = StoreModel.TestCase
