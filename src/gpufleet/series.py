"""Turn a NodeSnapshot into (series key, value) pairs: what the store and remote write take.

A series key is (metric name, sorted label pairs), labels as the exposition shows them
(node plus the scope's identity labels). Info metrics and per-process series are not
stored as time series: they live in the latest snapshot instead, which keeps the store's
series count proportional to hardware, not to process churn.

Building keys is the costly part of ingest, and a node's set of series rarely changes
between pushes, so a `SeriesCache` per node keeps the last key list and reuses it (the same
list object) while the snapshot's shape is unchanged.
"""

from __future__ import annotations

import zlib
from typing import TypeVar
from array import array
from itertools import repeat
from collections.abc import Collection, Iterator, Mapping, Sequence

import msgspec

from .catalogue import BY_SCOPE, SCOPE_LABELS
from .scopes import STORED_SCOPES, records
from .snapshot import NodeSnapshot
from .store.serieslist import SeriesList

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
Picks = list[tuple[str, ...] | None]  # per record: the value keys stored (None: all); shared, read-only


# scope -> {value key: metric name} for the metrics stored as history
_NAMES: dict[str, dict[str, str]] = {
    scope: {m.key: m.name for m in BY_SCOPE[scope] if m.kind != "info"} for scope in STORED_SCOPES
}

Record = tuple[str, tuple[str, ...], Mapping[str, float]]


class SeriesCache:
    """The shapes seen lately for one node and the keys built for each.

    Several, not one: a node's shape flips back and forth as users and processes come and
    go, and handing the store the very same key tuple again lets it find that series list
    by identity instead of building and comparing keys. Past shapes are kept as compressed
    msgpack bytes (not tuples holding a decoded snapshot's strings), and their key lists share
    the (metric, labels) tuples they have in common: a few KB a shape.
    """

    __slots__ = ("shape", "keys", "picks", "recent")

    KEEP = 4

    def __init__(self) -> None:
        self.shape: object = None
        self.keys: tuple[SeriesKey, ...] = ()
        self.picks: Picks = []  # per record: keys to take, None = all of them
        self.recent: list[tuple[bytes, tuple[SeriesKey, ...], Picks]] = []

    def find(self, shape: object) -> bool:
        """Make `shape` current if it was seen lately."""
        if self.shape == shape:
            return True
        if self.recent:
            packed = _pack(shape)
            for i, (sh, keys, picks) in enumerate(self.recent):
                if sh == packed:
                    self.recent.insert(0, self.recent.pop(i))
                    self.shape, self.keys, self.picks = shape, keys, picks
                    return True
        return False

    def put(self, shape: object, keys: tuple[SeriesKey, ...], picks: Picks) -> None:
        if self.recent:
            known = {k: k for _, ks, _ in self.recent for k in ks}
            keys = tuple([known.get(k, k) for k in keys])
        self.shape, self.keys, self.picks = shape, keys, picks
        self.recent.insert(0, (_pack(shape), keys, picks))
        del self.recent[self.KEEP:]


_encode = msgspec.msgpack.Encoder().encode


def _pack(shape: object) -> bytes:
    # zlib at level 1 is deterministic, so equal shapes give equal bytes: ~24 KB -> ~3 KB each
    return zlib.compress(_encode(shape), 1)


def _records(snap: NodeSnapshot) -> list[Record]:
    return [(scope, ids, vals) for scope in STORED_SCOPES for ids, vals, _ in records(snap, scope) if vals]


# One tuple per distinct (label, value) pair: ("gpu", "0") is in every GPU series of the fleet.
# The store adopts these objects as its own, so its index and this cache share them.
_PAIRS: dict[tuple[str, str], tuple[str, str]] = {}
# (scope, value keys) -> (the keys stored, None: all; their metric names): the same few
# tuples of value keys come back from every node (every CPU core's record has the same).
_TAKE: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ...] | None, tuple[str, ...]]] = {}
_TAKE_MAX = 10_000  # bound: a node sending ever new value keys must not grow it without end


def _take(scope: str, vals: Collection[str]) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    key = (scope, vals if type(vals) is tuple else tuple(vals))
    got = _TAKE.get(key)
    if got is None:
        names = _NAMES[scope]
        take = tuple([k for k in key[1] if k in names])
        got = (None if len(take) == len(key[1]) else take, tuple([names[k] for k in take]))
        if len(_TAKE) >= _TAKE_MAX:
            _TAKE.clear()
        _TAKE[key] = got
    return got


Pairs = tuple[tuple[str, str], ...]


def _label_template(scope: str, n_ids: int, base: dict[str, tuple[str, str]]) -> tuple[list[Pairs], list[tuple[str, int]]]:
    """How a scope's records' labels are made: the identity labels (name, index in ids) in
    sorted order, and the base pairs before, between and after them (one chunk more).

    Labels are sorted by name; an identity label wins over a base label of the same name.
    """
    own = dict(zip(SCOPE_LABELS[scope], range(n_ids)))
    chunks: list[Pairs] = []
    chunk: list[tuple[str, str]] = []
    for name in sorted({*base, *own}):
        if name in own:
            chunks.append(tuple(chunk))
            chunk = []
        else:
            chunk.append(base[name])
    chunks.append(tuple(chunk))
    return chunks, [(name, own[name]) for name in sorted(own)]


def build_keys(recs: Sequence[tuple[str, tuple[str, ...], Collection[str]]],
               base: dict[str, str]) -> tuple[tuple[SeriesKey, ...], Picks]:
    """Series keys of records given as (scope, ids, value keys); picks: per record the keys kept (None: all).

    A key's labels are the base labels and the scope's identity labels, sorted. A node's first
    push builds ~250 label sets and ~1,000 keys: per scope the base pairs are laid out once
    around the identity labels, so a record costs its identity pairs and C-level passes.
    """
    keys: list[SeriesKey] = []
    picks: Picks = []
    for metrics, labels, take in _label_sets(recs, base):
        picks.append(take)
        keys += zip(metrics, repeat(labels, len(metrics)))
    # A tuple, so the store can tell an unchanged series list by identity alone.
    return tuple(keys), picks


# The metric tuples and label set numbers of series lists, shared by every node of the same
# hardware (bounded: a fleet has a few kinds of node, each a few shapes).
_METRICS: dict[tuple[str, ...], tuple[str, ...]] = {}
_SLOTS: dict[bytes, array[int]] = {}
# A label set less its list's common labels: (("gpu", "3"),) is in every 8-GPU node's lists.
_RESTS: dict[Pairs, Pairs] = {}
_RESTS_MAX = 100_000
_SETS: dict[tuple[Pairs, ...], tuple[Pairs, ...]] = {}
_K = TypeVar("_K")
_V = TypeVar("_V")
_SHARED_MAX = 1_000  # ~6 KB each at most: a fleet churning shapes does not grow them without end


def build_series(recs: Sequence[tuple[str, tuple[str, ...], Collection[str]]],
                 base: dict[str, str]) -> tuple[SeriesList, Picks]:
    """build_keys as a SeriesList: the labels every series has (the node's) once, and each
    label set's other labels (gpu="3") as one object for the whole fleet."""
    metrics: list[str] = []
    slots = array("i")
    sets: dict[Pairs, int] = {}  # label set -> its number (equal sets once: scopes without labels of their own)
    picks: Picks = []
    for names, labels, take in _label_sets(recs, base):
        picks.append(take)
        slot = sets.setdefault(labels, len(sets))
        metrics += names
        slots.extend(repeat(slot, len(names)))
    shared_metrics = shared(_METRICS, got := tuple(metrics), got)
    shared_slots = shared(_SLOTS, slots.tobytes(), slots)
    common_set = set(next(iter(sets), ())).intersection(*sets)
    own = [tuple([p for p in s if p not in common_set]) for s in sets] if common_set else list(sets)
    rests = tuple([shared(_RESTS, x, x, _RESTS_MAX) for x in own])
    rests = shared(_SETS, rests, rests)  # nodes of the same hardware: the same sets
    return SeriesList(shared_metrics, shared_slots, rests, tuple(sorted(common_set))), picks


def shared(cache: dict[_K, _V], key: _K, value: _V, most: int = _SHARED_MAX) -> _V:
    """The value kept under `key`, else `value` (kept from now on while the cache has fewer than
    `most`): one object for what many nodes hold alike, bounded so churn does not grow it."""
    got = cache.get(key)
    if got is not None:
        return got
    if len(cache) < most:
        cache[key] = value
    return value


def _label_sets(recs: Sequence[tuple[str, tuple[str, ...], Collection[str]]],
                base: dict[str, str]) -> Iterator[tuple[tuple[str, ...], Pairs, tuple[str, ...] | None]]:
    """Per record: the metrics it stores, their label set, and its value keys kept (None: all)."""
    pair = _PAIRS.setdefault
    base_pairs = {k: pair((k, v), (k, v)) for k, v in base.items()}
    templates: dict[tuple[str, int], tuple[list[Pairs], list[tuple[str, int]]]] = {}
    for scope, ids, vals in recs:
        take, metrics = _take(scope, vals)
        tpl = templates.get((scope, len(ids)))
        if tpl is None:
            tpl = templates[(scope, len(ids))] = _label_template(scope, len(ids), base_pairs)
        chunks, own = tpl
        if not own:
            labels = chunks[0]  # the base pairs: one object for every such record
        elif len(own) == 1:
            p = (own[0][0], ids[own[0][1]])
            labels = chunks[0] + (pair(p, p),) + chunks[1]
        else:
            parts = list(chunks[0])
            for (name, j), after in zip(own, chunks[1:]):
                p = (name, ids[j])
                parts.append(pair(p, p))
                parts += after
            labels = tuple(parts)
        yield metrics, labels, take


def snapshot_series(snap: NodeSnapshot, extra_labels: dict[str, str] | None = None,
                    cache: SeriesCache | None = None) -> tuple[tuple[SeriesKey, ...], list[float]]:
    base = {"node": snap.node, **(extra_labels or {})}
    recs = _records(snap)
    # The shape: which records, with which value keys in which order. Comparing it is a
    # C-speed tuple comparison, far cheaper than building and sorting label sets again.
    shape = (tuple(base.items()), tuple((scope, ids, tuple(vals)) for scope, ids, vals in recs))
    if cache is not None and cache.find(shape):
        keys, picks = cache.keys, cache.picks
    else:
        keys, picks = build_keys(recs, base)
        if cache is not None:
            cache.put(shape, keys, picks)
            keys = cache.keys  # the stored tuple (sharing keys with the other shapes)
    values: list[float] = []
    for (_, _, vals), take in zip(recs, picks):
        if take is None:
            values.extend(vals.values())
        else:
            values.extend(vals[k] for k in take)
    return keys, values
