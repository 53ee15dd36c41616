"""Rule evaluation over each node's latest snapshot, and the pending -> firing -> resolved machine.

Speed (1,000 nodes x 8 GPUs in well under 50 ms) comes from three things:
- each node's snapshot is read once per *new* snapshot into columns (one list per value key
  a rule needs), cached while the snapshot object stays the same;
- the columns of all nodes are joined into numpy arrays, so a condition over 8,000 GPUs is
  one vector comparison, and `a / b`, `and`, `unless` join by position (expr.py allows only
  one scope per rule, which makes position the same as PromQL's label matching);
- label matchers are tested once per distinct label value, not once per series.
Python-level work per series happens only for series whose condition holds.

Semantics follow Prometheus so the export is exact: a series is absent when its node's last
snapshot is older than `lookback` (Prometheus' 5 min staleness), `for` counts from the first
evaluation that found the condition true, empty labels are dropped, rule labels override
series labels, `increase(x[w]) > 0` holds while two samples inside [now - w, now] differ.
"""

from __future__ import annotations

import hashlib
import operator
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...catalogue import SCOPE_LABELS
from ...scopes import records
from ...snapshot import NodeSnapshot
from .expr import Cond, Expr, Matcher, Selector, Term
from .rules import Rule

NAN = float("nan")
_OPS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le, "==": operator.eq,
        "!=": operator.ne}
PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"


@dataclass(slots=True)
class NodeInput:
    """What the engine needs of one node: hub.fleet's NodeView fits, and so do test fixtures."""

    name: str
    labels: dict[str, str]
    snapshot: NodeSnapshot | None
    status: str = "up"
    since: float = 0.0


@dataclass(slots=True)
class Alert:
    fingerprint: str
    rule_id: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    state: str
    active_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    last_eval: float = 0.0
    ack_by: str | None = None
    ack_at: float | None = None
    ack_comment: str = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint, "rule": self.rule_id, "alertname": self.alertname,
            "severity": self.severity, "state": self.state, "labels": self.labels,
            "annotations": self.annotations, "value": None if self.value != self.value else self.value,
            "active_at": self.active_at, "fired_at": self.fired_at, "resolved_at": self.resolved_at,
            "last_eval": self.last_eval,
            "ack": None if self.ack_by is None else {"by": self.ack_by, "at": self.ack_at, "comment": self.ack_comment},
        }


def fingerprint(rule_id: str, labels: dict[str, str]) -> str:
    h = hashlib.sha256(rule_id.encode())
    for k in sorted(labels):
        h.update(b"\x00" + k.encode() + b"\x01" + labels[k].encode())
    return h.hexdigest()[:16]


# ---- reading snapshots into columns -------------------------------------------------------------


def _records(snap: NodeSnapshot, scope: str) -> Iterable[tuple[tuple[str, ...], dict[str, float]]]:
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
class _Counter:
    """One counter series: last sample and the increases seen (time of the sample before, delta)."""

    t: float
    v: float
    changes: list[tuple[float, float]] = field(default_factory=list)


@dataclass(slots=True)
class _NodeCols:
    snap: Any
    labels_key: tuple[tuple[str, str], ...]
    base: dict[str, str]
    ids: dict[str, list[tuple[str, ...]]]  # scope -> record identities
    rows: dict[str, list[tuple[float, ...]]]  # scope -> one tuple per record, keys in Engine._need order
    counters: dict[tuple[str, str], list[tuple[int, _Counter]]]  # (scope, key) -> (record, series) with changes


@dataclass(slots=True)
class _ScopeData:
    n: int
    ids: list[tuple[str, ...]]
    base: list[dict[str, str]]
    cols: dict[str, np.ndarray]
    counters: dict[tuple[str, str], list[tuple[int, _Counter]]]
    owners: list[_NodeCols | None] = field(default_factory=list)
    label_cols: dict[str, list[str]] = field(default_factory=dict)
    masks: dict[tuple[Matcher, ...], np.ndarray] = field(default_factory=dict)


class Engine:
    """Evaluates rules; owns the alerts (fingerprint -> Alert) and their transitions."""

    def __init__(self, rules: list[Rule], *, lookback: float = 300.0, grace: float = 0.0,
                 resolved_retention: float = 3600.0) -> None:
        self.lookback = lookback
        self.grace = grace
        self.resolved_retention = resolved_retention
        self.alerts: dict[str, Alert] = {}
        self.started_at: float | None = None
        self._cache: dict[str, _NodeCols] = {}
        # (rule, node, node labels, record) -> (fingerprint, alert labels): hashing labels is
        # the costliest per-alert step, and a series keeps its identity across snapshots.
        self._ident: dict[tuple[Any, ...], tuple[str, dict[str, str]]] = {}
        self._trackers: dict[tuple[str, str], dict[tuple[str, tuple[str, ...]], _Counter]] = {}
        self.last_duration = 0.0
        self.evaluations = 0
        self.set_rules(rules)

    def set_rules(self, rules: list[Rule]) -> None:
        self.rules = list(rules)
        self.by_id = {r.id: r for r in self.rules}
        need: dict[str, set[str]] = {}
        counters: dict[tuple[str, str], float] = {}
        for r in self.rules:
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
        # Alerts of rules that are gone resolve at the next evaluation (see evaluate()).

    # ---- columns -------------------------------------------------------------------------------

    def _node_cols(self, n: NodeInput) -> _NodeCols:
        snap = n.snapshot
        labels_key = tuple(n.labels.items())
        c = self._cache.get(n.name)
        if c is not None and c.snap is snap and c.labels_key == labels_key:
            return c
        base = {"node": n.name, **n.labels}
        ids: dict[str, list[tuple[str, ...]]] = {}
        rows: dict[str, list[tuple[float, ...]]] = {}
        for scope, keys in self._need.items():
            if scope == "hub":
                continue
            nans = [NAN] * len(keys)
            sid: list[tuple[str, ...]] = []
            srows: list[tuple[float, ...]] = []
            for rid, vals in _records(snap, scope):  # type: ignore[arg-type]
                sid.append(rid)
                srows.append(tuple(map(vals.get, keys, nans)))  # one C-level pass per record
            ids[scope], rows[scope] = sid, srows
        counters = self._track_counters(n.name, snap, ids, rows)  # type: ignore[arg-type]
        c = _NodeCols(snap, labels_key, base, ids, rows, counters)
        self._cache[n.name] = c
        return c

    def _track_counters(self, node: str, snap: NodeSnapshot, ids: dict[str, list[tuple[str, ...]]],
                        rows: dict[str, list[tuple[float, ...]]]) -> dict[tuple[str, str], list[tuple[int, _Counter]]]:
        out: dict[tuple[str, str], list[tuple[int, _Counter]]] = {}
        t = snap.timestamp
        for (scope, key), window in self._counter_windows.items():
            if scope == "hub":
                continue
            tracker = self._trackers.setdefault((scope, key), {})
            hits: list[tuple[int, _Counter]] = []
            j = self._need[scope].index(key)
            for i, (rid, row) in enumerate(zip(ids[scope], rows[scope])):
                v = row[j]
                if v != v:
                    continue
                s = tracker.get((node, rid))
                if s is None:
                    tracker[(node, rid)] = _Counter(t, v)
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

    def _scope_data(self, nodes: list[_NodeCols], scope: str) -> _ScopeData:
        keys = self._need.get(scope, [])
        ids: list[tuple[str, ...]] = []
        base: list[dict[str, str]] = []
        rows: list[tuple[float, ...]] = []
        counters: dict[tuple[str, str], list[tuple[int, _Counter]]] = {}
        owners: list[_NodeCols | None] = []
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
        return _ScopeData(len(ids), ids, base, arrays, counters, owners)

    def _hub_data(self, values: dict[str, float], now: float) -> _ScopeData:
        keys = self._need.get("hub", [])
        cols = {k: np.array([values.get(k, NAN)], dtype=np.float64) for k in keys}
        counters: dict[tuple[str, str], list[tuple[int, _Counter]]] = {}
        for (scope, key), window in self._counter_windows.items():
            if scope != "hub" or key not in values:
                continue
            tracker = self._trackers.setdefault((scope, key), {})
            v = float(values[key])
            s = tracker.get(("", ()))
            if s is None:
                tracker[("", ())] = _Counter(now, v)
                continue
            if now > s.t:
                delta = v - s.v if v >= s.v else v
                if delta > 0:
                    s.changes.append((s.t, delta))
                s.changes = [ch for ch in s.changes if ch[0] >= now - window - self.lookback]
                s.t, s.v = now, v
            if s.changes:
                counters[(scope, key)] = [(0, s)]
        return _ScopeData(1, [()], [{}], cols, counters, [None])

    # ---- conditions ----------------------------------------------------------------------------

    def _label_col(self, sd: _ScopeData, scope: str, label: str) -> list[str]:
        col = sd.label_cols.get(label)
        if col is None:
            names = SCOPE_LABELS.get(scope, ())
            if label in names:
                i = names.index(label)
                col = [rid[i] for rid in sd.ids]
            else:
                col = [b.get(label, "") for b in sd.base]
            sd.label_cols[label] = col
        return col

    def _mask(self, sd: _ScopeData, sel: Selector) -> np.ndarray:
        mask = sd.masks.get(sel.matchers)
        if mask is None:
            mask = np.ones(sd.n, dtype=bool)
            for m in sel.matchers:
                col = self._label_col(sd, sel.metric.scope, m.name)
                verdict: dict[str, bool] = {}
                for v in set(col):
                    verdict[v] = m.accepts(v)
                mask &= np.fromiter((verdict[v] for v in col), dtype=bool, count=sd.n)
            sd.masks[sel.matchers] = mask
        return mask

    def _term(self, sd: _ScopeData, term: Term, now: float) -> tuple[np.ndarray, np.ndarray]:
        left = term.left
        if term.increase is not None:
            vals = np.zeros(sd.n, dtype=np.float64)
            present = ~np.isnan(sd.cols[left.metric.key])
            lo = now - term.increase
            for i, s in sd.counters.get((left.metric.scope, left.metric.key), ()):
                # Both samples of a change inside [now - w, now], as Prometheus 2's range selection.
                vals[i] = sum(d for t_before, d in s.changes if t_before >= lo)
            return vals, present & self._mask(sd, left)
        a = sd.cols[left.metric.key]
        mask = self._mask(sd, left) & ~np.isnan(a)
        if term.right is None:
            return a, mask
        b = sd.cols[term.right.metric.key]
        with np.errstate(divide="ignore", invalid="ignore"):
            vals = a / b
        return vals, mask & self._mask(sd, term.right) & ~np.isnan(b)

    def _cond(self, sd: _ScopeData, cond: Cond, now: float) -> tuple[np.ndarray, np.ndarray]:
        vals, mask = self._term(sd, cond.term, now)
        with np.errstate(invalid="ignore"):
            return vals, mask & _OPS[cond.op](vals, cond.threshold)

    def _expr(self, sd: _ScopeData, expr: Expr, now: float) -> tuple[np.ndarray, np.ndarray]:
        vals, mask = self._cond(sd, expr.first, now)
        for conj, c in expr.rest:
            _, m2 = self._cond(sd, c, now)
            mask = mask & m2 if conj == "and" else mask & ~m2
        return vals, mask

    # ---- evaluation ------------------------------------------------------------------------------

    def evaluate(self, nodes: Iterable[NodeInput], hub_values: dict[str, float] | None = None,
                 now: float | None = None) -> list[Alert]:
        """One evaluation of every rule; returns the alerts whose state changed (new, fired,
        resolved, or dropped: a pending alert whose condition ended comes back with state
        'inactive' and is forgotten)."""
        t0 = time.perf_counter()
        now = time.time() if now is None else now
        if self.started_at is None:
            self.started_at = now
        in_grace = now - self.started_at < self.grace
        node_list = list(nodes)
        fresh: list[_NodeCols] = []
        fresh_names: set[str] = set()
        for n in node_list:
            if n.snapshot is not None and now - n.snapshot.timestamp <= self.lookback:
                fresh.append(self._node_cols(n))
                fresh_names.add(n.name)
        scopes: dict[str, _ScopeData] = {}
        changed: dict[str, Alert] = {}
        seen: set[str] = set()
        if len(self._ident) > 500_000:
            self._ident.clear()
        ident = self._ident
        for rule in self.rules:
            # (identity key or None, series labels, value, active-since hint)
            hits: list[tuple[tuple[Any, ...] | None, dict[str, str] | None, float, float | None]] = []
            if rule.expr is None:
                for n in node_list:
                    if n.status in rule.statuses:
                        base = {"node": n.name, **n.labels}
                        if all(m.matches(base) for m in rule.match):
                            hits.append((None, base, NAN, n.since))
            else:
                scope = rule.expr.scope
                sd = scopes.get(scope)
                if sd is None:
                    sd = self._hub_data(hub_values or {}, now) if scope == "hub" else self._scope_data(fresh, scope)
                    scopes[scope] = sd
                if sd.n == 0:
                    continue
                vals, mask = self._expr(sd, rule.expr, now)
                idx = np.flatnonzero(mask)
                hv = vals[idx].tolist()
                owners, ids = sd.owners, sd.ids
                for i, v in zip(idx.tolist(), hv):
                    o = owners[i]
                    key = (rule.id, o.base["node"], o.labels_key, ids[i]) if o is not None else (rule.id, "", (), ())
                    hits.append((key, None if key in ident else self._series_labels(sd, scope, i), v, None))
            for key, series, value, since in hits:
                known = ident.get(key) if key is not None else None
                if known is None:
                    assert series is not None
                    labels = {k: v for k, v in series.items() if v != ""}
                    labels.update(rule.labels)
                    labels["alertname"] = rule.alert
                    fp = fingerprint(rule.id, labels)
                    if key is not None:
                        ident[key] = (fp, labels)
                else:
                    fp, labels = known
                seen.add(fp)
                a = self.alerts.get(fp)
                if in_grace and rule.expr is None and (a is None or a.state == RESOLVED):
                    continue  # just (re)started: node status still reflects the hub's own downtime
                if a is None or a.state == RESOLVED:
                    start = now if since is None else min(since, now)
                    a = Alert(fp, rule.id, dict(labels), {}, value, PENDING, start)
                    self.alerts[fp] = a
                    changed[fp] = a
                    a.annotations = {k: t.render(labels, value) for k, t in rule.annotations.items()}
                elif value != a.value and not (value != value and a.value != a.value):
                    a.annotations = {k: t.render(labels, value) for k, t in rule.annotations.items()}
                a.value = value
                a.last_eval = now
                if a.state == PENDING and now - a.active_at >= rule.for_s:
                    a.state, a.fired_at = FIRING, now
                    changed[fp] = a
        for fp, a in list(self.alerts.items()):
            if fp in seen:
                continue
            if a.state == RESOLVED:
                if a.resolved_at is not None and now - a.resolved_at > self.resolved_retention:
                    del self.alerts[fp]
                continue
            rule = self.by_id.get(a.rule_id)
            if in_grace and rule is not None and rule.expr is not None and (
                    a.labels.get("node", "") not in fresh_names if rule.expr.scope != "hub" else not hub_values):
                continue  # just (re)started and this series has no fresh data yet: keep, don't resolve
            if a.state == PENDING:
                del self.alerts[fp]
                a.state = "inactive"
            else:
                a.state, a.resolved_at = RESOLVED, now
            a.last_eval = now
            changed[fp] = a
        self.evaluations += 1
        self.last_duration = time.perf_counter() - t0
        return list(changed.values())

    @staticmethod
    def _series_labels(sd: _ScopeData, scope: str, i: int) -> dict[str, str]:
        return {**sd.base[i], **dict(zip(SCOPE_LABELS.get(scope, ()), sd.ids[i]))}

    def active(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state in (PENDING, FIRING)]

    def restore(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            self.alerts[a.fingerprint] = a
