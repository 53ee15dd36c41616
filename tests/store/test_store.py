from __future__ import annotations

import glob
import math
import os
import shutil

import numpy as np
import pytest

from gpufleet.store import Matcher, StoreInUse, StoreOptions, TimeSeriesStore

T0 = 1_700_006_400.0  # a multiple of 86400, so windows start at T0


def k(metric: str, **labels: str):
    return (metric, tuple(sorted(labels.items())))


@pytest.fixture
def store(tmp_path):
    s = TimeSeriesStore(str(tmp_path / "db"))
    yield s
    s.close()


def test_duplicates_and_older_pushes_are_dropped(store) -> None:
    keys = [k("util", gpu="0"), k("util", gpu="1")]
    assert store.append("n1", T0, keys, [1.0, 2.0]) == 0
    assert store.append("n1", T0, keys, [9.0, 9.0]) == 2  # same ts: idempotent retry
    assert store.append("n1", T0 - 5, keys, [9.0, 9.0]) == 2  # older
    assert store.append("n1", T0 + 1, keys, [3.0, 4.0]) == 0
    assert store.append("n2", T0, keys, [5.0, 6.0]) == 0  # the clock is per node
    assert store.append_rows("n1", [T0, T0 + 1, T0 + 2], keys, [[0, 0], [0, 0], [7, 8]]) == 4
    got = store.query_range("util", [Matcher("node", "=", "n1"), Matcher("gpu", "=", "0")], T0, T0 + 10, 1, "last")
    assert got[0].values == [1.0, 3.0, 7.0]
    assert store.stats()["dropped_duplicates"] == 8


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda s: s.append("n", T0, [k("a"), k("b")], [1.0]), "keys"),
        (lambda s: s.append("n", T0, [k("a")], [math.inf]), "infinite"),
        (lambda s: s.append("n", T0, [k("a")], [-math.inf]), "infinite"),
        (lambda s: s.append("n", math.nan, [k("a")], [1.0]), "timestamp"),
        (lambda s: s.append("n", T0, [k("a"), k("a")], [1.0, 2.0]), "twice"),
        (lambda s: s.append("n", T0, [("a", (("x",),))], [1.0]), "labels"),
        (lambda s: s.append("n", T0, [("", ())], [1.0]), "metric"),
        (lambda s: s.append("n", T0, [k("a")], ["x"]), "numbers"),
        (lambda s: s.append_rows("n", [T0, T0 - 1], [k("a")], [[1.0], [2.0]]), "strictly increase"),
        (lambda s: s.append_rows("n", [T0, T0 + 1], [k("a")], [[1.0]]), "shape"),
        (lambda s: s.query_range("a", [], T0, T0 - 1, 1), "before start"),
        (lambda s: s.query_range("a", [], T0, T0 + 1, 0), "step"),
        (lambda s: s.query_range("a", [], T0, T0 + 1, 1, "median"), "agg"),
        (lambda s: Matcher("a", "==", "b"), "op"),
        (lambda s: Matcher("a", "=~", "("), "regular expression"),
    ],
)
def test_bad_input_raises_clear_value_error(store, call, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        call(store)
    assert store.stats()["samples"] == 0  # nothing stored half-way


def test_nan_means_absent(store) -> None:
    keys = [k("power", gpu="0")]
    store.append("n", T0, keys, [100.0])
    store.append("n", T0 + 1, keys, [math.nan])
    store.append("n", T0 + 2, keys, [300.0])
    got = store.query_range("power", [], T0, T0 + 2, 1, "avg")[0]
    assert got.timestamps.tolist() == [T0, T0 + 2] and got.values == [100.0, 300.0]
    store.maintain(T0 + 10, full=True)
    got = store.query_range("power", [], T0, T0 + 2, 1, "avg")[0]
    assert got.values == [100.0, 300.0]
    assert store.stats()["samples"] == 2


def _ingest_random(store, rng, seconds: int, cut_every: int):
    """Two nodes, a changing series set, NaN gaps, head cuts mid-minute. Returns naive truth."""
    truth: dict[tuple[str, str], dict[float, float]] = {}
    base = [k("util", gpu=str(g)) for g in range(3)]
    for i in range(seconds):
        ts = T0 + i + 0.25
        for node in ("a", "b"):
            keys = list(base)
            if (i // 50) % 2 == 0:  # a process series that comes and goes
                keys.append(k("util", gpu="9"))
            vals = np.round(rng.normal(50, 20, len(keys)), 2)
            vals[rng.random(len(keys)) < 0.05] = np.nan
            store.append(node, ts, keys, vals.tolist())
            for key, v in zip(keys, vals):
                if not np.isnan(v):
                    truth.setdefault((node, dict(key[1])["gpu"]), {})[ts] = float(v)
        if i % cut_every == cut_every - 1:
            # the head is older than head_span_s: it is cut, mid-minute, so rollup buckets split
            assert store.maintain(ts)["cut"] == 1
            assert store.maintain(ts)["cut"] == 0  # nothing left to do: cheap no-op
    return truth


def _naive(series: dict[float, float], start: float, step: float, agg: str, width: int = 0):
    bins: dict[float, list[float]] = {}
    for ts, v in sorted(series.items()):
        # rollup rows are binned by their bucket start, raw rows by their time
        t = math.floor(ts / width) * width if width else ts
        i = math.floor((t - start) / step)
        bins.setdefault(start + i * step, []).append(v)
    f = {"avg": lambda xs: sum(xs) / len(xs), "max": max, "min": min, "last": lambda xs: xs[-1]}[agg]
    return {t: f(xs) for t, xs in sorted(bins.items())}


@pytest.mark.parametrize(("compact", "cut_every", "fanout"), [(False, 1000, 8), (True, 1000, 8), (False, 130, 2)])
def test_rollups_match_naive_computation(tmp_path, compact, cut_every, fanout) -> None:
    # fanout 2 with frequent cuts exercises tiered merges of still-open windows
    s = TimeSeriesStore(str(tmp_path / "db"), StoreOptions(merge_fanout=fanout, head_span_s=100))
    truth = _ingest_random(s, np.random.default_rng(4), 3 * 3600 + 123, cut_every=cut_every)
    if fanout == 2:
        assert max(b.tier for b in s._blocks[60]) >= 3
    if compact:
        s.maintain(T0 + 86400 + 601, full=True)  # merges the split windows
        assert [len(s._blocks[r]) for r in (0, 60, 3600)] == [2, 1, 1]
    for step, width in ((60, 60), (300, 60), (3600, 3600), (7200, 3600)):
        assert s.choose_resolution(T0, T0 + 3 * 3600, step) == width
        for agg in ("avg", "max", "min", "last"):
            got = s.query_range("util", [Matcher("gpu", "=~", "0|9")], T0, T0 + 4 * 3600, step, agg)
            assert len(got) == 4
            for r in got:
                want = _naive(truth[(r.labels["node"], r.labels["gpu"])], T0, step, agg, width)
                assert r.timestamps.tolist() == list(want)
                assert np.allclose(r.values, list(want.values()), rtol=0, atol=1e-9), (step, agg)
    # raw resolution for fine steps
    assert s.choose_resolution(T0, T0 + 600, 10) == 0
    got = s.query_range("util", [Matcher("node", "=", "a"), Matcher("gpu", "=", "1")], T0, T0 + 600, 10, "max")[0]
    want = _naive(truth[("a", "1")], T0, 10, "max")
    assert got.values == [v for t, v in want.items() if t <= T0 + 600]
    s.close()


def test_query_picks_rollups_for_long_ranges(store) -> None:
    keys = [k("util", gpu="0")]
    store.append("n", T0 + 30 * 86400, keys, [1.0])  # the store's clock
    now = T0 + 30 * 86400
    week = 7 * 86400
    assert store.choose_resolution(now - 600, now, 1) == 0  # 10 min at 1 s: raw
    assert store.choose_resolution(now - week, now, week / 1000) == 60  # 7 d at 1000 points: 1 m
    assert store.choose_resolution(now - 20 * 86400, now, 20 * 86400 / 100) == 3600  # 20 d at 100 points
    # raw is kept 2 days: a 5-day range at a fine step must come from 1 m rollups
    assert store.choose_resolution(now - 5 * 86400, now, 5) == 60
    # beyond 30 days of 1 m rollups only the hourly ones reach back
    assert store.choose_resolution(now - 100 * 86400, now, 60) == 3600


def test_retention_deletes_old_data(tmp_path) -> None:
    opts = StoreOptions(retention={0: 4 * 3600.0, 60: 2 * 86400.0, 3600: 400 * 86400.0})
    s = TimeSeriesStore(str(tmp_path / "db"), opts)
    keys = [k("temp", gpu="0")]
    for h in range(3 * 24):  # three days, hourly bulk loads at 10 s
        ts = T0 + h * 3600 + np.arange(0, 3600, 10.0)
        s.append_rows("n", ts, keys, np.full((ts.size, 1), float(h)))
        s.maintain(float(ts[-1]))
    s.maintain(T0 + 3 * 86400, full=True)
    raw_min = min(b.min_ts for b in s._blocks[0])
    assert raw_min >= T0 + 3 * 86400 - 4 * 3600 - 7200  # whole 2 h blocks go
    minute_min = min(b.min_ts for b in s._blocks[60])
    assert T0 + 86400 - 86400 <= minute_min and minute_min >= T0 + 3 * 86400 - 2 * 86400 - 86400
    assert min(b.min_ts for b in s._blocks[3600]) == T0  # hourly rollups kept
    # old hours are still answered, from the hourly rollups
    got = s.query_range("temp", [], T0, T0 + 3 * 86400, 3600, "avg")[0]
    assert got.values[:3] == [0.0, 1.0, 2.0] and len(got.values) == 72
    assert not glob.glob(str(tmp_path / "db" / "blocks" / "r0" / "*.tmp"))
    s.close()


def test_matchers(store) -> None:
    keys = [k("util", gpu="0", pod="train-1"), k("util", gpu="1", pod="train-2"), k("util", gpu="10"),
            k("temp", gpu="0")]
    store.append("node-x", T0, keys, [1.0, 2.0, 3.0, 4.0])

    def gpus(*ms: Matcher) -> list[str]:
        return sorted(lab["gpu"] for lab in store.series("util", ms))

    assert gpus() == ["0", "1", "10"]
    assert gpus(Matcher("gpu", "=", "1")) == ["1"]
    assert gpus(Matcher("gpu", "!=", "1")) == ["0", "10"]
    assert gpus(Matcher("gpu", "=~", "1")) == ["1"]  # anchored: does not match "10"
    assert gpus(Matcher("gpu", "=~", "1.*")) == ["1", "10"]
    assert gpus(Matcher("gpu", "!~", "1.*")) == ["0"]
    assert gpus(Matcher("pod", "=", "")) == ["10"]  # absent label == ""
    assert gpus(Matcher("pod", "=~", "train-.+"), Matcher("gpu", "!=", "0")) == ["1"]
    assert gpus(Matcher("node", "=", "node-x")) == ["0", "1", "10"]
    assert [lab["__name__"] for lab in store.series(None, [Matcher("gpu", "=", "0")])] == ["util", "temp"]
    assert store.series("nope") == []
    got = store.query_range("util", [Matcher("gpu", "=~", "1|10")], T0, T0, 1, "avg")
    assert sorted((r.labels["gpu"], r.values[0]) for r in got) == [("1", 2.0), ("10", 3.0)]


def test_latest_follows_changing_series_sets(tmp_path) -> None:
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path)
    assert s.latest("n") is None
    s.append("n", T0, [k("a"), k("b")], [1.0, 2.0])
    s.append("n", T0 + 5, [k("a"), k("c")], [3.0, 4.0])
    assert s.latest("n") == (T0 + 5, {k("a"): 3.0, k("c"): 4.0})
    s.close()
    s = TimeSeriesStore(path)  # from the WAL
    assert s.latest("n") == (T0 + 5, {k("a"): 3.0, k("c"): 4.0})
    s.maintain(T0 + 99999, full=True)
    s.close()
    s = TimeSeriesStore(path)  # from blocks only
    assert s.latest("n") == (T0 + 5, {k("a"): 3.0, k("c"): 4.0})
    assert s.query_range("b", [], T0, T0 + 10, 1, "last")[0].values == [2.0]
    s.close()


def test_reopen_shows_no_gap(tmp_path) -> None:
    path = str(tmp_path / "db")
    opts = StoreOptions(head_span_s=120)
    keys = [k("util", gpu=str(g)) for g in range(4)]
    s = TimeSeriesStore(path, opts)
    for i in range(600):
        s.append("n", T0 + 5 * i, keys, [float(i % 100 + g) for g in range(4)])
        if i < 590:
            s.maintain(T0 + 5 * i)  # periodic, as the hub would
    assert s.stats()["blocks"][0] >= 1 and s.stats()["samples_in_head"] > 0
    s.close()
    s = TimeSeriesStore(path, opts)  # "minutes later"
    for i in range(600, 700):
        s.append("n", T0 + 5 * i, keys, [float(i % 100 + g) for g in range(4)])
    got = s.query_range("util", [Matcher("gpu", "=", "2")], T0, T0 + 5 * 700, 5, "last")[0]
    assert got.timestamps.tolist() == [T0 + 5 * i for i in range(700)]
    assert got.values == [float(i % 100 + 2) for i in range(700)]
    st = s.stats()
    assert st["samples"] == 2800 and st["series"] == 4 and st["nodes"] == 1
    s.maintain(T0 + 86400, full=True)
    st = s.stats()
    assert st["samples_in_head"] == 0 and st["bytes_wal"] == 0
    assert 0 < st["bytes_per_sample"] == st["bytes_on_disk"] / 2800
    s.close()


def test_torn_wal_tail_in_store_loses_only_the_last_push(tmp_path) -> None:
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path)
    keys = [k("util", gpu="0")]
    for i in range(10):
        s.append("n", T0 + i, keys, [float(i)])
    s.close()
    (wal,) = glob.glob(os.path.join(path, "wal", "*.log"))
    os.truncate(wal, os.path.getsize(wal) - 3)
    s = TimeSeriesStore(path)
    assert s.query_range("util", [], T0, T0 + 20, 1, "last")[0].values == [float(i) for i in range(9)]
    s.append("n", T0 + 9, keys, [99.0])  # the lost push can be re-sent
    s.close()
    s = TimeSeriesStore(path)
    assert s.query_range("util", [], T0, T0 + 20, 1, "last")[0].values[-1] == 99.0
    s.close()


def test_crash_between_cut_and_wal_delete_does_not_duplicate(tmp_path) -> None:
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path)
    keys = [k("util", gpu="0")]
    for i in range(100):
        s.append("n", T0 + i, keys, [float(i)])
    (wal,) = glob.glob(os.path.join(path, "wal", "*.log"))
    shutil.copy(wal, str(tmp_path / "saved.log"))
    s.maintain(T0 + 100, full=True)
    s.close()
    shutil.copy(str(tmp_path / "saved.log"), wal)  # as if the old WAL had not been deleted yet
    s = TimeSeriesStore(path)
    got = s.query_range("util", [], T0, T0 + 200, 1, "avg")[0]
    assert len(got.values) == 100 and s.stats()["samples_in_head"] == 0
    s.close()


def test_crash_between_merge_and_source_delete_does_not_duplicate(tmp_path) -> None:
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path)
    keys = [k("util", gpu="0")]
    for part in range(3):
        for i in range(100):
            s.append("n", T0 + part * 100 + i, keys, [float(i)])
        s.maintain(T0, full=False)
        s._cut_head()
    saved = {p: open(p, "rb").read() for p in glob.glob(os.path.join(path, "blocks", "r0", "*.blk"))}
    assert len(saved) == 3
    s.maintain(T0 + 86400, full=True)
    s.close()
    for p, data in saved.items():  # resurrect the merge inputs
        open(p, "wb").write(data)
    s = TimeSeriesStore(path)
    assert len(s._blocks[0]) == 1
    got = s.query_range("util", [], T0, T0 + 400, 1, "avg")[0]
    assert len(got.values) == 300
    assert s.query_range("util", [], T0, T0 + 400, 60, "avg")[0].values[0] == pytest.approx(29.5)
    s.close()


def test_second_open_of_same_directory_is_refused(tmp_path) -> None:
    s = TimeSeriesStore(str(tmp_path / "db"))
    with pytest.raises(StoreInUse, match="another process"):
        TimeSeriesStore(str(tmp_path / "db"))
    s.close()


def test_a_push_of_only_absent_values_reads_the_same_after_a_cut_and_a_reopen(tmp_path) -> None:
    """Found by test_store_model: such a node vanished from latest() once its head was cut."""
    path = str(tmp_path / "db")
    s = TimeSeriesStore(path)
    keys = [k("util", gpu="0")]
    assert s.append("n0", T0, keys, [math.nan]) == 0
    assert s.latest("n0") == (T0, {})
    s.maintain(T0 + 300, full=True)
    assert s.latest("n0") == (T0, {})
    s.close()
    s = TimeSeriesStore(path)
    assert s.latest("n0") == (T0, {})
    assert s.append("n0", T0, keys, [1.0]) == 1  # the dedup clock survived too
    s.close()


def test_flush_later_syncs_after_the_store_moved_on_and_leaves_no_descriptor(tmp_path, monkeypatch) -> None:
    """The hub takes flush_later() under its store lock and fsyncs without it: by then the WAL may
    have moved to a new generation, or the store closed; the copies it took must still be synced
    (what was appended before is durable) and closed."""
    s = TimeSeriesStore(str(tmp_path / "db"))
    s.append("n1", T0, [k("util", gpu="0")], [1.0])
    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = fds()
    sync = s.flush_later()
    assert fds() == before + 2
    wal = s._wal.path
    s.maintain(full=True)  # a new WAL generation; the old one deleted
    s.close()
    synced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    left = fds()
    sync()
    assert fds() == left - 2  # the copies closed
    assert len(synced) == 2 and any(p.startswith(wal) for p in synced)  # the old generation's file too
