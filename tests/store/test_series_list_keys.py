"""The store takes a node's keys as a SeriesList (label sets + per series its metric and set)
exactly as it takes a tuple of the same keys: same ids, same answers, schemas found again by
identity, a changed list keeping the ids of the series it keeps, and across a reopen."""
from __future__ import annotations

from array import array

from gpufleet.store import Matcher, SeriesList, TimeSeriesStore

T0 = 1_700_006_400.0
NODE = (("node", "n1"),)


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**dict(NODE), **kw}.items()))


GPU = [labels(gpu=str(g)) for g in range(3)]
HOST = labels()
USER = labels(user="ann")


def series_list(sets: list, per_set: list[tuple[str, ...]], common: tuple = ()) -> SeriesList:
    metrics: list[str] = []
    slots = array("i")
    for i, ms in enumerate(per_set):
        metrics += ms
        slots.extend([i] * len(ms))
    return SeriesList(tuple(metrics), slots, tuple(sets), common)


A = series_list([HOST, *GPU], [("load",), ("util", "temp"), ("util", "temp"), ("util", "temp")])
# a user comes: the same label set objects, one set more
B = series_list([HOST, *GPU, USER], [("load",), ("util", "temp"), ("util", "temp"), ("util", "temp"), ("user_gpus",)])


def ask(s: TimeSeriesStore, metric: str, **kw: str) -> dict[float, float]:
    got = s.query_range(metric, [Matcher(a, "=", b) for a, b in labels(**kw)], T0, T0 + 100, 5.0, "last")
    assert len(got) == 1, (metric, kw, got)
    return {float(t): v for t, v in zip(got[0].timestamps, got[0].values)}


def test_a_series_list_is_a_sequence_of_its_keys_and_equals_their_tuple() -> None:
    keys = tuple(A)
    assert len(A) == 7 and keys[0] == ("load", HOST) and keys[1] == ("util", GPU[0]) and keys[6] == ("temp", GPU[2])
    assert A[3] == keys[3] and A[1:3] == keys[1:3]
    assert A == keys and keys == A and A != keys[:-1] and A != B
    assert A == series_list([HOST, *GPU], [("load",), ("util", "temp"), ("util", "temp"), ("util", "temp")])
    # the same keys over other set numbers are still the same keys
    assert A == SeriesList(A.metrics, array("i", [1, 0, 0, 2, 2, 3, 3]), (GPU[0], HOST, GPU[1], GPU[2]))


# The same keys as A, the node's label held once: each set is only its own labels.
OWN = [(), *((("gpu", str(g)),) for g in range(3))]
A_COMMON = series_list(OWN, [("load",), ("util", "temp"), ("util", "temp"), ("util", "temp")], NODE)


def test_a_series_list_with_common_labels_has_the_same_keys() -> None:
    assert tuple(A_COMMON) == tuple(A) and A_COMMON == A and A == A_COMMON
    assert [A_COMMON[i] for i in range(len(A))] == list(A) and A_COMMON[2:4] == tuple(A)[2:4]
    assert A_COMMON.merged_sets() == [HOST, *GPU]


def test_a_list_whose_common_labels_change_names_every_series_anew(tmp_path) -> None:
    """The label set objects are the same, the node's own labels not: other series entirely."""
    s = TimeSeriesStore(str(tmp_path))
    s.append("n1", T0, A_COMMON, [1.0] * len(A))
    moved = series_list(OWN, [("load",), ("util", "temp"), ("util", "temp"), ("util", "temp")],
                        (("node", "n1"), ("rack", "r2")))
    s.append("n1", T0 + 5, moved, [2.0] * len(A))
    assert s.series_index.count == 2 * len(A)
    got = s.query_range("util", [Matcher("gpu", "=", "1")], T0, T0 + 10, 5.0, "last")
    assert sorted((r.labels.get("rack", ""), r.values) for r in got) == [("", [1.0]), ("r2", [2.0])]
    s.close()


def test_a_series_list_stores_as_its_keys_do_and_changed_lists_keep_their_ids(tmp_path) -> None:
    s = TimeSeriesStore(str(tmp_path))
    shapes = [A, B, A, B, A]
    for i, keys in enumerate(shapes):
        s.append("n1", T0 + 5 * i, keys, [float(10 * i + j) for j in range(len(keys))])
    st = s._nodes["n1"]
    assert len(st.schemas) == 2, "A and B declared once each, found again by identity"
    assert st.sch is not None and st.sch.keys is A
    assert st.sch.sids.itemsize == 4 and st.cur is not None and st.cur.sids.itemsize == 4  # ids as u4, as written
    # B's series that A has kept A's ids; only user_gpus was named anew
    sids_a = s.series_index.sids_for(st.nid, tuple(A))
    sids_b = s.series_index.sids_for(st.nid, tuple(B))
    assert sids_b[: len(A)] == sids_a and sids_b[-1] == max(sids_a) + 1
    assert s.series_index.count == len(B)
    assert ask(s, "temp", gpu="1") == {T0 + 5 * i: float(10 * i + 4) for i in range(5)}
    assert ask(s, "user_gpus", user="ann") == {T0 + 5: 17.0, T0 + 15: 37.0}
    s.close()

    # reopened: the schemas come back as the index's key tuples; an equal list finds them
    s = TimeSeriesStore(str(tmp_path))
    assert not s.damage
    before = s._next_schema
    s.append("n1", T0 + 25, A_COMMON, [float(50 + j) for j in range(len(A))])  # equal keys, held otherwise
    assert s._next_schema == before, "an equal series list finds the replayed schema"
    assert ask(s, "util", gpu="2") == {T0 + 5 * i: float(10 * i + 5) for i in range(6)}
    assert s.series_index.count == len(B)
    s.close()


def test_a_series_list_with_unsorted_labels_is_named_as_sorted_keys(tmp_path) -> None:
    """The store checks a list's label sets as it checks keys: unsorted pairs are normalised."""
    unsorted = (("node", "n1"), ("gpu", "0"))
    s = TimeSeriesStore(str(tmp_path))
    s.append("n1", T0, SeriesList(("util",), array("i", [0]), (unsorted,)), [3.0])
    s.append("n1", T0 + 5, [("util", (("gpu", "0"), ("node", "n1")))], [4.0])
    assert s.series_index.count == 1
    assert ask(s, "util", gpu="0") == {T0: 3.0, T0 + 5: 4.0}
    s.close()


def test_a_series_list_naming_a_key_twice_is_refused(tmp_path) -> None:
    s = TimeSeriesStore(str(tmp_path))
    twice = SeriesList(("util", "util"), array("i", [0, 1]), (GPU[0], tuple(list(GPU[0]))))
    try:
        s.append("n1", T0, twice, [1.0, 2.0])
    except ValueError as e:
        assert "appears twice" in str(e)
    else:
        raise AssertionError("a key twice in one push must be refused")
    assert s.query_range("util", [], T0 - 10, T0 + 10, 5.0, "last") == []
    s.close()
