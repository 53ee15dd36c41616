"""The alert engine's column reader: each node's latest snapshot read once into columns (one
per value key a rule needs), cached while the snapshot object stays the same, and joined
across nodes into numpy arrays per scope; counters' recent increases are tracked here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ...scopes import records
from ...snapshot import NodeSnapshot
from ...syntax import Matcher
from ..fleet import LEAN_LACKS

if TYPE_CHECKING:
    from .engine import NodeInput
    from .rules import Rule

NAN = float("nan")


def _records(snap: NodeSnapshot, scope: str) -> Iterable[tuple[tuple[str, ...], Mapping[str, float]]]:
    """(identity label values, values dict) per record; hot scopes without the generic path."""
    if scope == "gpu":
        for g in snap.gpus:
            yield (str(g.index), g.uuid, g.model, g.vendor), g.values
    elif scope == "node":
        yield (), snap.values
    elif scope == "disk":
        for d in snap.disks:
            yield (d.device, d.mountpoint, d.fstype), d.values
    else:
        for ids, vals, _ in records(snap, scope):
            yield ids, vals


@dataclass(slots=True)
class Counter:
    """One counter series: last sample and the increases seen (time of the sample before, delta)."""

    t: float
    v: float
    changes: list[tuple[float, float]] = field(default_factory=list)


@dataclass(slots=True)
class NodeCols:
    snap: Any  # the snapshot object (NodeInput.snapshot) these columns were read for: the cache key
    labels_key: tuple[tuple[str, str], ...]
    base: dict[str, str]
    ids: dict[str, list[tuple[str, ...]]]  # scope -> record identities
    rows: dict[str, list[tuple[float, ...]]]  # scope -> one tuple per record, keys in Engine._need order
    counters: dict[tuple[str, str], list[tuple[int, Counter]]]  # (scope, key) -> (record, series) with changes


@dataclass(slots=True)
class ScopeData:
    n: int
    ids: list[tuple[str, ...]]
    base: list[dict[str, str]]
    cols: dict[str, np.ndarray]
    counters: dict[tuple[str, str], list[tuple[int, Counter]]]
    owners: list[NodeCols | None] = field(default_factory=list)
    label_cols: dict[str, list[str]] = field(default_factory=dict)
    masks: dict[tuple[Matcher, ...], np.ndarray] = field(default_factory=dict)


class ColumnReader:
    """Reads what the rules need out of snapshots; owns the per-node cache and counter trackers."""

    def __init__(self, lookback: float) -> None:
        self.lookback = lookback
        self._cache: dict[str, NodeCols] = {}
        self._trackers: dict[tuple[str, str], dict[tuple[str, tuple[str, ...]], Counter]] = {}
        self._need: dict[str, list[str]] = {}
        self._counter_windows: dict[tuple[str, str], float] = {}

    def set_rules(self, rules: Iterable[Rule]) -> None:
        need: dict[str, set[str]] = {}
        counters: dict[tuple[str, str], float] = {}
        for r in rules:
            if r.expr is None:
                continue
            for c in r.expr.conds:
                for s in c.term.selectors:
                    need.setdefault(s.metric.scope, set()).add(s.metric.key)
                if c.term.increase is not None:
                    key = (c.term.left.metric.scope, c.term.left.metric.key)
                    counters[key] = max(counters.get(key, 0.0), c.term.increase)
        self._need = {scope: sorted(keys) for scope, keys in need.items()}
        self._counter_windows = counters
        self._cache.clear()  # the columns depend on which keys the rules read

    @property
    def scopes(self) -> frozenset[str]:
        """The record scopes the rules read."""
        return frozenset(self._need)

    def node_cols(self, n: NodeInput) -> NodeCols:
        snap = n.snapshot
        labels_key = tuple(n.labels.items())
        c = self._cache.get(n.name)
        if c is not None and c.snap is snap and c.labels_key == labels_key:
            return c
        base = {"node": n.name, **n.labels}
        read = snap
        if n.whole is not None and not LEAN_LACKS.isdisjoint(self._need):
            read = n.whole() or snap  # a rule reads CPU cores or links: decoded once per new snapshot
        ids: dict[str, list[tuple[str, ...]]] = {}
        rows: dict[str, list[tuple[float, ...]]] = {}
        for scope, keys in self._need.items():
            if scope == "hub":
                continue
            nans = [NAN] * len(keys)
            sid: list[tuple[str, ...]] = []
            srows: list[tuple[float, ...]] = []
            for rid, vals in _records(read, scope):  # type: ignore[arg-type]
                sid.append(rid)
                srows.append(tuple(map(vals.get, keys, nans)))  # one C-level pass per record
            ids[scope], rows[scope] = sid, srows
        counters = self._track_counters(n.name, snap, ids, rows)  # type: ignore[arg-type]
        c = NodeCols(snap, labels_key, base, ids, rows, counters)
        self._cache[n.name] = c
        return c

    def _track_counters(self, node: str, snap: NodeSnapshot, ids: dict[str, list[tuple[str, ...]]],
                        rows: dict[str, list[tuple[float, ...]]]) -> dict[tuple[str, str], list[tuple[int, Counter]]]:
        out: dict[tuple[str, str], list[tuple[int, Counter]]] = {}
        t = snap.timestamp
        for (scope, key), window in self._counter_windows.items():
            if scope == "hub":
                continue
            tracker = self._trackers.setdefault((scope, key), {})
            hits: list[tuple[int, Counter]] = []
            j = self._need[scope].index(key)
            for i, (rid, row) in enumerate(zip(ids[scope], rows[scope])):
                v = row[j]
                if v != v:
                    continue
                s = tracker.get((node, rid))
                if s is None:
                    tracker[(node, rid)] = Counter(t, v)
                    continue
                if t <= s.t:
                    continue
                delta = v - s.v if v >= s.v else v  # a drop is a counter reset: it counts from zero
                if delta > 0:
                    s.changes.append((s.t, delta))
                if s.changes:
                    s.changes = [ch for ch in s.changes if ch[0] >= t - window - self.lookback]
                    if s.changes:
                        hits.append((i, s))
                s.t, s.v = t, v
            out[(scope, key)] = hits
        return out

    def scope_data(self, nodes: list[NodeCols], scope: str) -> ScopeData:
        keys = self._need.get(scope, [])
        ids: list[tuple[str, ...]] = []
        base: list[dict[str, str]] = []
        rows: list[tuple[float, ...]] = []
        counters: dict[tuple[str, str], list[tuple[int, Counter]]] = {}
        owners: list[NodeCols | None] = []
        for c in nodes:
            sid = c.ids.get(scope)
            if not sid:
                continue
            off = len(ids)
            ids.extend(sid)
            base.extend([c.base] * len(sid))
            owners.extend([c] * len(sid))
            rows.extend(c.rows[scope])
            for ck, hits in c.counters.items():
                if ck[0] == scope and hits:
                    counters.setdefault(ck, []).extend((off + i, s) for i, s in hits)
        table = np.array(rows, dtype=np.float64).reshape(len(rows), len(keys))
        arrays = {k: np.ascontiguousarray(table[:, j]) for j, k in enumerate(keys)}
        return ScopeData(len(ids), ids, base, arrays, counters, owners)

    def hub_data(self, values: dict[str, float], now: float) -> ScopeData:
        keys = self._need.get("hub", [])
        cols = {k: np.array([values.get(k, NAN)], dtype=np.float64) for k in keys}
        counters: dict[tuple[str, str], list[tuple[int, Counter]]] = {}
        for (scope, key), window in self._counter_windows.items():
            if scope != "hub" or key not in values:
                continue
            tracker = self._trackers.setdefault((scope, key), {})
            v = float(values[key])
            s = tracker.get(("", ()))
            if s is None:
                tracker[("", ())] = Counter(now, v)
                continue
            if now > s.t:
                delta = v - s.v if v >= s.v else v
                if delta > 0:
                    s.changes.append((s.t, delta))
                s.changes = [ch for ch in s.changes if ch[0] >= now - window - self.lookback]
                s.t, s.v = now, v
            if s.changes:
                counters[(scope, key)] = [(0, s)]
        return ScopeData(1, [()], [{}], cols, counters, [None])

