"""PromHistory against real VictoriaMetrics and Prometheus: same answers as the embedded store's contract."""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import pytest

from gpufleet.hub.history import HistoryError, PromHistory, parse_history_url, promql
from gpufleet.hub.remote_write import RemoteWriter
from gpufleet.store import Matcher, TimeSeriesStore
from realparts import free_port, require, running, victoria_metrics

pytestmark = pytest.mark.realparts

METRIC = "gpufleet_test_value"
# Recent (within every store's raw retention) and on a whole minute, so the embedded store's
# 1-minute rollups bin like raw data.
T0 = (int(time.time()) // 60 - 20) * 60.0
ODD = 'x "q" \\ y'  # a label value that needs escaping in PromQL and in the text format

SERIES: list[dict[str, str]] = [
    {"node": "a", "gpu": "0"},
    {"node": "a", "gpu": "1"},
    {"node": "b", "gpu": "10"},
    {"node": "b", "gpu": "1", "model": ODD},
]


def samples(s: int, t0: float) -> list[tuple[float, float]]:
    # Every 10 s for 300 s; irregular values so max/min/last/avg all differ per bin.
    return [(t0 + 10 * i, (s + 1) * 10 + (i * 7 % 11) + 0.25 * (i % 2)) for i in range(30)]


def reference(start: float, end: float, step: float, agg: str, picked: list[int], t0: float) -> dict:
    """The store's contract computed by hand: bins [start + k*step, +step), empty bins left out."""
    nbins = int((end - start) // step) + 1
    out = {}
    for s in picked:
        bins: dict[int, list[float]] = {}
        for t, v in samples(s, t0):
            k = math.floor((t - start) / step)
            if 0 <= k < nbins:
                bins.setdefault(k, []).append(v)
        fn = {"avg": lambda xs: sum(xs) / len(xs), "max": max, "min": min, "last": lambda xs: xs[-1]}[agg]
        out[s] = {start + k * step: fn(xs) for k, xs in sorted(bins.items())}
    return out


def as_dict(results) -> dict:  # type: ignore[no-untyped-def]
    got = {}
    for r in results:
        labels = dict(r.labels)
        assert labels.pop("__name__") == METRIC
        s = SERIES.index(labels)
        assert len(r.timestamps) == len(r.values)
        got[s] = {float(t): v for t, v in zip(r.timestamps, r.values)}
    return got


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for s in want:
        assert list(got[s]) == pytest.approx(list(want[s]), abs=1e-6), s
        assert list(got[s].values()) == pytest.approx(list(want[s].values()), rel=1e-9), s


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("vm")
    with victoria_metrics(tmp) as (_, url):
        lines = []
        for s, labels in enumerate(SERIES):
            sel = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines += [f"{METRIC}{{{sel}}} {v!r} {int(t * 1000)}" for t, v in samples(s, T0)]
        httpx.post(f"{url}/api/v1/import/prometheus", content="\n".join(lines) + "\n", timeout=10).raise_for_status()
        httpx.get(f"{url}/internal/force_flush", timeout=10).raise_for_status()
        with PromHistory(f"prometheus+{url}") as h:
            yield h


CASES = [(T0, T0 + 290, 60.0), (T0 + 5, T0 + 300, 25.0), (T0, T0 + 100, 10.0), (T0 - 100, T0 + 1000, 300.0)]


@pytest.mark.parametrize("agg", ["avg", "max", "min", "last"])
@pytest.mark.parametrize("start,end,step", CASES)
def test_victoriametrics_aggregates_match_store_contract(vm: PromHistory, agg: str, start: float, end: float,
                                                         step: float) -> None:
    got = as_dict(vm.query_range(METRIC, [], start, end, step, agg))
    assert_same(got, reference(start, end, step, agg, list(range(len(SERIES))), T0))


@pytest.mark.parametrize("matchers,picked", [
    ([Matcher("node", "=", "a")], [0, 1]),
    ([Matcher("node", "!=", "a")], [2, 3]),
    ([Matcher("gpu", "=~", "1")], [1, 3]),  # anchored: "10" does not match
    ([Matcher("gpu", "!~", "1.*")], [0]),
    ([Matcher("model", "=", ODD)], [3]),
    ([Matcher("model", "=", "")], [0, 1, 2]),  # absent label counts as empty, as in the store
    ([Matcher("node", "=", "b"), Matcher("gpu", "=~", "1|10")], [2, 3]),
    ([Matcher("node", "=", "nope")], []),
])
def test_victoriametrics_label_matchers(vm: PromHistory, matchers: list[Matcher], picked: list[int]) -> None:
    got = as_dict(vm.query_range(METRIC, matchers, T0, T0 + 290, 60, "max"))
    assert_same(got, reference(T0, T0 + 290, 60, "max", picked, T0))


def test_more_points_than_one_request_may_ask_for(vm: PromHistory) -> None:
    # 0.02 s bins over 290 s: 14,501 points, over Prometheus' 11,000 per-request limit.
    got = as_dict(vm.query_range(METRIC, [Matcher("gpu", "=", "0")], T0, T0 + 290, 0.02, "last"))
    assert_same(got, reference(T0, T0 + 290, 0.02, "last", [0], T0))


def test_same_answers_as_the_embedded_store(vm: PromHistory, tmp_path: Path) -> None:
    store = TimeSeriesStore(str(tmp_path / "store"))
    try:
        for s, labels in enumerate(SERIES):
            key = (METRIC, tuple(sorted(labels.items())))
            for t, v in samples(s, T0):
                store.append(f"{labels['node']}-{s}", t, [key], [v])
        for start, end, step in CASES[:2]:
            for agg in ("avg", "max", "min", "last"):
                want = as_dict(store.query_range(METRIC, [Matcher("node", "=", "a")], start, end, step, agg))
                got = as_dict(vm.query_range(METRIC, [Matcher("node", "=", "a")], start, end, step, agg))
                assert_same(got, want)
    finally:
        store.close()


def test_series_lists_label_sets(vm: PromHistory) -> None:
    got = vm.series(METRIC, [Matcher("node", "=", "b")], start=T0, end=T0 + 300)
    assert sorted(d["gpu"] for d in got) == ["1", "10"]
    assert all(d["__name__"] == METRIC for d in got)


def test_promql_and_url_parsing() -> None:
    q = promql(METRIC, [Matcher("model", "=~", 'a"b\\.c')], 60, "max")
    assert q == 'max_over_time({__name__="gpufleet_test_value", model=~"a\\"b\\\\.c"}[60000ms])'
    assert parse_history_url("prometheus+https://u:p@vm.example:8481/select/0/prometheus/")[0] == \
        "https://vm.example:8481/select/0/prometheus"
    for bad in ("http://h:9090", "prometheus+ftp://h", "prometheus+http://", "prometheus+http://u:sekrit@h:x"):
        with pytest.raises(ValueError, match="history URL") as e:
            parse_history_url(bad)
        assert "sekrit" not in str(e.value)
    with pytest.raises(ValueError, match="label name"):
        promql(METRIC, [Matcher("bad-name", "=", "x")], 60, "max")
    with pytest.raises(ValueError, match="agg"):
        promql(METRIC, [], 60, "median")


def test_unreachable_or_failing_server_raises_history_error(vm: PromHistory) -> None:
    with PromHistory(f"prometheus+http://u:sekrit@127.0.0.1:{free_port()}", timeout=2) as h:
        with pytest.raises(HistoryError, match="unreachable") as e:
            h.query_range(METRIC, [], T0, T0 + 60, 60, "avg")
        assert "sekrit" not in str(e.value)
    with pytest.raises(ValueError):
        vm.query_range(METRIC, [], T0 + 60, T0, 60, "avg")  # end before start, like the store


def test_prometheus_fed_by_remote_write(tmp_path: Path) -> None:
    """Real Prometheus (remote-write receiver on) gets RemoteWriter's samples; PromHistory reads them."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    cmd = [require("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
           f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
           "--web.enable-remote-write-receiver"]
    # Prometheus only takes samples near its head, so this data is recent, on whole minutes.
    t0 = (int(time.time()) // 60 - 10) * 60.0
    with running(cmd, tmp_path / "prometheus.log", f"{url}/-/ready", timeout=60):
        w = RemoteWriter(f"{url}/api/v1/write", max_batch_samples=37)
        w.start()
        for i in range(30):
            keys, values = [], []
            for s, labels in enumerate(SERIES):
                t, v = samples(s, t0)[i]
                keys.append((METRIC, tuple(sorted(labels.items()))))
                values.append(v)
            w.submit(keys, values, t)
        assert w.flush(10)
        w.stop()
        st = w.stats()
        assert st.samples_sent == 120 and st.samples_failed == 0, st
        with PromHistory(f"prometheus+{url}") as h:
            for agg in ("avg", "max", "min", "last"):
                got = as_dict(h.query_range(METRIC, [], t0 + 5, t0 + 300, 25, agg))
                assert_same(got, reference(t0 + 5, t0 + 300, 25, agg, [0, 1, 2, 3], t0))
            got = as_dict(h.query_range(METRIC, [Matcher("gpu", "=~", "1")], t0, t0 + 290, 60, "max"))
            assert_same(got, reference(t0, t0 + 290, 60, "max", [1, 3], t0))
            # 14,501 points: Prometheus refuses > 11,000 per request, so this needs the split.
            got = as_dict(h.query_range(METRIC, [Matcher("gpu", "=", "0")], t0, t0 + 290, 0.02, "avg"))
            assert_same(got, reference(t0, t0 + 290, 0.02, "avg", [0], t0))
