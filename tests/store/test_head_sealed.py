"""The head keeps its rows sealed (store/headchunk.py): every value comes back bit for bit.

Through the seal itself, the head (pushes, bulk rows, series lists that change), queries,
``latest``, a restart (WAL replay) and the cut into blocks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from gpufleet.store import Matcher, TimeSeriesStore
from gpufleet.store import headchunk
from gpufleet.store.head import Segment

T0 = 1_700_006_400.0  # a multiple of 7200: the test's data stays in one raw window


def _mixed(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Columns of every kind the head meets: integers, decimals, noise, NaN, -0.0, extremes."""
    kinds = rng.integers(0, 9, cols)
    m = np.empty((rows, cols))
    for j, kind in enumerate(kinds):
        if kind == 0:
            m[:, j] = np.cumsum(rng.integers(-3, 4, rows)) + 50  # a gauge in whole units
        elif kind == 1:
            m[:, j] = np.round(rng.uniform(0, 700, rows), 3)  # watts with mW
        elif kind == 2:
            m[:, j] = rng.standard_normal(rows)  # all 17 digits
        elif kind == 3:
            m[:, j] = np.cumsum(rng.integers(0, 2**40, rows)).astype(np.float64)  # a byte counter
        elif kind == 4:
            m[:, j] = np.where(rng.random(rows) < 0.3, np.nan, rng.integers(0, 100, rows))  # comes and goes
        elif kind == 5:
            m[:, j] = rng.choice([0.0, -0.0, 1.5], rows)
        elif kind == 6:
            m[:, j] = rng.choice([1e300, -1e-300, 2.0**53, 2.0**53 + 2, 5e-324], rows)
        elif kind == 7:
            m[:, j] = 42.0  # constant
        else:
            m[:, j] = np.round(rng.uniform(0, 1, rows), rng.integers(0, 7))
    return m


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))


def test_seal_round_trips_every_kind_of_column_bit_for_bit():
    rng = np.random.default_rng(1)
    for case in range(60):
        rows, cols = int(rng.integers(1, 14)), int(rng.integers(1, 90))
        m = _mixed(rng, rows, cols)
        ref = None if case % 3 == 0 else _mixed(rng, 1, int(rng.integers(1, cols + 1)))[0]  # may be narrower
        assert _same(headchunk.unseal(headchunk.seal(ref, m), ref), m), case
        # a stale hint (precisions of other rows) changes the coding, never the values
        hint = headchunk.decimals(_mixed(rng, 2, cols))
        dec = headchunk.decimals(m, hint)
        assert _same(headchunk.unseal(headchunk.seal(ref, m, dec), ref), m), case


@pytest.mark.parametrize("k", [1, 3])
def test_push_rows_seal_to_the_same_bytes_as_a_chunk_of_them(k):
    rng = np.random.default_rng(5)
    m = _mixed(rng, 61, 120)
    m[:, :30] = np.cumsum(rng.integers(-2, 3, (61, 30)), axis=0) / 100.0  # fits its hint: the short way
    hint = None
    for i in range(1, m.shape[0] - k, k):
        rows = m[i : i + k]
        want_dec = headchunk.decimals(rows, hint)
        got, dec = headchunk.seal_rows(m[i - 1], rows, hint)
        assert np.array_equal(dec, want_dec)
        assert got == headchunk.seal(m[i - 1], rows, want_dec), i
        assert _same(headchunk.unseal(got, m[i - 1]), rows)
        hint = dec


def test_rows_sealed_one_by_one_restack_into_the_same_values():
    rng = np.random.default_rng(2)
    m = np.cumsum(rng.integers(-2, 3, (12, 40)), axis=0) / 10.0
    dec = headchunk.decimals(m)  # valid for every row
    ref, bufs = None, []
    for lo, hi in ((0, 1), (1, 4), (4, 6), (6, 12)):
        bufs.append(headchunk.seal(ref, m[lo:hi], dec))
        ref = m[hi - 1]
    chunk = headchunk.restack(bufs)
    assert chunk is not None and len(chunk) < sum(len(b) for b in bufs)
    assert _same(headchunk.unseal(chunk, None), m)
    other = headchunk.seal(m[-1], m[:1] + 0.05)  # other precisions: not restacked, decoded instead
    assert headchunk.restack(bufs[:3] + [other]) is None


def _push_plan(rng: np.random.Generator):
    """Pushes of one node whose series list grows, shrinks and flips, with bulk rows between."""
    base = [("m", (("i", str(i)),)) for i in range(30)]
    extra = [("x", (("i", str(i)),)) for i in range(7)]
    shapes = [base, base + extra[:3], base[5:], base + extra, base]
    plan = []  # (kind, timestamps, keys, rows)
    t = T0
    for step in range(40):
        keys = shapes[(step // 7) % len(shapes)]
        if step in (11, 30):  # bulk: one sealed chunk straight away, then singles
            n = 15
            plan.append(("rows", t + 5.0 * np.arange(n), keys, _mixed(rng, n, len(keys))))
            t += 5.0 * n
        else:
            plan.append(("push", np.array([t]), keys, _mixed(rng, 1, len(keys))))
            t += 5.0
    return plan


def _expected(plan) -> tuple[np.ndarray, dict[tuple, np.ndarray]]:
    ts = np.concatenate([p[1] for p in plan])
    every = sorted({k for p in plan for k in p[2]})
    out = {k: np.full(ts.size, np.nan) for k in every}
    r = 0
    for _kind, tss, keys, rows in plan:
        for j, k in enumerate(keys):
            out[k][r : r + tss.size] = rows[:, j]
        r += tss.size
    return ts, out


def _load(store: TimeSeriesStore, plan) -> None:
    for kind, tss, keys, rows in plan:
        if kind == "push":
            store.append("n", float(tss[0]), keys, rows[0])
        else:
            store.append_rows("n", tss, keys, rows)


def _check_store(store: TimeSeriesStore, ts: np.ndarray, want: dict[tuple, np.ndarray]) -> None:
    end = float(ts[-1])
    for (metric, labels), vals in want.items():
        got = store.query_range(metric, [Matcher(k, "=", v) for k, v in labels], float(ts[0]), end, 5.0, "last")
        keep = ~np.isnan(vals)
        assert len(got) == 1, (metric, labels)
        assert np.array_equal(got[0].timestamps, ts[keep]), (metric, labels)
        assert _same(np.array(got[0].values), vals[keep]), (metric, labels)


def test_head_values_exact_through_pushes_queries_restart_and_cut(tmp_path):
    rng = np.random.default_rng(3)
    plan = _push_plan(rng)
    ts, want = _expected(plan)
    store = TimeSeriesStore(str(tmp_path))
    _load(store, plan)
    seg = store._nodes["n"].cur
    assert seg is not None and seg.n == ts.size and seg.chunks, "rows past a chunk are sealed"
    dense = seg.values()
    for j, sid in enumerate(seg.sids.tolist()):
        key = store.series_index.key(sid)
        assert _same(dense[:, j], want[key]), key
    _check_store(store, ts, want)
    last_ts, last = store.latest("n")  # type: ignore[misc]
    assert last_ts == ts[-1]
    assert last == {k: v[-1] for k, v in want.items() if not math.isnan(v[-1])}
    store.close()

    store = TimeSeriesStore(str(tmp_path))  # the head again, from the WAL
    assert store._nodes["n"].cur is not None and store._nodes["n"].cur.n == ts.size
    _check_store(store, ts, want)
    store.maintain(float(ts[-1]) + 1, full=True)
    assert store.stats()["samples_in_head"] == 0
    _check_store(store, ts, want)  # now from blocks only
    store.close()


def test_head_keeps_a_small_fraction_of_eight_bytes_a_sample(tmp_path):
    """Telemetry-like values (integer gauges, decimals, counters, constants): well under 2 B each."""
    rng = np.random.default_rng(4)
    cols, rows = 400, 60
    walk = np.cumsum(rng.integers(-2, 3, (rows, cols)), axis=0) + 500.0
    walk[:, :100] = np.round(walk[:, :100] * 0.37, 2)  # power-like decimals
    walk[:, 100:150] = np.cumsum(rng.integers(0, 10**9, (rows, 50)), axis=0)  # counters
    walk[:, 150:300] = walk[0, 150:300]  # constants
    store = TimeSeriesStore(str(tmp_path))
    keys = [("m", (("i", str(i)),)) for i in range(cols)]
    for r in range(rows):
        store.append("n", T0 + 5.0 * r, keys, walk[r])
    seg = store._nodes["n"].cur
    assert seg is not None and _same(seg.values(), walk)
    per_sample = seg.nbytes() / walk.size
    assert per_sample < 2.0, f"{per_sample:.2f} bytes a sample in the head (float64 is 8)"
    store.close()


@pytest.mark.parametrize("width_first", [3, 8])
def test_columns_added_after_rows_read_as_absent_before(width_first):
    seg = Segment(np.arange(width_first, dtype=np.int64))
    rows = []
    for r in range(30):
        if r == 13:
            cols = seg.columns_for(np.arange(width_first + 4, dtype=np.int64))
            assert cols is None
        width = seg.sids.size
        row = np.arange(width, dtype=np.float64) + r
        seg.append(T0 + r, row)
        rows.append(np.concatenate([row, np.full(width_first + 4 - width, np.nan)]))
    assert _same(seg.values(), np.array(rows))
    newest = seg.newest()
    assert newest is not None and _same(newest, rows[-1])


def test_absent_values_keep_a_column_on_its_precision_and_other_nans_stay_exact():
    """A node flipping between two series lists has absent values (the head's NaN) in every
    piece: its columns keep their precision (so pieces restack), and come back bit for bit;
    a NaN with another payload, or negative, still takes its column the XOR way."""
    rng = np.random.default_rng(6)
    rows, cols = 24, 8
    m = (2 * rng.integers(5000, 9000, (rows, cols)) + 1) / 100.0  # two decimals, every value
    m[0::2, :3] = np.nan  # shape A lacks these
    m[1::2, 3:6] = np.nan  # shape B lacks those
    m[:, 6] = np.nan  # absent throughout
    odd = m.copy()
    odd[5, 7] = np.array([0x7FF8000000000001], np.uint64).view(np.float64)[0]
    odd[9, 7] = -np.nan
    dec = headchunk.decimals(odd)
    assert dec[:7].tolist() == [2, 2, 2, 2, 2, 2, 0] and dec[7] == headchunk.XOR_COL
    for ref in (None, m[3], np.full(cols, np.nan)):
        assert _same(headchunk.unseal(headchunk.seal(ref, odd, dec), ref), odd)
        assert _same(headchunk.unseal(headchunk.seal(ref, m), ref), m)
    # through the head: every few pushes seal against the last, and pieces restack into chunks
    seg = Segment(np.arange(cols, dtype=np.int64))
    restacked = []
    real = headchunk.restack
    headchunk.restack = lambda bufs: restacked.append(real(bufs) is not None) or real(bufs)  # type: ignore[assignment]
    try:
        for r in range(rows):
            seg.append(T0 + r, m[r])
    finally:
        headchunk.restack = real  # type: ignore[assignment]
    assert restacked == [True, True] and len(seg.chunks) == 2
    assert seg.dec is not None and seg.dec[:7].tolist() == [2, 2, 2, 2, 2, 2, 0]
    assert _same(seg.values(), m)


def test_recheck_brings_back_columns_whose_value_fits_and_leaves_noise_xor():
    x = headchunk.XOR_COL
    dec = np.array([x, x, x, x, x, 2], np.uint8)
    row = np.array([0.123456789012345, 12.5, 3.0e12, np.nan, -0.0, 1.25])
    got = headchunk.recheck(row, dec)
    assert got.tolist() == [x, 1, 0, 0, x, 2]
    assert dec.tolist() == [x, x, x, x, x, 2]  # the hint given is not changed
