"""Settling: each hold's GPU-seconds held, idle and busy, and its energy, per hour and UTC day.

Runs in the background (the usage extension's loop), never on the push path. For each node
with holds not yet settled up to its newest snapshot, it reads the window's samples of GPU
utilisation, the energy counter and power from the store (Hub.query_range, so the embedded
store and --history alike) and integrates them over each hold, sample-and-hold: a sample
stands for the time until the next one. Energy is the counter's increase (a counter that
went down was reset: its new value is the increase, as Prometheus' increase() counts it),
or power x time where the counter is missing. Idle: utilisation under IDLE_RATIO (the agent's
idle_held line). A hold of MIG slices is busy and idle by each slice's own activity (the
`mig` scope's engine activity, weighted by the slice's share): NVML reports no whole-GPU
utilisation with MIG on. Energy stays the whole GPU's counter, shared by GPU-equivalents.
Figures and each hold's `settled` mark are written in one transaction; a crash repeats a
step, never counts it twice.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...catalogue import name_of
from ...syntax import Matcher
from .db import DAY, HOUR, HOUR_ROWS_KEEP_S
from .holders import parse_mig

log = logging.getLogger("gpufleet.hub.usage")

IDLE_RATIO = 0.05  # a held GPU busier than this is used (jobstats and DS01 draw the line near here)
LOOKBACK_S = 900.0  # read this far before a window: the sample that covers its start
MAX_WINDOW_S = 3 * HOUR  # one read per metric at most this long (10,800 one-second points)
STEP_S = 1.0  # samples are read in bins this long (the bin's start is the sample's time)
# A remote history (--history) may not have a node's newest samples yet. VictoriaMetrics answers
# for its last 30 s (-search.latencyOffset) with the last sample before them repeated in place of
# the real ones (a counter standing still: energy lost): settling never reads the last
# HISTORY_DELAY_S. Samples still in the hub's remote write queue are simply absent: settling stops
# at the newest sample of the hold's GPU and takes the rest next time; after HISTORY_WAIT_S it
# gives up waiting, and what the remote never got is counted as the store would (sample and
# hold across a gap) or not at all.
HISTORY_DELAY_S = 60.0
HISTORY_WAIT_S = 900.0
UTIL = name_of("gpu", "utilization_ratio")
ENERGY = name_of("gpu", "energy_joules_total")
POWER = name_of("gpu", "power_watts")
# A MIG instance's activity: NVML gives no whole-GPU utilisation with MIG on (docs/accounting.md).
MIG_ACTIVE = name_of("mig", "graphics_engine_active_ratio")

# query_range(metric, matchers, start, end, step, agg) -> [(labels, timestamps, values)]
Lock = AbstractContextManager[object]
Query = Callable[[str, list[Matcher], float, float, float, str], Sequence[tuple[dict[str, str], Any, list[float]]]]


@dataclass(slots=True)
class Samples:
    """One GPU's samples in a window: time-sorted, NaN where a reading is missing."""

    ts: np.ndarray
    util: np.ndarray
    energy: np.ndarray
    power: np.ndarray
    mig: dict[str, np.ndarray] = field(default_factory=dict)  # GPU instance (label `gpu_instance`) -> activity at ts

    def held_share(self, mig: Mapping[str, float], eq: float) -> tuple[np.ndarray, np.ndarray]:
        """(busy share, idle share) of a hold at each sample: the GPU's utilisation for a whole
        GPU; for MIG slices ({GPU instance: share}), each slice's activity weighted by its share
        of the hold. A reading missing is neither busy nor idle (NaN util: not idle)."""
        if not mig:
            return self.util, np.where(self.util < IDLE_RATIO, 1.0, 0.0)
        busy = np.zeros(self.ts.size)
        idle = np.zeros(self.ts.size)
        known = np.zeros(self.ts.size, dtype=bool)
        for gi, share in mig.items():
            act = self.mig.get(gi)
            if act is None:
                continue
            ok = ~np.isnan(act)
            known |= ok
            busy += np.where(ok, act, 0.0) * share
            idle += np.where(act < IDLE_RATIO, share, 0.0)
        w = eq if eq > 0 else 1.0
        return np.where(known, busy / w, math.nan), idle / w


def read_node(query: Query, node: str, lo: float, hi: float, mig: bool = False) -> dict[str, Samples]:
    """Per GPU index (label `gpu`), the samples of [lo - LOOKBACK_S, hi] at one-second steps;
    with `mig`, its MIG instances' activity too (the busiest compute instance of each GPU
    instance, as the agent's allocation collector counts a slot busy)."""
    start = math.floor(lo - LOOKBACK_S)
    match = [Matcher("node", "=", node)]
    cols: dict[str, dict[str, dict[float, float]]] = {}
    reads = [("util", UTIL, "avg"), ("energy", ENERGY, "last"), ("power", POWER, "avg")]
    if mig:
        reads.append(("mig", MIG_ACTIVE, "avg"))
    for key, metric, agg in reads:
        for labels, ts, values in query(metric, match, float(start), float(hi), STEP_S, agg):
            gpu = labels.get("gpu", "")
            if key == "mig":
                col = cols.setdefault(gpu, {}).setdefault("mig:" + labels.get("gpu_instance", ""), {})
                for t, v in zip((float(t) for t in ts), values):
                    old = col.get(t)
                    col[t] = v if old is None or math.isnan(old) or v > old else old
                continue
            col = cols.setdefault(gpu, {}).setdefault(key, {})
            col.update(zip((float(t) for t in ts), values))
    out = {}
    for gpu, c in cols.items():
        times = sorted(set().union(*(d.keys() for d in c.values())))

        def column(k: str) -> np.ndarray:
            d = c.get(k, {})
            return np.array([d.get(t, math.nan) for t in times], dtype=np.float64)

        out[gpu] = Samples(np.array(times, dtype=np.float64), column("util"), column("energy"), column("power"),
                           {k[4:]: column(k) for k in c if k.startswith("mig:")})
    return out


Figures = dict[int, list[float]]  # bucket start -> [held, idle, busy, joules] (GPU-seconds, joules)


def integrate(s: Samples, a: float, b: float, eq: float, mig: Mapping[str, float] | None = None) -> Figures:
    """One hold's figures over [a, b), per hour bucket (days are sums of their hours); `mig`:
    the MIG slices it holds ({GPU instance: share}), busy and idle by their own activity."""
    out: Figures = {}
    if b <= a or s.ts.size < 2:
        return out
    share_busy, share_idle = s.held_share(mig or {}, eq)
    ts = s.ts
    # Pieces: between consecutive cut points (samples, hour boundaries, a and b) inside [a, b).
    hours = np.arange(math.ceil(a / HOUR) * HOUR, b, HOUR, dtype=np.float64)
    inner = ts[(ts > a) & (ts < b)]
    cuts = np.unique(np.concatenate(([a], inner, hours, [b])))
    p0, p1 = cuts[:-1], cuts[1:]
    k = np.searchsorted(ts, p0, side="right") - 1  # the sample each piece follows
    keep = k >= 0
    p0, p1, k = p0[keep], p1[keep], k[keep]
    # A piece needs the next sample (energy is the counter's increase up to it), except inside its
    # own sample's bin: samples come in STEP_S bins, so a hold settled up to a snapshot at 12.7 s
    # has that snapshot's sample at 12 s, and [12, 12.7) is counted now, by its power, not lost.
    nxt = k + 1 < ts.size
    keep = nxt | (p1 <= ts[k] + STEP_S)
    p0, p1, k, nxt = p0[keep], p1[keep], k[keep], nxt[keep]
    if not k.size:
        return out
    dur = p1 - p0
    k1 = np.minimum(k + 1, ts.size - 1)
    gap = np.where(nxt, ts[k1] - ts[k], 1.0)
    util = share_busy[k]
    e0, e1 = s.energy[k], np.where(nxt, s.energy[k1], math.nan)
    inc = np.where(e1 >= e0, e1 - e0, e1)  # a reset: the new reading is what was used since
    inc = np.where(np.isnan(inc), s.power[k] * gap, inc)
    inc = np.where(np.isnan(inc), 0.0, inc)
    joules = inc * dur / gap
    busy = np.where(np.isnan(util), 0.0, util) * dur
    idle = share_idle[k] * dur  # NaN (no reading) compared False: not idle
    bucket = (np.floor(p0 / HOUR) * HOUR).astype(np.int64)
    keys, inv = np.unique(bucket, return_inverse=True)
    sums = [np.bincount(inv, weights=w * eq, minlength=keys.size) for w in (dur, idle, busy, joules)]
    for i, t in enumerate(keys.tolist()):
        out[t] = [float(x[i]) for x in sums]
    return out


@dataclass(slots=True)
class Hold:
    id: int
    gpu: int
    user: str
    grp: str
    job: str
    eq: float
    start: float
    end: float | None
    settled: float
    mig: str


def settle_node(db: sqlite3.Connection, lock: Lock, query: Query, node: str, horizon: float | None,
                remote: bool = False, now: float | None = None) -> int:
    """Settle `node`'s unsettled holds up to `horizon` (its newest snapshot); returns holds advanced.
    `remote`: the history may lag behind the hub (HISTORY_WAIT_S)."""
    with lock:  # one connection serves the ingest hook, the API and this loop: one user at a time
        holds = [Hold(*r) for r in db.execute("SELECT id, gpu, user, grp, job, eq, start, end, settled, mig FROM holds "
                                              "WHERE node = ? AND (end IS NULL OR settled < end)", (node,))]
    now = time.time() if now is None else now
    todo = []
    for h in holds:
        b = h.end if h.end is not None else horizon
        if b is not None and horizon is not None:
            b = min(b, horizon)
        if b is not None and remote:
            b = min(b, now - HISTORY_DELAY_S)
        if b is not None and b > h.settled:
            todo.append((h, b))
    if not todo:
        return 0
    lo = min(h.settled for h, _ in todo)
    hi = max(b for _, b in todo)
    hour_rows: dict[tuple[int, int], list[float]] = {}
    slices = {h.id: parse_mig(h.mig) for h, _ in todo if h.mig}
    # With a remote history, a hold not older than HISTORY_WAIT_S waits for samples the remote
    # lacks: it is settled only as far as its GPU's newest sample (`reached`), and no further
    # this step (a later window of a gap would skip the gap).
    patient = {h.id for h, b in todo if remote and b >= now - HISTORY_WAIT_S}
    reached: dict[int, float] = {}
    stopped: set[int] = set()
    t = lo
    while t < hi:  # bounded reads: a long backlog (a hub restarted after days) goes in slices
        w_hi = min(hi, t + MAX_WINDOW_S)
        # Read past the slice's end: the piece from its last sample on needs the next one.
        samples = read_node(query, node, t, min(hi, w_hi + LOOKBACK_S), mig=bool(slices))
        for h, b in todo:
            a, e = max(h.settled, t), min(b, w_hi)
            s = samples.get(str(h.gpu))
            if s is None or e <= a or h.id in stopped:
                continue
            if h.id in patient:
                last = float(s.ts[-1]) if s.ts.size else -math.inf
                if last + STEP_S < e:  # the remote has not got this far: up to its newest sample
                    e = last
                    stopped.add(h.id)
                if e <= a:
                    continue
                reached[h.id] = e
            for bucket, fig in integrate(s, a, e, h.eq, slices.get(h.id)).items():
                acc = hour_rows.setdefault((bucket, h.id), [0.0, 0.0, 0.0, 0.0])
                for i in range(4):
                    acc[i] += fig[i]
        t = w_hi
    if patient:
        todo = [(h, reached.get(h.id, h.settled) if h.id in patient else b) for h, b in todo]
        todo = [(h, b) for h, b in todo if b > h.settled]
        if not todo:
            return 0
    by_id = {h.id: h for h, _ in todo}
    totals: dict[int, list[float]] = {}
    day_rows: dict[tuple[int, int], list[float]] = {}
    for (bucket, hid), fig in hour_rows.items():
        for acc in (day_rows.setdefault((bucket - bucket % DAY, hid), [0.0, 0.0, 0.0, 0.0]),
                    totals.setdefault(hid, [0.0, 0.0, 0.0, 0.0])):
            for i in range(4):
                acc[i] += fig[i]

    def rows(figs: dict[tuple[int, int], list[float]]) -> list[tuple[object, ...]]:
        out: list[tuple[object, ...]] = []
        for (bucket, hid), v in figs.items():
            h = by_id[hid]
            out.append((bucket, hid, h.user, h.grp, node, h.job, *v))
        return out

    upsert = ("INSERT INTO {} (t, hold, user, grp, node, job, held, idle, busy, energy) VALUES (?,?,?,?,?,?,?,?,?,?) "
              "ON CONFLICT(t, hold) DO UPDATE SET held = held + excluded.held, idle = idle + excluded.idle, "
              "busy = busy + excluded.busy, energy = energy + excluded.energy")
    marks = [(b, *totals.get(h.id, [0.0, 0.0, 0.0, 0.0]), h.id) for h, b in todo]
    # Each job's running totals (db.job_totals), in the same transaction as its holds'.
    jobs: dict[str, list[Any]] = {}
    for h, b in todo:
        if not h.job:
            continue
        fig = totals.get(h.id, [0.0, 0.0, 0.0, 0.0])
        j = jobs.get(h.job)
        if j is None:
            jobs[h.job] = [h.job, h.user, node, h.start, b, *fig]
        else:
            j[1], j[3], j[4] = min(j[1], h.user), min(j[3], h.start), max(j[4], b)
            for i in range(4):
                j[5 + i] += fig[i]
    with lock:
        db.execute("BEGIN")
        try:
            db.executemany(upsert.format("usage_hour"), rows(hour_rows))
            db.executemany(upsert.format("usage_day"), rows(day_rows))
            db.executemany("UPDATE holds SET settled = ?, held = held + ?, idle = idle + ?, busy = busy + ?, "
                           "energy = energy + ? WHERE id = ?", marks)
            db.executemany(JOB_UPSERT, list(jobs.values()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return len(marks)


# nodes: "a,b", each node once (this step's is one node).
JOB_UPSERT = (
    "INSERT INTO job_totals(job, user, nodes, start, settled, held, idle, busy, energy) VALUES (?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(job) DO UPDATE SET user = MIN(user, excluded.user), start = MIN(start, excluded.start), "
    "settled = MAX(settled, excluded.settled), held = held + excluded.held, idle = idle + excluded.idle, "
    "busy = busy + excluded.busy, energy = energy + excluded.energy, nodes = CASE WHEN "
    "instr(',' || nodes || ',', ',' || excluded.nodes || ',') > 0 THEN nodes ELSE nodes || ',' || excluded.nodes END")


def unsettled_nodes(db: sqlite3.Connection) -> list[str]:
    return [r[0] for r in db.execute("SELECT DISTINCT node FROM holds WHERE end IS NULL OR settled < end")]


def drop_old_hours(db: sqlite3.Connection, lock: Lock, now: float) -> None:
    with lock:
        db.execute("DELETE FROM usage_hour WHERE t < ?", (int(now - HOUR_ROWS_KEEP_S),))


def settle_all(db: sqlite3.Connection, lock: Lock, query: Query, horizon: Callable[[str], float | None],
               budget_s: float | None = None, start_at: int = 0, remote: bool = False,
               now: float | None = None) -> tuple[int, int]:
    """Settle every node with work, from the `start_at`-th; returns (holds advanced, next start).
    `remote`: the history is a remote one that may lag (settle_node)."""
    with lock:
        nodes = unsettled_nodes(db)
    done = 0
    t0 = time.monotonic()
    for i in range(len(nodes)):
        node = nodes[(start_at + i) % len(nodes)]
        done += settle_node(db, lock, query, node, horizon(node), remote, now)
        if budget_s is not None and time.monotonic() - t0 > budget_s:
            return done, start_at + i + 1
    return done, 0
