"""The hub's per-node key cache: a shape that comes back gets the very same key tuple."""

from __future__ import annotations

from gpufleet.series import SeriesCache, snapshot_series
from gpufleet.snapshot import CpuCore
from sample_snapshot import sample_snapshot


def shapes():
    a = sample_snapshot("n1")
    b = sample_snapshot("n1")
    b.cpus.append(CpuCore(cpu=2, values={"utilization_ratio": 0.75}))  # another shape
    c = sample_snapshot("n1")
    c.cpus[0].values["utilization_ratio"] = 0.125  # shape of a, other values
    return a, b, c


def test_a_shape_that_comes_back_reuses_its_keys_and_values_follow_the_snapshot() -> None:
    a, b, c = shapes()
    cache = SeriesCache()
    ka, va = snapshot_series(a, {"x": "1"}, cache)
    kb, vb = snapshot_series(b, {"x": "1"}, cache)
    kc, vc = snapshot_series(c, {"x": "1"}, cache)
    assert kb is not ka and len(kb) == len(ka) + 1
    assert kc is ka  # a's shape again: the same tuple, so the store matches it by identity
    assert snapshot_series(b, {"x": "1"}, cache)[0] is kb
    for snap, keys, values in ((a, ka, va), (b, kb, vb), (c, kc, vc)):
        want_k, want_v = snapshot_series(snap, {"x": "1"})  # no cache
        assert keys == want_k and values == want_v
    # keys common to both shapes are shared objects, not copies
    assert all(x is y for x, y in zip(ka, kb) if x == y)


def test_only_the_last_shapes_are_kept() -> None:
    cache = SeriesCache()
    seen = []
    for n in range(SeriesCache.KEEP + 2):
        s = sample_snapshot("n1")
        s.cpus = [CpuCore(cpu=i, values={"utilization_ratio": 0.5}) for i in range(n + 1)]
        seen.append(snapshot_series(s, None, cache)[0])
    assert len(cache.recent) == SeriesCache.KEEP
    s = sample_snapshot("n1")
    s.cpus = [CpuCore(cpu=0, values={"utilization_ratio": 0.5})]
    again = snapshot_series(s, None, cache)[0]
    assert again == seen[0] and again is not seen[0]  # forgotten: built anew (equal keys)


def test_keys_are_the_base_and_identity_labels_sorted_and_an_identity_label_wins() -> None:
    """build_keys lays the base labels out once per scope: every key still reads as the plain
    sorted merge of the base labels and its record's identity labels (the record's winning)."""
    from gpufleet.catalogue import SCOPE_LABELS
    from gpufleet.series import _NAMES, _records, build_keys

    snap = sample_snapshot("n1")
    recs = _records(snap)
    assert {scope for scope, _, _ in recs} >= {"gpu", "cpu"}
    for base in ({"node": "n1"}, {"node": "n1", "cluster": "c", "gpu": "base", "zz": "last", "a": "first"}):
        keys, picks = build_keys(recs, base)
        want = []
        for (scope, ids, vals), take in zip(recs, picks):
            labels = tuple(sorted({**base, **dict(zip(SCOPE_LABELS[scope], ids))}.items()))
            assert take is None or set(take) < set(vals)
            want += [(_NAMES[scope][k], labels) for k in (vals if take is None else take) if k in _NAMES[scope]]
        assert list(keys) == want
        assert len({id(p) for _, lab in keys for p in lab if p == ("node", "n1")}) == 1  # pairs shared
