"""Accounting over any period, from the settled figures (db.py): per user, group, job or node.

A period [since, until) is read as whole UTC days from usage_day, the rest of its first and
last day as whole hours from usage_hour, and the part of an hour at either end pro rata of
the time each hold held its GPU in that part (GPU-hours in use are exact; busy hours and
energy of that part hour are its hour's, shared by time). Days older than the hour rows
(db.HOUR_ROWS_KEEP_S) are shared the same way by day. So a 30-day report reads about one row
per hold and day, whatever the sample rate (benchmarks/bench_report.py).
"""

from __future__ import annotations

import gc
import json
import math
import sqlite3
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .answer import Answer
from .db import DAY, HOUR, HOUR_ROWS_KEEP_S

BY = {"user": "user", "group": "grp", "job": "job", "node": "node"}  # the column of each key
FIELDS = ("gpu_hours_in_use", "gpu_hours_busy", "mean_utilization", "energy_kwh", "waste_gpu_hours")
J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class Prices:
    gpu_hour: float | None = None  # per GPU-hour in use
    kwh: float | None = None

    def any(self) -> bool:
        return self.gpu_hour is not None or self.kwh is not None


Sums = dict[str, list[Any]]  # key -> [held, idle, busy, joules] (+ [user, nodes] by job)
# By job, each piece also says whose job it is and where it ran (no second look-up per job);
# nodes as "a,b" (group_concat), split once per job at the end.
JOB_EXTRA = ", MIN(user), group_concat(DISTINCT node)"
# Restricts the bucket path to the holds across an edge of the period (a JSON list of ids:
# a read-only connection cannot fill a temporary table).
IN_HOLDS = " AND {}hold IN (SELECT value FROM json_each(?))"


def _where(user: str | None, by: str, prefix: str = "") -> tuple[str, list[Any]]:
    sql, args = "", []
    if user is not None:
        sql += f" AND {prefix}user = ?"
        args.append(user)
    if by == "job":
        sql += f" AND {prefix}job != ''"
    return sql, args


def _add(acc: Sums, rows: list[Any]) -> None:
    for key, *vals in rows:
        a = acc.get(key)
        if a is None:
            a = acc[key] = [0.0, 0.0, 0.0, 0.0, "", ""]
        for i in range(4):
            a[i] += vals[i] or 0.0
        if len(vals) > 4:
            a[4] = a[4] or vals[4] or ""
            a[5] = f"{a[5]},{vals[5] or ''}"


def _whole(db: sqlite3.Connection, acc: Sums, table: str, lo: int, hi: int, by: str, user: str | None,
           ids: str | None) -> None:
    if hi <= lo:
        return
    extra, args = _where(user, by)
    if ids is not None:
        extra += IN_HOLDS.format("")
        args.append(ids)
    _add(acc, db.execute(
        f"SELECT {BY[by]}, SUM(held), SUM(idle), SUM(busy), SUM(energy){JOB_EXTRA if by == 'job' else ''} FROM {table} "
        f"WHERE t >= ? AND t < ?{extra} GROUP BY 1", [lo, hi, *args]).fetchall())


def _part(db: sqlite3.Connection, acc: Sums, table: str, width: int, a: float, b: float, by: str,
          user: str | None, ids: str | None) -> None:
    """The part [a, b) of the one bucket that holds it, shared by each hold's time in it."""
    if b <= a:
        return
    bucket = int(math.floor(a / width) * width)
    # Floats: with integer bounds SQLite would divide the shares below as integers (to 0).
    named: dict[str, Any] = {"a": float(a), "b": float(b), "t": bucket, "w": width}
    extra = ""
    if user is not None:
        extra += " AND h.user = :user"
        named["user"] = user
    if by == "job":
        extra += " AND h.job != ''"
    if ids is not None:
        extra += " AND h.hold IN (SELECT value FROM json_each(:ids))"
        named["ids"] = ids
    # The share of each hold's time in the bucket that falls in [a, b); overlap(x, y) of its
    # settled span is max(0, min(settled, y) - max(start, x)).
    ratio = ("MAX(0.0, MIN(h.settled, :b) - MAX(h.start, :a)) / "
             "NULLIF(MAX(0.0, MIN(h.settled, :t + :w) - MAX(h.start, :t)), 0.0)")
    sql = (f"SELECT u.{BY[by]}, SUM(u.held * r), SUM(u.idle * r), SUM(u.busy * r), SUM(u.energy * r)"
           f"{JOB_EXTRA if by == 'job' else ''} FROM "
           f"(SELECT u.*, {ratio} AS r FROM {table} u JOIN holds h ON h.id = u.hold WHERE u.t = :t) u "
           f"WHERE r > 0{extra.replace('h.', 'u.')} GROUP BY 1")
    _add(acc, db.execute(sql, named).fetchall())


def _edge(db: sqlite3.Connection, acc: Sums, a: float, b: float, by: str, user: str | None, now: float,
          ids: str | None) -> None:
    """[a, b) within one UTC day: whole hours, and shared parts at either end."""
    if b <= a:
        return
    if a < now - HOUR_ROWS_KEEP_S + DAY:  # no hour rows that far back: share the day's figures
        _part(db, acc, "usage_day", DAY, a, b, by, user, ids)
        return
    h0, h1 = math.ceil(a / HOUR) * HOUR, math.floor(b / HOUR) * HOUR
    if h0 > h1:
        _part(db, acc, "usage_hour", HOUR, a, b, by, user, ids)
        return
    _part(db, acc, "usage_hour", HOUR, a, h0, by, user, ids)
    _whole(db, acc, "usage_hour", h0, h1, by, user, ids)
    _part(db, acc, "usage_hour", HOUR, h1, b, by, user, ids)


def _buckets(db: sqlite3.Connection, acc: Sums, since: float, until: float, by: str, user: str | None, now: float,
             ids: str | None) -> None:
    """[since, until) from the hour and day rows (of the holds `ids` only, when given)."""
    d0, d1 = math.ceil(since / DAY) * DAY, math.floor(until / DAY) * DAY
    if d0 > d1:
        _edge(db, acc, since, until, by, user, now, ids)
    else:
        _edge(db, acc, since, d0, by, user, now, ids)
        _whole(db, acc, "usage_day", d0, d1, by, user, ids)
        _edge(db, acc, d1, until, by, user, now, ids)


# The sort key of a job wholly inside: GPU-hours in 1/10,000ths, rounded (SQLite's round(),
# halves up; numpy's np.round halves to even: _report checks the two agree, row by row). An
# integer: SQLite sorts rows led by one faster (~0.1 s of ~0.4 s for 370,000 rows).
HOURS_E4 = "CAST(round(held / 3600.0 * 10000.0) AS INTEGER)"


def _jobs_inside(db: sqlite3.Connection, acc: Sums, since: float, until: float) -> list[Any]:
    """By job: jobs wholly inside the period as one row each (db.job_totals, no grouping), in
    key order; the holds inside it of jobs across an edge go into `acc` (their edge holds
    follow in sums)."""
    # In answer order (SQLite's sort; _report checks its rounding): the 100,000s of rows are
    # then never reordered in Python, where fetching each from a scattered place is most of the
    # cost. Rows without figures are not in an answer.
    inside = db.execute(
        f"SELECT job, held, idle, busy, energy, user, nodes, {HOURS_E4} AS e4 FROM job_totals "
        "INDEXED BY job_totals_settled WHERE settled > ? AND settled <= ? AND start >= ? AND (held > 0 OR energy > 0) "
        "ORDER BY e4 DESC, job", [since, until, since]).fetchall()
    across = [r[0] for r in db.execute(
        "SELECT job FROM job_totals INDEXED BY job_totals_settled WHERE settled > ? AND start < ? "
        "AND (start < ? OR settled > ?)", [since, until, since, until])]
    if across:
        _add(acc, db.execute(
            f"SELECT job, SUM(held), SUM(idle), SUM(busy), SUM(energy){JOB_EXTRA} FROM holds INDEXED BY holds_job "
            "WHERE job IN (SELECT value FROM json_each(?)) AND settled > ? AND settled <= ? AND start >= ? GROUP BY 1",
            [json.dumps(across), since, until, since]).fetchall())
    return inside


@dataclass(slots=True)
class Columns:
    """Per key, [held, idle, busy, joules] and, by job, its user and nodes ("a,b"). The first
    `ordered` rows are in answer order, with GPU-hours in 1/10,000ths in `e4` (SQL's rounding);
    the rest are none of their keys."""

    keys: list[str]
    vals: np.ndarray  # (keys, 4)
    users: list[str]
    nodes: list[str]
    ordered: int = 0
    e4: np.ndarray | None = None


def sums(db: sqlite3.Connection, since: float, until: float, by: str, user: str | None, now: float) -> Columns:
    """Per key, the figures of [since, until).

    A hold wholly inside the period (start >= since, settled <= until) has all its figures in
    it: its running totals (holds.held ...) are read, one row per hold (index holds_settled
    covers the read). Only holds across an edge take the bucket path, restricted to them and
    to the stretch where they have figures: a 30-day report by job reads ~380,000 holds
    instead of ~800,000 day rows summed per job (benchmarks/bench_report.py).
    """
    if until <= since:
        return Columns([], np.zeros((0, 4)), [], [])
    acc: Sums = {}
    whole_jobs = by == "job" and user is None
    if whole_jobs:
        inside = _jobs_inside(db, acc, since, until)
    else:
        extra, args = _where(user, by)
        inside = db.execute(
            f"SELECT {BY[by]}, SUM(held), SUM(idle), SUM(busy), SUM(energy){JOB_EXTRA if by == 'job' else ''} "
            f"FROM holds INDEXED BY holds_settled WHERE settled > ? AND settled <= ? AND start >= ?{extra} GROUP BY 1",
            [since, until, since, *args]).fetchall()
    uextra, uargs = _where(user, "")
    # Across the start (and maybe the end too): figures from `since` to their last settled hour.
    first = db.execute(f"SELECT id, settled FROM holds INDEXED BY holds_settled WHERE settled > ? "
                       f"AND start < ?{uextra}",
                       [since, since, *uargs]).fetchall()
    if first:
        hi = min(until, math.ceil(max(s for _, s in first) / HOUR) * HOUR)
        _buckets(db, acc, since, hi, by, user, now, json.dumps([i for i, _ in first]))
    # Across the end only: figures from their first hour to `until`.
    last = db.execute(f"SELECT id, start FROM holds INDEXED BY holds_settled WHERE settled > ? AND start >= ? "
                      f"AND start < ?{uextra}", [until, since, until, *uargs]).fetchall()
    if last:
        lo = max(since, math.floor(min(s for _, s in last) / HOUR) * HOUR)
        _buckets(db, acc, lo, until, by, user, now, json.dumps([i for i, _ in last]))
    # As columns (one transpose in C, no object per row): by job, 100,000s of rows.
    cols: list[Sequence[Any]] = list(zip(*inside)) if inside else [() for _ in range(8 if whole_jobs else 7 if by == "job" else 5)]
    keys = list(cols[0])
    ordered = len(keys) if whole_jobs else 0
    e4 = np.array(cols[7], dtype=np.int64) if whole_jobs else None
    vals = np.array(cols[1:5], dtype=np.float64).T.reshape(len(keys), 4)
    users, nodes = (list(cols[5]), list(cols[6])) if by == "job" else ([], [])
    if acc:  # the holds across an edge: added to their key's row, or a row of their own
        vals = np.vstack([vals, np.zeros((len(acc), 4))])
        # By job from job_totals, the jobs across an edge are not among those read whole.
        index = {} if whole_jobs else dict(zip(keys, range(len(keys))))
        for key, a in acc.items():
            i = index.get(key)
            if i is None:
                i = len(keys)
                keys.append(key)
                if by == "job":
                    users.append(a[4])
                    nodes.append(a[5])
            elif by == "job":
                users[i] = users[i] or a[4]
                nodes[i] = f"{nodes[i]},{a[5]}"
            vals[i] += a[:4]
        vals = vals[:len(keys)]
    return Columns(keys, vals, users, nodes, ordered, e4)


def figures(sums: Sequence[float], prices: Prices) -> dict[str, float]:
    """The report's columns from [held, idle, busy] GPU-seconds and joules."""
    held, idle, busy, joules = sums
    row = {
        "gpu_hours_in_use": round(held / HOUR, 4),
        "gpu_hours_busy": round(busy / HOUR, 4),
        "mean_utilization": round(busy / held, 4) if held > 0 else 0.0,
        "energy_kwh": round(joules / J_PER_KWH, 6),
        "waste_gpu_hours": round(idle / HOUR, 4),
    }
    if prices.any():
        row["cost"] = round((held / HOUR) * (prices.gpu_hour or 0.0) + (joules / J_PER_KWH) * (prices.kwh or 0.0), 2)
    return row


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cycle collector paused: a report by job makes 100,000s of acyclic objects (rows), and
    each allocation burst would start a collection that walks them all (~40% of its CPU)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            # The rows made meanwhile go straight to the oldest generation (freeze, then
            # unfreeze): enabling alone would make the next allocation walk them all at once.
            gc.freeze()
            gc.enable()
            gc.unfreeze()


def usage(db: sqlite3.Connection, since: float, until: float, by: str, *, now: float, user: str | None = None,
          prices: Prices = Prices()) -> list[dict[str, Any]]:
    """One row per `by` key with FIELDS (and cost when priced), most GPU-hours first."""
    with _no_gc():
        return _report(db, since, until, by, now, user, prices).rows()


def report(db: sqlite3.Connection, since: float, until: float, by: str, *, now: float, user: str | None = None,
           prices: Prices = Prices()) -> Answer:
    """The rows of usage() as columns (what the API writes as JSON or CSV: no dict per row)."""
    with _no_gc():
        return _report(db, since, until, by, now, user, prices)


def _report(db: sqlite3.Connection, since: float, until: float, by: str, now: float, user: str | None,
            prices: Prices) -> Answer:
    c = sums(db, since, until, by, user, now)
    held, idle, busy, joules = c.vals.T
    hours = np.round(held / HOUR, 4)
    if c.e4 is not None and not np.array_equal(np.rint(held[:c.ordered] / HOUR * 10000.0), c.e4):
        c.ordered = 0  # SQL rounded otherwise than numpy (a half, or a sum a hair under one): sorted here
    keep = np.flatnonzero((held > 0) | (joules > 0))
    if not keep.size:
        return Answer(by)
    # Most GPU-hours first, then by key: the first c.ordered rows are in that order already
    # (all kept), the rest are sorted here and each put in its place among them.
    rest_a = keep[keep >= c.ordered]
    neg = (-hours[rest_a]).tolist()
    rest_keys = [c.keys[i] for i in rest_a.tolist()]
    by_place = sorted(range(len(neg)), key=lambda j: (neg[j], rest_keys[j]))
    rest = rest_a[by_place].tolist()
    head, head_neg = c.keys[:c.ordered], -hours[:c.ordered]
    neg_sorted = [neg[j] for j in by_place]
    lo = np.searchsorted(head_neg, neg_sorted, "left").tolist()
    hi = np.searchsorted(head_neg, neg_sorted, "right").tolist()
    at = [bisect_left(head, rest_keys[j], a, b) for j, a, b in zip(by_place, lo, hi)]
    # Each row of the answer among c's rows: the ordered ones, with the rest put in before `at`.
    order = np.insert(np.arange(c.ordered), at, rest) if rest else np.arange(c.ordered)
    held, idle, busy, joules, hours = held[order], idle[order], busy[order], joules[order], hours[order]
    cols = {"gpu_hours_in_use": hours, "gpu_hours_busy": np.round(busy / HOUR, 4),
            "mean_utilization": np.round(np.divide(busy, held, out=np.zeros_like(held), where=held > 0), 4),
            "energy_kwh": np.round(joules / J_PER_KWH, 6), "waste_gpu_hours": np.round(idle / HOUR, 4)}
    if prices.any():
        cols["cost"] = np.round((held / HOUR) * (prices.gpu_hour or 0.0)
                                + (joules / J_PER_KWH) * (prices.kwh or 0.0), 2)
    figs = {k: col.tolist() for k, col in cols.items()}
    if by != "job":
        return Answer(by, _merge(c.keys, c.ordered, rest, at), figs)
    return Answer(by, _merge(c.keys, c.ordered, rest, at), figs, _merge(c.users, c.ordered, rest, at),
                  _merge(c.nodes, c.ordered, rest, at))


def _merge(col: list[str], ordered: int, rest: list[int], at: list[int]) -> list[str]:
    """col[:ordered] with col[rest[j]] put in before place at[j]: slices, in the order the rows
    lie in memory (gathering 100,000s of scattered objects costs more than the figures)."""
    out: list[str] = []
    prev = 0
    for i, p in zip(rest, at):
        out += col[prev:p]
        out.append(col[i])
        prev = p
    out += col[prev:ordered]
    return out


def monthly(db: sqlite3.Connection, by: str, since: float, *, user: str | None = None,
            prices: Prices = Prices()) -> list[dict[str, Any]]:
    """GPU-hours and the rest per UTC month and `by` key (whole days: months are whole days)."""
    extra, args = _where(user, by)
    rows = db.execute(
        f"SELECT strftime('%Y-%m', t, 'unixepoch') AS month, {BY[by]}, SUM(held), SUM(idle), SUM(busy), "
        f"SUM(energy) FROM usage_day WHERE t >= ?{extra} "
        f"GROUP BY 1, 2 ORDER BY 1, 3 DESC", [int(since // DAY * DAY), *args]).fetchall()
    return [{"month": m, by: key, **figures((held, idle, busy, joules), prices)}
            for m, key, held, idle, busy, joules in rows]


def trend(db: sqlite3.Connection, by: str, since: float, until: float, *, user: str | None = None,
          top: int = 8) -> dict[str, Any]:
    """GPU-hours in use per UTC day for the `top` keys (the rest summed as "others")."""
    extra, args = _where(user, by)
    d0 = int(since // DAY * DAY)
    rows = db.execute(
        f"SELECT t, {BY[by]}, SUM(held) FROM usage_day WHERE t >= ? AND t < ?{extra} GROUP BY 1, 2",
        [d0, until, *args]).fetchall()
    totals: dict[str, float] = {}
    for _, key, held in rows:
        totals[key] = totals.get(key, 0.0) + held
    keep = sorted(totals, key=lambda k: -totals[k])[:top]
    days = list(range(d0, int(until) + 1, DAY)) if until > d0 else []
    index = {d: i for i, d in enumerate(days)}
    series: dict[str, list[float]] = {k: [0.0] * len(days) for k in keep}
    others = [0.0] * len(days)
    for t, key, held in rows:
        i = index.get(int(t))
        if i is None:
            continue
        (series[key] if key in series else others)[i] += round(held / HOUR, 4)
    out = [{"key": k, "gpu_hours": v} for k, v in series.items()]
    if any(others):
        out.append({"key": "others", "gpu_hours": others})
    return {"days": days, "series": out}
