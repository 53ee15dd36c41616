"""Conditions over a scope's columns: label matchers tested once per distinct value, terms and
comparisons as numpy vector operations, `and` / `unless` joined by position."""

from __future__ import annotations

import operator

import numpy as np

from ...catalogue import SCOPE_LABELS
from .columns import ScopeData
from .expr import Cond, Expr, Selector, Term

_OPS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le, "==": operator.eq,
        "!=": operator.ne}


def label_col(sd: ScopeData, scope: str, label: str) -> list[str]:
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


def mask_of(sd: ScopeData, sel: Selector) -> np.ndarray:
    mask = sd.masks.get(sel.matchers)
    if mask is None:
        mask = np.ones(sd.n, dtype=bool)
        for m in sel.matchers:
            col = label_col(sd, sel.metric.scope, m.name)
            verdict: dict[str, bool] = {}
            for v in set(col):
                verdict[v] = m.accepts(v)
            mask &= np.fromiter((verdict[v] for v in col), dtype=bool, count=sd.n)
        sd.masks[sel.matchers] = mask
    return mask


def term_values(sd: ScopeData, term: Term, now: float) -> tuple[np.ndarray, np.ndarray]:
    left = term.left
    if term.increase is not None:
        vals = np.zeros(sd.n, dtype=np.float64)
        present = ~np.isnan(sd.cols[left.metric.key])
        lo = now - term.increase
        for off, hits in sd.counters.get((left.metric.scope, left.metric.key), ()):
            for i, s in hits:
                # Both samples of a change inside [now - w, now], as Prometheus 2's range selection.
                vals[off + i] = s.increase_since(lo)
        return vals, present & mask_of(sd, left)
    a = sd.cols[left.metric.key]
    mask = mask_of(sd, left) & ~np.isnan(a)
    if term.right is None:
        return a, mask
    b = sd.cols[term.right.metric.key]
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = a / b
    return vals, mask & mask_of(sd, term.right) & ~np.isnan(b)


def cond_values(sd: ScopeData, cond: Cond, now: float) -> tuple[np.ndarray, np.ndarray]:
    vals, mask = term_values(sd, cond.term, now)
    with np.errstate(invalid="ignore"):
        return vals, mask & _OPS[cond.op](vals, cond.threshold)


def expr_values(sd: ScopeData, expr: Expr, now: float) -> tuple[np.ndarray, np.ndarray]:
    vals, mask = cond_values(sd, expr.first, now)
    for conj, c in expr.rest:
        _, m2 = cond_values(sd, c, now)
        mask = mask & m2 if conj == "and" else mask & ~m2
    return vals, mask
