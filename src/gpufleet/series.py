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

from collections.abc import Mapping

from .catalogue import BY_SCOPE, SCOPE_LABELS
from .scopes import STORED_SCOPES, records
from .snapshot import NodeSnapshot

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


# scope -> {value key: metric name} for the metrics stored as history
_NAMES: dict[str, dict[str, str]] = {
    scope: {m.key: m.name for m in BY_SCOPE[scope] if m.kind != "info"} for scope in STORED_SCOPES
}

Record = tuple[str, tuple[str, ...], Mapping[str, float]]


class SeriesCache:
    """The last shape seen for one node and the keys built for it."""

    __slots__ = ("shape", "keys", "picks")

    def __init__(self) -> None:
        self.shape: object = None
        self.keys: tuple[SeriesKey, ...] = ()
        self.picks: list[list[str] | None] = []  # per record: keys to take, None = all of them


def _records(snap: NodeSnapshot) -> list[Record]:
    return [(scope, ids, vals) for scope in STORED_SCOPES for ids, vals, _ in records(snap, scope) if vals]


def _build(recs: list[Record], base: dict[str, str]) -> tuple[tuple[SeriesKey, ...], list[list[str] | None]]:
    keys: list[SeriesKey] = []
    picks: list[list[str] | None] = []
    for scope, ids, vals in recs:
        names = _NAMES[scope]
        labels = tuple(sorted({**base, **dict(zip(SCOPE_LABELS[scope], ids))}.items()))
        take = [k for k in vals if k in names]
        picks.append(None if len(take) == len(vals) else take)
        keys.extend((names[k], labels) for k in take)
    # A tuple, so the store can tell an unchanged series list by identity alone.
    return tuple(keys), picks


def snapshot_series(snap: NodeSnapshot, extra_labels: dict[str, str] | None = None,
                    cache: SeriesCache | None = None) -> tuple[tuple[SeriesKey, ...], list[float]]:
    base = {"node": snap.node, **(extra_labels or {})}
    recs = _records(snap)
    # The shape: which records, with which value keys in which order. Comparing it is a
    # C-speed tuple comparison, far cheaper than building and sorting label sets again.
    shape = (tuple(base.items()), tuple((scope, ids, tuple(vals)) for scope, ids, vals in recs))
    if cache is not None and cache.shape == shape:
        keys, picks = cache.keys, cache.picks
    else:
        keys, picks = _build(recs, base)
        if cache is not None:
            cache.shape, cache.keys, cache.picks = shape, keys, picks
    values: list[float] = []
    for (_, _, vals), take in zip(recs, picks):
        if take is None:
            values.extend(vals.values())
        else:
            values.extend(vals[k] for k in take)
    return keys, values
