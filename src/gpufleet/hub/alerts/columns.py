"""The alert engine's column reader: each node's latest snapshot read once into columns (one
per value key a rule needs), cached while the snapshot object stays the same, and joined
across nodes into numpy arrays per scope; counters' recent increases are tracked here too.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
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
Ident = dict[Any, tuple[str, dict[str, str]]]  # a series' key -> (fingerprint, alert labels), see NodeCols.ident


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
    """One counter series: last sample, and the increases seen, oldest first: when (the time of
    the sample before) and by how much. Times only grow, so the window's increases are a tail
    found by bisection: a counter that rises at every snapshot has up to (window + lookback) /
    interval of them (180 at 5 s), which every evaluation used to walk twice."""

    t: float
    v: float
    # Empty tuples (shared: nothing allocated) while there is no increase, as for most counters.
    times: list[float] | tuple[()] = ()
    deltas: list[float] | tuple[()] = ()

    def add(self, delta: float) -> None:
        if isinstance(self.times, list) and isinstance(self.deltas, list):
            self.times.append(self.t)
            self.deltas.append(delta)
        else:
            self.times, self.deltas = [self.t], [delta]

    def keep_since(self, horizon: float) -> bool:
        """Forget increases before `horizon`; whether any is left."""
        k = bisect_left(self.times, horizon)
        if k == len(self.times):
            self.times = self.deltas = ()
            return False
        if k:
            assert isinstance(self.times, list) and isinstance(self.deltas, list)
            del self.times[:k]
            del self.deltas[:k]
        return True

    def increase_since(self, lo: float) -> float:
        """The increases from `lo` on, summed oldest first (the same float as a loop over them)."""
        return sum(self.deltas[bisect_left(self.times, lo):])


@dataclass(slots=True)
class NodeCols:
    # The snapshot these columns were read for, known by its node-level `values` dict (with its
    # time): holding the snapshot itself kept every node's previous one alive until the next
    # evaluation, ~85 MiB at 1,000 nodes; the dict is a few KB and, held, cannot be another's.
    key: dict[str, float]
    t: float
    labels_key: tuple[tuple[str, str], ...]
    base: dict[str, str]
    ids: dict[str, list[tuple[str, ...]]]  # scope -> record identities
    rows: dict[str, array[float]]  # scope -> values, record after record, keys in ColumnReader._need order
    counters: dict[tuple[str, str], list[tuple[int, Counter]]]  # (scope, key) -> (record, series) with changes
    # scope -> (rule id, record) -> (fingerprint, alert labels), for Engine: handed on to the
    # node's next columns while its labels and that scope's records stay the same (nearly always),
    # so a series' identity is hashed once, not at every evaluation.
    ident: dict[str, Ident] = field(default_factory=dict)


@dataclass(slots=True)
class _Column:
    """One node's series of one counter key as of its last snapshot: lets a column with no
    new value (most counters, most of the time) skip the per-series work."""

    ids: list[tuple[str, ...]]
    values: array[float]
    t: float
    series: list[Counter]  # by record, when `whole`
    whole: bool  # every series was brought to (t, values[i]) by that snapshot
    changing: list[int]  # records whose series had increases inside its window


@dataclass(slots=True)
class ScopeData:
    n: int
    ids: list[tuple[str, ...]]
    base: list[dict[str, str]]
    cols: dict[str, np.ndarray]
    # (scope, key) -> (offset of a node's rows, its series with increases: (record, series))
    counters: dict[tuple[str, str], list[tuple[int, list[tuple[int, Counter]]]]]
    owners: list[NodeCols | None] = field(default_factory=list)
    local: list[int] = field(default_factory=list)  # each row's record index in its owner's columns
    label_cols: dict[str, list[str]] = field(default_factory=dict)
    masks: dict[tuple[Matcher, ...], np.ndarray] = field(default_factory=dict)


class ColumnReader:
    """Reads what the rules need out of snapshots; owns the per-node cache and counter trackers."""

    SWEEP_S = 60.0  # how often counter series that can no longer count are looked for

    def __init__(self, lookback: float) -> None:
        self.lookback = lookback
        self._cache: dict[str, NodeCols] = {}
        self._trackers: dict[tuple[str, str], dict[tuple[str, tuple[str, ...]], Counter]] = {}
        self._columns: dict[str, list[_Column | None]] = {}  # node -> its counter columns, as _counted
        self._need: dict[str, list[str]] = {}
        self._counter_windows: dict[tuple[str, str], float] = {}
        # The counters of record scopes: (scope, key, window, position in a row, row length).
        self._counted: list[tuple[str, str, float, int, int]] = []
        self._swept = float("-inf")

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
        self._counted = [(scope, key, window, self._need[scope].index(key), len(self._need[scope]))
                         for (scope, key), window in counters.items() if scope != "hub"]
        self._cache.clear()  # the columns depend on which keys the rules read, identities on the rules
        self._columns.clear()  # the trackers stay: only the positions of values in rows moved

    @property
    def scopes(self) -> frozenset[str]:
        """The record scopes the rules read."""
        return frozenset(self._need)

    @property
    def cached(self) -> int:
        return len(self._cache)

    @property
    def counter_series(self) -> int:
        """Counter series tracked (each its last sample and recent increases)."""
        return sum(len(t) for t in self._trackers.values())

    def forget_except(self, names: set[str], now: float) -> None:
        """Drop what is kept for nodes the fleet no longer has, once their columns could not count
        again (a node back with the same snapshot object, while fresh, finds its columns as they were)."""
        gone = {n for n, c in self._cache.items()
                if n not in names and not now - c.t <= self.lookback}
        for name in gone:
            del self._cache[name]
        for name in [n for n in self._columns if n not in names]:
            del self._columns[name]  # only a shortcut: the trackers hold the counters' state

    def sweep_counters(self, now: float) -> int:
        """Forget counter series that can no longer count (every SWEEP_S at most): those of nodes
        whose columns are gone, of keys no rule counts any more, and those not seen for longer than
        their window from their node's latest snapshot (a record gone: a user, a container, a
        GPU). A series back later starts from its value then, as Prometheus' increase() over a
        window holding none of its old samples would; without this, a fleet whose nodes and
        records come and go grew these for as long as the hub ran. Returns how many it forgot."""
        if now - self._swept < self.SWEEP_S:
            return 0
        self._swept = now
        latest = {name: c.t for name, c in self._cache.items()}
        forgot = 0
        for ck in [ck for ck in self._trackers if ck not in self._counter_windows]:
            forgot += len(self._trackers.pop(ck))
        for ck, tracker in self._trackers.items():
            span = self._counter_windows[ck] + self.lookback
            hub = ck[0] == "hub"  # one series, on the hub's clock
            gone = [k for k, s in tracker.items()
                    if (t := now if hub else latest.get(k[0])) is None or s.t < t - span]
            for k in gone:
                del tracker[k]
            forgot += len(gone)
        return forgot

    def node_cols(self, n: NodeInput) -> NodeCols:
        snap = n.snapshot
        assert snap is not None  # the engine reads only nodes with a fresh snapshot
        labels_key = tuple(n.labels.items())
        c = self._cache.get(n.name)
        if c is not None and c.key is snap.values and c.t == snap.timestamp and c.labels_key == labels_key:
            return c
        read = snap
        if n.whole is not None and not LEAN_LACKS.isdisjoint(self._need):
            read = n.whole() or snap  # a rule reads CPU cores or links: decoded once per new snapshot
        ids: dict[str, list[tuple[str, ...]]] = {}
        rows: dict[str, array[float]] = {}
        for scope, keys in self._need.items():
            if scope == "hub":
                continue
            nans = [NAN] * len(keys)
            sid: list[tuple[str, ...]] = []
            flat: list[float] = []
            for rid, vals in _records(read, scope):
                sid.append(rid)
                flat.extend(map(vals.get, keys, nans))  # one C-level pass per record
            ids[scope], rows[scope] = sid, array("d", flat)
        ident: dict[str, Ident] = {}
        if c is not None and c.labels_key == labels_key:
            base = c.base
            for scope, sid in ids.items():
                if c.ids.get(scope) == sid:
                    # The same series as the node's last snapshot: keep their identities (and one copy of them).
                    ids[scope], ident[scope] = c.ids[scope], c.ident[scope]
                else:
                    ident[scope] = {}
        else:
            base = {"node": n.name, **n.labels}
            ident = {scope: {} for scope in ids}
        counters = self._track_counters(n.name, snap, ids, rows)
        c = NodeCols(snap.values, snap.timestamp, labels_key, base, ids, rows, counters, ident)
        self._cache[n.name] = c
        return c

    def _track_counters(self, node: str, snap: NodeSnapshot, ids: dict[str, list[tuple[str, ...]]],
                        rows: dict[str, array[float]]) -> dict[tuple[str, str], list[tuple[int, Counter]]]:
        """Each counter series' increases over its window; (scope, key) -> records with some."""
        out: dict[tuple[str, str], list[tuple[int, Counter]]] = {}
        t = snap.timestamp
        columns = self._columns.get(node)
        if columns is None or len(columns) != len(self._counted):
            columns = self._columns[node] = [None] * len(self._counted)
        for c, (scope, key, window, j, width) in enumerate(self._counted):
            sid = ids[scope]
            values = rows[scope][j::width]
            horizon = t - window - self.lookback
            hits: list[tuple[int, Counter]] = []
            col = columns[c]
            if col is not None and col.whole and t > col.t and col.values == values and col.ids == sid:
                # Nothing new in this column (NaN never compares equal, so none is here): each
                # series only moves on to this snapshot's time, and old increases age out.
                for s in col.series:
                    s.t = t
                if col.changing:
                    changing = []
                    for i in col.changing:
                        s = col.series[i]
                        if s.keep_since(horizon):
                            hits.append((i, s))
                            changing.append(i)
                    col.changing = changing
                col.t = t
            else:
                tracker = self._trackers.setdefault((scope, key), {})
                series: list[Counter] = []
                whole = True
                for i, (rid, v) in enumerate(zip(sid, values)):
                    if v != v:
                        whole = False
                        continue
                    got = tracker.get((node, rid))
                    if got is None:
                        tracker[(node, rid)] = got = Counter(t, v)
                        series.append(got)
                        continue
                    s = got
                    series.append(s)
                    if t <= s.t:
                        whole = False
                        continue
                    delta = v - s.v if v >= s.v else v  # a drop is a counter reset: it counts from zero
                    if delta > 0:
                        s.add(delta)
                    if s.times and s.keep_since(horizon):
                        hits.append((i, s))
                    s.t, s.v = t, v
                columns[c] = _Column(sid, values, t, series, whole, [i for i, _ in hits])
            if hits:
                out[(scope, key)] = hits
        return out

    def scope_data(self, nodes: list[NodeCols], scope: str) -> ScopeData:
        keys = self._need.get(scope, [])
        ids: list[tuple[str, ...]] = []
        base: list[dict[str, str]] = []
        flats: list[array[float]] = []
        counters: dict[tuple[str, str], list[tuple[int, list[tuple[int, Counter]]]]] = {}
        owners: list[NodeCols | None] = []
        local: list[int] = []
        for c in nodes:
            sid = c.ids.get(scope)
            if not sid:
                continue
            off, n = len(ids), len(sid)
            ids.extend(sid)
            base.extend([c.base] * n)
            owners.extend([c] * n)
            local.extend(range(n))
            flats.append(c.rows[scope])
            for ck, hits in c.counters.items():
                if ck[0] == scope:
                    counters.setdefault(ck, []).append((off, hits))
        # The nodes' rows are float64 already: one copy joins them, no per-value conversion.
        table = np.frombuffer(bytearray().join(flats), dtype=np.float64) if ids and keys else np.empty(0)
        table = table.reshape(len(ids), len(keys))
        arrays = {k: np.ascontiguousarray(table[:, j]) for j, k in enumerate(keys)}
        return ScopeData(len(ids), ids, base, arrays, counters, owners, local)

    def hub_data(self, values: dict[str, float], now: float) -> ScopeData:
        keys = self._need.get("hub", [])
        cols = {k: np.array([values.get(k, NAN)], dtype=np.float64) for k in keys}
        counters: dict[tuple[str, str], list[tuple[int, list[tuple[int, Counter]]]]] = {}
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
                    s.add(delta)
                s.keep_since(now - window - self.lookback)
                s.t, s.v = now, v
            if s.times:
                counters[(scope, key)] = [(0, [(0, s)])]
        return ScopeData(1, [()], [{}], cols, counters, [None], [0])

