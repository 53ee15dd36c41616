"""Series named a batch at a time (runs over shared shapes) answer every query as series named one by one.

The reference is computed here from the keys as pushed: each series' labels, with
`__name__`, and `node` from the store's node name when the key has none.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import msgspec
import pytest

from gpufleet.store import Matcher, TimeSeriesStore
from gpufleet.store.check import check_store
from gpufleet.store.recordlog import scan_log
from gpufleet.store.series_index import MAGIC

T0 = 1_700_006_400.0
FIXTURE_V2 = Path(__file__).resolve().parent.parent / "fixtures" / "store" / "v2"


def k(metric: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (metric, tuple(sorted(labels.items())))


def node_keys(node: str, gpus: int, cluster: str, users: tuple[str, ...] = (), with_node: bool = True) -> list:
    base = {"node": node, "cluster": cluster} if with_node else {"cluster": cluster}
    keys = [k("up", **base)]
    for g in range(gpus):
        lab = {**base, "gpu": str(g), "uuid": f"GPU-{node}-{g}"}
        keys += [k("util", **lab), k("temp", **lab)]
    for c in range(3):
        keys.append(k("cpu", **base, cpu=str(c)))
    keys += [k("user_gpus", **base, user=u) for u in users]
    return keys


def reference(pushed: list[tuple[str, list]], metric: str | None, matchers: list[Matcher]) -> list[dict[str, str]]:
    out, seen = [], set()
    for node, keys in pushed:
        for m, labels in keys:
            if (node, m, labels) in seen:
                continue
            seen.add((node, m, labels))
            lab = {"__name__": m, **dict(labels)}
            lab.setdefault("node", node)
            if (metric is None or m == metric) and all(x.accepts(lab.get(x.name, "")) for x in matchers):
                out.append(lab)
    return out


QUERIES: list[tuple[str | None, list[Matcher]]] = [
    ("util", []),
    ("util", [Matcher("node", "=", "b")]),
    ("util", [Matcher("node", "=", "b"), Matcher("gpu", "=", "1")]),
    ("util", [Matcher("node", "!=", "b"), Matcher("gpu", "=~", "0|2")]),
    ("temp", [Matcher("cluster", "=", "east")]),
    ("up", [Matcher("cluster", "!~", "ea.*")]),
    ("cpu", [Matcher("cpu", "=", "2"), Matcher("node", "=~", "[ac]")]),
    ("user_gpus", [Matcher("user", "!=", "")]),
    ("util", [Matcher("user", "=", "")]),  # a label no series has: absent is ""
    ("util", [Matcher("uuid", "=", "GPU-c-3")]),
    ("util", [Matcher("cluster", "=", "east"), Matcher("gpu", "=", "0")]),
    ("util", [Matcher("gpu", "=", "0"), Matcher("cluster", "!=", "east")]),
    (None, [Matcher("gpu", "=", "0")]),
    (None, [Matcher("__name__", "=~", "u.*"), Matcher("node", "=", "d")]),
    (None, [Matcher("node", "=", "nodeless")]),  # a node whose keys have no node label
    ("nope", []),
]


def check(s: TimeSeriesStore, pushed: list[tuple[str, list]]) -> None:
    for metric, matchers in QUERIES:
        assert s.series(metric, matchers) == reference(pushed, metric, matchers), (metric, matchers)


def fill(s: TimeSeriesStore) -> list[tuple[str, list]]:
    pushed = [
        ("a", node_keys("a", 4, "east")),
        ("b", node_keys("b", 4, "east")),  # a's shape, other labels
        ("c", node_keys("c", 8, "west")),
        ("d", node_keys("d", 4, "west", users=("ann",))),
        ("nodeless", node_keys("nodeless", 2, "east", with_node=False)),
        ("b", node_keys("b", 4, "east", users=("bob", "cy"))),  # b's list grows: the new keys only
        ("a", node_keys("a", 4, "east")[:5]),  # a's list shrinks: no new series
        ("d", node_keys("d", 4, "west", users=("ann", "dee"))),
        # the same label set (gpu="0"), with the cluster shared by a run's series on p, not on q
        ("p", [k("util", node="p", cluster="east", gpu="0"), k("util", node="p", cluster="east", gpu="1")]),
        ("q", [k("up", node="q", cluster="east"), k("util", node="q", gpu="0"), k("util", node="q", gpu="1")]),
    ]
    for i, (node, keys) in enumerate(pushed):
        s.append(node, T0 + i, keys, [float(i)] * len(keys))
    return pushed


def test_queries_over_runs_answer_as_the_keys_say_across_reopen_and_rebuild(tmp_path) -> None:
    path = tmp_path / "db"
    s = TimeSeriesStore(str(path))
    pushed = fill(s)
    check(s, pushed)
    assert s.stats()["series"] == len(reference(pushed, None, []))
    d_keys = pushed[7][1]  # d's last push, at T0 + 7
    latest = s.latest("d")
    assert latest is not None and set(latest[1]) == set(d_keys)
    s.close()
    s = TimeSeriesStore(str(path))  # from series.log
    check(s, pushed)
    # the head came back with its keys: the same list again is a duplicate, not new series
    assert s.append("d", T0 + 7, d_keys, [0.0] * len(d_keys)) == len(d_keys)
    s.close()
    assert not check_store(str(path)).damaged
    (path / "series.log").unlink()
    s = TimeSeriesStore(str(path))  # from series.snap, written at close
    check(s, pushed)
    s.append("e", T0 + 9, node_keys("e", 4, "east"), [1.0] * len(node_keys("e", 4, "east")))
    check(s, pushed + [("e", node_keys("e", 4, "east"))])
    s.close()


def test_a_node_of_a_known_shape_adds_one_record_and_ids_stay_dense(tmp_path) -> None:
    path = tmp_path / "db"
    s = TimeSeriesStore(str(path))
    keys_a, keys_b = node_keys("a", 8, "east"), node_keys("b", 8, "east")
    s.append("a", T0, keys_a, [1.0] * len(keys_a))
    before = len(scan_log(str(path / "series.log"), MAGIC).records)
    s.append("b", T0, keys_b, [1.0] * len(keys_b))
    after = len(scan_log(str(path / "series.log"), MAGIC).records)
    assert after - before == 2  # its node, and one run over a's shape
    assert s.stats()["series"] == len(keys_a) + len(keys_b)
    sids = s.series_index.match(None, [])
    assert sids == list(range(len(keys_a) + len(keys_b)))
    with pytest.raises(ValueError, match="appears twice in one batch"):
        s.append("c", T0, keys_a[:3] + keys_a[:1], [1.0] * 4)
    s.close()


def test_a_truncated_series_log_is_found_and_rebuilt_from_the_copy(tmp_path) -> None:
    path = tmp_path / "db"
    s = TimeSeriesStore(str(path))
    pushed = fill(s)
    s.close()
    log = path / "series.log"
    data = log.read_bytes()
    log.write_bytes(data[: data.rfind(b"\xe7GFr")])  # the last record (d's new users) gone
    report = check_store(str(path))
    assert any(re.search(r"series\.log: names \d+ series ids, the store uses \d+", d) for d in report.damaged)
    s = TimeSeriesStore(str(path))
    check(s, pushed)
    s.close()


def test_an_older_store_of_series_named_one_by_one_takes_runs_beside_them(tmp_path) -> None:
    path = tmp_path / "db"
    shutil.copytree(FIXTURE_V2, path)
    s = TimeSeriesStore(str(path))
    old = s.series("gpufleet_gpu_utilization_ratio", [])
    assert [x["node"] for x in old] == ["node-a", "node-a", "node-b", "node-b", "node-c", "node-c"]
    keys = [k("gpufleet_gpu_utilization_ratio", gpu=str(g), node="node-d") for g in range(3)]
    keys.append(k("gpufleet_gpu_utilization_ratio", gpu="0"))  # node-a's key, on node-a below
    s.append("node-d", T0 + 5000, keys[:3], [1.0, 2.0, 3.0])
    s.append("node-a", T0 + 5000, keys[3:] + [k("gpufleet_gpu_utilization_ratio", gpu="9")], [1.0, 2.0])
    got = s.series("gpufleet_gpu_utilization_ratio", [Matcher("gpu", "=~", "0|9")])
    assert [(x["node"], x["gpu"]) for x in got] == [
        ("node-a", "0"), ("node-b", "0"), ("node-c", "0"), ("node-d", "0"), ("node-a", "9")]
    s.close()
    s = TimeSeriesStore(str(path))
    assert s.series("gpufleet_gpu_utilization_ratio", [Matcher("gpu", "=~", "0|9")]) == got
    s.close()


def _runs(path: str) -> int:
    return sum(1 for r in scan_log(os.path.join(path, "series.log"), MAGIC).records if msgspec.msgpack.decode(r)[0] == "T")


def _ids(s: TimeSeriesStore, node: str, keys: list) -> list[int]:
    """The ids a node's series have, by name (the index's own lookup, keys as fresh objects)."""
    return s.series_index.sids_for(s.series_index.node_id(node, create=False), [(m, tuple(lab)) for m, lab in keys])


def test_a_changed_series_list_keeps_the_ids_of_its_series_and_names_only_the_new(tmp_path) -> None:
    """A process or user coming or going changes a few keys of a node's list: the keys it keeps
    (the hub's very objects) keep their ids, the new ones are one run, across runs and reopen."""
    path = tmp_path / "db"
    s = TimeSeriesStore(str(path))
    first = tuple(node_keys("a", 4, "east"))
    s.append("a", T0, first, [1.0] * len(first))
    grown = first[:-2] + tuple(node_keys("a", 0, "east", users=("ann", "bob"))[-2:]) + first[-2:]
    s.append("a", T0 + 1, grown, [2.0] * len(grown))
    assert s.stats()["series"] == len(first) + 2
    assert _runs(str(path)) == 2  # the first push's, and one of the two user series
    ids = _ids(s, "a", list(grown))
    assert ids[: len(first) - 2] == list(range(len(first) - 2)) and ids[-2:] == [len(first) - 2, len(first) - 1]
    assert ids[len(first) - 2 : -2] == [len(first), len(first) + 1]
    # a list over both runs, in another order, with one key as an equal copy: no new series
    mixed = (grown[-3], first[0], (grown[1][0], tuple(grown[1][1])), *first[5:9])
    s.append("a", T0 + 2, mixed, [3.0] * len(mixed))
    assert _runs(str(path)) == 2 and s.stats()["series"] == len(first) + 2
    st = s._nodes["a"]
    assert st.sch is not None and st.sch.sids.tolist() == _ids(s, "a", list(mixed))
    # a key the list keeps and an equal copy of it: the same series twice
    with pytest.raises(ValueError, match="appears twice in one batch"):
        s.append("a", T0 + 3, (*first[:4], (first[2][0], tuple(first[2][1]))), [4.0] * 5)
    pushed = [("a", list(first)), ("a", list(grown)), ("a", list(mixed))]
    check(s, pushed)
    s.close()

    s = TimeSeriesStore(str(path))
    assert not s.damage
    after = tuple(node_keys("a", 4, "east", users=("ann", "cy")))  # new objects: found by value, cy new
    s.append("a", T0 + 10, grown, [5.0] * len(grown))  # the schema replayed from the WAL, by value
    s.append("a", T0 + 11, after, [6.0] * len(after))
    assert _ids(s, "a", list(after))[:-1] == _ids(s, "a", list(after)[:-1])
    check(s, pushed + [("a", list(after))])
    s.close()


def test_a_changed_list_of_keys_given_unsorted_or_as_lists_names_them_as_sorted_tuples(tmp_path) -> None:
    s = TimeSeriesStore(str(tmp_path / "db"))
    first = (("util", (("node", "a"), ("gpu", "0"))), ["temp", [["gpu", "0"], ["node", "a"]]])
    s.append("a", T0, first, [1.0, 2.0])
    second = (first[0], first[1], ("power", [("node", "a"), ("gpu", "0")]))
    s.append("a", T0 + 1, second, [3.0, 4.0, 5.0])
    got = s.series(None, [Matcher("node", "=", "a")])
    assert sorted((x["__name__"], x["gpu"]) for x in got) == [("power", "0"), ("temp", "0"), ("util", "0")]
    assert s.latest("a") == (T0 + 1, {k("util", node="a", gpu="0"): 3.0, k("temp", node="a", gpu="0"): 4.0,
                                      k("power", node="a", gpu="0"): 5.0})
    with pytest.raises(ValueError, match="labels of 'x'"):
        s.append("a", T0 + 2, (*second, ("x", (("node",),))), [1.0] * 4)
    s.close()
