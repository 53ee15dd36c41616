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
