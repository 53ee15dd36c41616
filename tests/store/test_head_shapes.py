"""A node whose series list changes and changes back: one head per node, schemas reused, nothing lost.

The hub's nodes flip between a few series lists as users and processes come and go. The head
keeps one segment per node whose columns are the union of the lists pushed since the last cut
(absent = NaN), and remembers each list's schema, so going back to an earlier list neither
starts a segment nor declares a new schema; every WAL generation still replays on its own.
"""
from __future__ import annotations

import math

import numpy as np

from gpufleet.store import Matcher, StoreOptions, TimeSeriesStore

T0 = 1_700_006_400.0


def k(metric: str, **labels: str):
    return (metric, tuple(sorted(labels.items())))


A = tuple(k("util", gpu=str(g)) for g in range(3))
B = A + (k("user_gpus", user="ann"),)  # a user comes...
C = (A[2], A[0], A[1])  # ...the same series in another order
SHAPES = [A, B, A, C, B, A, A, C]


def push_all(s: TimeSeriesStore, truth: dict, start: int, count: int, nodes=("n1", "n2")) -> None:
    for i in range(start, start + count):
        ts = T0 + 5.0 * i
        for node in nodes:
            keys = SHAPES[(i + len(node)) % len(SHAPES)]
            vals = [float(i * 10 + j) + (0.5 if node == "n2" else 0.0) for j in range(len(keys))]
            if i % 7 == 3:
                vals[0] = math.nan  # a gap inside a present series
            s.append(node, ts, list(keys), vals)
            for key, v in zip(keys, vals):
                if not math.isnan(v):
                    truth.setdefault((node, key), {})[ts] = v


def check(s: TimeSeriesStore, truth: dict, end: int) -> None:
    for (node, (metric, labels)), want in truth.items():
        ms = [Matcher("node", "=", node)] + [Matcher(a, "=", b) for a, b in labels]
        got = s.query_range(metric, ms, T0, T0 + 5.0 * end, 5.0, "last")
        assert len(got) == 1, (node, metric, labels)
        pts = {float(t): v for t, v in zip(got[0].timestamps, got[0].values) if v == v}
        assert pts == want, (node, metric, labels)


def test_shapes_flip_without_new_segments_or_schemas(tmp_path):
    truth: dict = {}
    s = TimeSeriesStore(str(tmp_path), StoreOptions(head_span_s=60.0))
    push_all(s, truth, 0, 16)
    for node in ("n1", "n2"):
        st = s._nodes[node]
        assert len(st.segments) == 1, "a shape change must not start a segment"
        assert len(st.schemas) == 3, "A, B and C each declared once"
        seg = st.cur
        assert seg is not None and seg.sids.size == 4  # the union of A and B
    check(s, truth, 16)
    latest = s.latest("n1")
    assert latest is not None
    assert set(latest[1]) == set(SHAPES[(15 + 2) % len(SHAPES)])  # the latest push's series only
    s.close()


def test_shapes_survive_cut_cycles_and_reopen(tmp_path):
    truth: dict = {}
    opts = StoreOptions(head_span_s=30.0)
    s = TimeSeriesStore(str(tmp_path), opts)
    push_all(s, truth, 0, 10)
    s.maintain(now=T0 + 50.0, budget_s=0.0)  # a cycle starts: the WAL rotates, one node cut
    push_all(s, truth, 10, 5)  # older schemas are declared again in the new generation
    s.close()  # the head stays in the WAL

    s = TimeSeriesStore(str(tmp_path), opts)
    assert not s.damage
    check(s, truth, 15)
    push_all(s, truth, 15, 6)  # schemas known from the replay are used again
    s.maintain(now=T0 + 200.0, full=True)
    check(s, truth, 21)
    push_all(s, truth, 21, 4)
    s.close()

    s = TimeSeriesStore(str(tmp_path), opts)
    assert not s.damage
    check(s, truth, 25)
    s.close()


def test_schema_reused_by_equal_keys_and_union_filled_with_nan(tmp_path):
    s = TimeSeriesStore(str(tmp_path))
    s.append("n", T0, list(A), [1.0, 2.0, 3.0])
    s.append("n", T0 + 5, [tuple(x) for x in B], [4.0, 5.0, 6.0, 7.0])  # equal keys, new objects
    s.append("n", T0 + 10, tuple(k(m, **dict(lab)) for m, lab in A), [8.0, 9.0, 10.0])
    st = s._nodes["n"]
    assert len(st.schemas) == 2
    seg = st.cur
    assert seg is not None and seg.n == 3
    extra = seg.column(s.series_index.sids_for(st.nid, [B[3]])[0])
    assert extra is not None
    col = seg.values()[:, extra]
    assert math.isnan(col[0]) and col[1] == 7.0 and math.isnan(col[2])
    assert np.array_equal(seg.ts[: seg.n], [T0, T0 + 5, T0 + 10])
    s.close()


def test_query_by_node_uses_the_series_own_node_label(tmp_path):
    s = TimeSeriesStore(str(tmp_path))
    s.append("store-node", T0, [k("util", gpu="0"), k("util", gpu="1", node="other")], [1.0, 2.0])
    got = s.query_range("util", [Matcher("node", "=", "other")], T0, T0 + 10, 5.0, "last")
    assert [r.labels["gpu"] for r in got] == ["1"]
    got = s.query_range("util", [Matcher("node", "=", "store-node")], T0, T0 + 10, 5.0, "last")
    assert [r.labels["gpu"] for r in got] == ["0"]
    got = s.query_range("util", [Matcher("node", "=~", "other|store-node"), Matcher("gpu", "!=", "9")],
                        T0, T0 + 10, 5.0, "last")
    assert sorted(r.labels["node"] for r in got) == ["other", "store-node"]
    s.close()


def test_columns_of_any_series_list_name_its_series_and_rows_come_back_under_them():
    """Segment.columns_for over random lists (reordered, grown, shrunk): each sid's column holds
    it, new sids are added in the list's order, and every row reads back under its series."""
    from gpufleet.store.head import Segment

    rng = np.random.default_rng(3)
    first = rng.permutation(40)[:12].astype(np.int64)
    seg = Segment(first)
    rows: list[dict[int, float]] = []
    for r in range(40):
        sids = rng.permutation(40)[: int(rng.integers(1, 30))].astype(np.int64)
        before = seg.sids.tolist()
        cols = seg.columns_for(sids)
        got = seg.sids[: sids.size] if cols is None else seg.sids[cols]
        assert got.tolist() == sids.tolist()
        added = [s for s in sids.tolist() if s not in before]
        assert seg.sids.tolist() == before + added
        vals = rng.integers(0, 100, sids.size).astype(np.float64)
        seg.append(T0 + r, vals, cols)
        rows.append(dict(zip(sids.tolist(), vals.tolist())))
    got_all = seg.values()
    for r, want in enumerate(rows):
        have = {int(s): v for s, v in zip(seg.sids, got_all[r]) if not math.isnan(v)}
        assert have == want, r
