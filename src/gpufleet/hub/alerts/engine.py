"""Rule evaluation over each node's latest snapshot, and the pending -> firing -> resolved machine.

Module map: columns.py reads snapshots into columns, evaluate.py computes conditions over
them, and this module turns the series that hold into alerts and moves them through states.

Speed (1,000 nodes x 8 GPUs in well under 50 ms) comes from three things:
- each node's snapshot is read once per *new* snapshot into columns (one list per value key
  a rule needs), cached while the snapshot object stays the same;
- the columns of all nodes are joined into numpy arrays, so a condition over 8,000 GPUs is
  one vector comparison, and `a / b`, `and`, `unless` join by position (expr.py allows only
  one scope per rule, which makes position the same as PromQL's label matching);
- label matchers are tested once per distinct label value, not once per series.
Python-level work per series happens only for series whose condition holds, and even there
what repeats is kept: a series' identity (fingerprint, labels) while its node's labels and
records stay, its rendered annotations while the value stays (only those that print the value
are rendered again, when read after it moved), a counter column's state while no value in it moves.
Transient allocation is kept low on purpose: it is what sets off the collector's passes over
the whole hub heap (~200 ms each at 1,000 nodes).

Semantics follow Prometheus so the export is exact: a series is absent when its node's last
snapshot is older than `lookback` (Prometheus' 5 min staleness), `for` counts from the first
evaluation that found the condition true, empty labels are dropped, rule labels override
series labels, `increase(x[w]) > 0` holds while two samples inside [now - w, now] differ.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...catalogue import SCOPE_LABELS
from ...snapshot import NodeSnapshot
from .columns import NAN, ColumnReader, Ident, NodeCols, ScopeData
from .evaluate import expr_values
from .rules import Rule

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"
# A series for which a rule holds (Engine._hits)
_Hit = tuple[Ident | None, Any, tuple[str, dict[str, str]] | None, dict[str, str] | None, float, float | None]


@dataclass(slots=True)
class NodeInput:
    """What the engine needs of one node: hub.fleet's NodeView fits, and so do test fixtures."""

    name: str
    labels: dict[str, str]
    snapshot: NodeSnapshot | None  # the hub's lean one will do (hub/fleet.py), with `whole` given
    status: str = "up"
    since: float = 0.0
    # The whole snapshot, decoded on demand: for rules on records a lean one lacks (CPU cores, links).
    whole: Callable[[], NodeSnapshot | None] | None = None


@dataclass(slots=True)
class Alert:
    fingerprint: str
    rule_id: str
    labels: dict[str, str]
    rendered: dict[str, str]  # the annotations as last rendered: read them as `annotations`
    value: float
    state: str
    active_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    last_eval: float = 0.0
    ack_by: str | None = None
    ack_at: float | None = None
    ack_comment: str = ""
    # The rule (object) that rendered `rendered`, and the value they print: while it is the one
    # evaluating, the annotations that print the value are rendered again when read after the
    # value moved (the labels of a fingerprint never change). Rendering them at each evaluation
    # was a quarter of its time at 1,000 nodes with 4,000 allocated-but-idle GPUs pending.
    rendered_by: Any = field(default=None, repr=False, compare=False)
    rendered_value: float = field(default=float("nan"), repr=False, compare=False)

    @property
    def annotations(self) -> dict[str, str]:
        rule, v, was = self.rendered_by, self.value, self.rendered_value
        if rule is not None and v != was and not (v != v and was != was):
            moved = {k: t.render(self.labels, v) for k, t in rule.annotations.items() if t.uses_value}
            self.rendered = {**self.rendered, **moved} if moved else self.rendered
            self.rendered_value = v
        return self.rendered

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


def _no_pause() -> None:
    pass


class Engine:
    """Evaluates rules; owns the alerts (fingerprint -> Alert) and their transitions."""

    def __init__(self, rules: list[Rule], *, lookback: float = 300.0, grace: float = 0.0,
                 resolved_retention: float = 3600.0) -> None:
        self.lookback = lookback
        self.grace = grace
        self.resolved_retention = resolved_retention
        self.alerts: dict[str, Alert] = {}
        self.started_at: float | None = None
        self.columns = ColumnReader(lookback)
        # Hub rules' (rule, 0) -> (fingerprint, alert labels); nodes' series keep theirs with
        # their columns (NodeCols.ident): hashing labels is the costliest per-alert step, and
        # a series keeps its identity across snapshots.
        self._ident: Ident = {}
        self.last_duration = 0.0
        # Called between nodes and rules: the hub lets history reads somebody waits for go first
        # (hub/readfirst.py); an evaluation shared the GIL with them, and a 3 ms week query took
        # 150-260 ms every 5 s.
        self.pause: Callable[[], None] = _no_pause
        self.evaluations = 0
        self.set_rules(rules)

    def set_rules(self, rules: list[Rule]) -> None:
        self.rules = list(rules)
        self.by_id = {r.id: r for r in self.rules}
        self.columns.set_rules(self.rules)  # which also forgets the nodes' series identities
        self._ident.clear()  # a rule reloaded under the same id may carry other labels
        # Alerts of rules that are gone resolve at the next evaluation (see evaluate()).

    # ---- columns -------------------------------------------------------------------------------

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
        fresh: list[NodeCols] = []
        fresh_names: set[str] = set()
        pause = self.pause
        for n in node_list:
            pause()
            if n.snapshot is not None and now - n.snapshot.timestamp <= self.lookback:
                fresh.append(self.columns.node_cols(n))
                fresh_names.add(n.name)
        if self.columns.cached > len(node_list):
            self.columns.forget_except({n.name for n in node_list}, now)
        self.columns.sweep_counters(now)
        scopes: dict[str, ScopeData] = {}
        changed: dict[str, Alert] = {}
        seen: set[str] = set()
        for rule in self.rules:
            pause()
            for store, key, known, series, value, since in self._hits(rule, node_list, fresh, scopes, hub_values, now):
                if known is None:
                    assert series is not None
                    labels = {k: v for k, v in series.items() if v != ""}
                    labels.update(rule.labels)
                    labels["alertname"] = rule.alert
                    fp = fingerprint(rule.id, labels)
                    if store is not None:
                        store[key] = (fp, labels)
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
                    a.rendered = {k: t.render(labels, value) for k, t in rule.annotations.items()}
                    a.rendered_by, a.rendered_value = rule, value
                elif a.rendered_by is not rule and value != a.value and not (value != value and a.value != a.value):
                    # Restored, or its rule reloaded: all of them now. Else only those that print
                    # the value, and when read (Alert.annotations).
                    a.rendered = {k: t.render(labels, value) for k, t in rule.annotations.items()}
                    a.rendered_by, a.rendered_value = rule, value
                a.value = value
                a.last_eval = now
                if a.state == PENDING and now - a.active_at >= rule.for_s:
                    a.state, a.fired_at = FIRING, now
                    changed[fp] = a
        alerts = self.alerts
        # The keys of the alerts not seen this round (str keys: no tuple per alert for the collector).
        for fp in [fp for fp in alerts if fp not in seen]:
            a = alerts[fp]
            if a.state == RESOLVED:
                if a.resolved_at is not None and now - a.resolved_at > self.resolved_retention:
                    del self.alerts[fp]
                continue
            gone_rule = self.by_id.get(a.rule_id)
            if in_grace and gone_rule is not None and gone_rule.expr is not None and (
                    a.labels.get("node", "") not in fresh_names if gone_rule.expr.scope != "hub" else not hub_values):
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

    def _hits(self, rule: Rule, node_list: list[NodeInput], fresh: list[NodeCols], scopes: dict[str, ScopeData],
              hub_values: dict[str, float] | None, now: float) -> Iterator[_Hit]:
        """The series for which `rule` holds: (where its identity is kept, key there, identity if
        known, series labels if not, value, active-since hint). One at a time, not a list of
        thousands: what the collector sees allocated between its passes is what makes them run."""
        if rule.expr is None:
            for n in node_list:
                if n.status in rule.statuses:
                    base = {"node": n.name, **n.labels}
                    if all(m.matches(base) for m in rule.match):
                        yield None, None, None, base, NAN, n.since
            return
        scope = rule.expr.scope
        sd = scopes.get(scope)
        if sd is None:
            sd = self.columns.hub_data(hub_values or {}, now) if scope == "hub" else self.columns.scope_data(fresh, scope)
            scopes[scope] = sd
        if sd.n == 0:
            return
        vals, mask = expr_values(sd, rule.expr, now)
        idx = np.flatnonzero(mask)
        hv = vals[idx].tolist()
        owners, local = sd.owners, sd.local
        rid = rule.id
        for i, v in zip(idx.tolist(), hv):
            o = owners[i]
            # A node's series: kept with its columns by (rule, record), see NodeCols.ident.
            kept = o.ident[scope] if o is not None else self._ident
            key = (rid, local[i])
            known = kept.get(key)
            yield kept, key, known, None if known is not None else self._series_labels(sd, scope, i), v, None

    @staticmethod
    def _series_labels(sd: ScopeData, scope: str, i: int) -> dict[str, str]:
        return {**sd.base[i], **dict(zip(SCOPE_LABELS.get(scope, ()), sd.ids[i]))}

    def active(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state in (PENDING, FIRING)]

    def restore(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            self.alerts[a.fingerprint] = a
