"""A 30-day accounting report for 1,000 nodes x 8 GPUs, beside the naive way (from the store).

Goal: <= 2 s per report (`gpufleet report --since 30d --by user|group|job|node`); by job the
answer has one row per job (~380,000 here, every hold a one-GPU job), and also by job for one
user (`--user`). The figure is the answer (`report()`: the rows as columns, sorted, what the API
writes); writing it as JSON or CSV is timed apart and printed beside it.

Ours: the settled figures (hub/usage): usage.db filled as the hub's settle step leaves it
after 30 days of a busy fleet (jobs of 1-24 h on every GPU, gaps of 0-6 h, 200 users in 20
groups): holds with their running totals, job_totals, hour rows (35 days) and day rows, read
by `usage()` for since = now - 30 d (not on a day boundary, so both ends take the hour-row path).

Peer, the naive way: no settled figures; at report time, read every GPU's utilisation,
energy counter and power for 30 days at one-minute resolution from the embedded store
(TimeSeriesStore.query_range) and integrate them over each hold. Timed on --naive-nodes
nodes of real store data (30 days at 1 min) and scaled to the fleet (it is linear in nodes).

    .venv/bin/python benchmarks/bench_report.py [--nodes 1000] [--naive-nodes 2]

Figures are CPU seconds of this process (wall time beside): on a shared, loaded machine the
wall clock measures the neighbours as much as the report.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine_line, verdict

from gpufleet.hub.usage.db import DAY, HOUR, SCHEMA, add_job_totals
from gpufleet.hub.usage.answer import Answer
from gpufleet.hub.usage.api import json_body
from gpufleet.hub.usage.report import report, usage
from gpufleet.hub.usage.settle import ENERGY, POWER, UTIL, Samples, integrate
from gpufleet.store import Matcher, StoreOptions, TimeSeriesStore

GOAL_S = 2.0
GPUS = 8
USERS = 200


def schedule(rng: np.random.Generator, start: float, end: float) -> list[tuple[float, float, float, float]]:
    """One GPU's holds: (start, end, utilisation, watts)."""
    out = []
    t = start + rng.uniform(0, 6 * HOUR)
    while t < end:
        d = rng.uniform(1, 24) * HOUR
        util = float(rng.choice([0.0, 0.02, 0.3, 0.6, 0.9, 0.97]))
        out.append((t, min(t + d, end), util, 80 + 600 * util))
        t += d + rng.uniform(0, 6) * HOUR
    return out


def _buckets(width: int, hid: np.ndarray, a: np.ndarray, b: np.ndarray, util: np.ndarray,
             watts: np.ndarray) -> tuple[np.ndarray, ...]:
    """The rows settle() writes for these holds: per bucket, GPU-seconds held/idle/busy and joules."""
    first = np.floor(a / width).astype(np.int64)
    last = np.floor((b - 1e-6) / width).astype(np.int64)
    counts = last - first + 1
    rep = np.repeat(np.arange(hid.size), counts)
    within = np.arange(rep.size) - np.repeat(np.cumsum(counts) - counts, counts)
    t = (first[rep] + within) * width
    held = np.minimum(b[rep], t + width) - np.maximum(a[rep], t)
    return rep, t, held, np.where(util[rep] < 0.05, held, 0.0), held * util[rep], held * watts[rep]


def build_db(path: Path, nodes: int, now: float, rng: np.random.Generator) -> tuple[sqlite3.Connection, dict]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    start = now - 31 * DAY
    holds = []
    per_node: dict[str, list[tuple[int, int, float, float, float, float]]] = {}
    hid = 0
    for n in range(nodes):
        node = f"node-{n:04d}"
        for g in range(GPUS):
            for a, b, util, watts in schedule(rng, start, now):
                hid += 1
                user = int(rng.integers(USERS))
                held = b - a
                holds.append((hid, node, g, f"GPU-{n}-{g}", f"user{user:03d}", f"group{user % 20:02d}",
                              f"slurm:{hid}", str(hid), "", "", 1.0, a, b, b, held,
                              held if util < 0.05 else 0.0, held * util, held * watts))
                per_node.setdefault(node, []).append((hid, g, a, b, util, watts))
    cols = list(zip(*holds))
    ids, nodes_a, users, groups, jobs = (np.array(cols[i], dtype=object) for i in (0, 1, 4, 5, 6))
    a, b = np.array(cols[11], dtype=np.float64), np.array(cols[12], dtype=np.float64)
    util = np.array([x[16] / x[14] for x in holds])
    watts = np.array([x[17] / x[14] for x in holds])
    db.execute("BEGIN")
    db.executemany("INSERT INTO holds(id, node, gpu, uuid, user, grp, job, slurm_job, pod, container, eq, start, "
                   "end, settled, held, idle, busy, energy) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", holds)
    counts = {"usage_hour": 0, "usage_day": 0}
    hids = np.array(cols[0])
    for lo in range(0, len(holds), 20_000):  # in slices: a million-row list at once would take gigabytes
        sl = slice(lo, lo + 20_000)
        for table, width in (("usage_hour", HOUR), ("usage_day", DAY)):
            rep, t, held, idle, busy, joules = _buckets(width, hids[sl], a[sl], b[sl], util[sl], watts[sl])
            rep = rep + lo
            counts[table] += rep.size
            db.executemany(f"INSERT INTO {table} VALUES (?,?,?,?,?,?,?,?,?,?)",
                           zip(t.tolist(), ids[rep].tolist(), users[rep].tolist(), groups[rep].tolist(),
                               nodes_a[rep].tolist(), jobs[rep].tolist(), held.tolist(), idle.tolist(),
                               busy.tolist(), joules.tolist()))
    db.execute("COMMIT")
    add_job_totals(db)  # as settle leaves it: one row per job
    print(f"usage.db: {len(holds):,} holds, {counts['usage_hour']:,} hour rows, {counts['usage_day']:,} day rows, "
          f"{path.stat().st_size / 2**20:.0f} MiB")
    return db, per_node


def build_store(path: Path, per_node: dict, names: list[str], now: float) -> TimeSeriesStore:
    """30 days at one minute for `names`: the samples the holds above imply (counter = integral of power)."""
    opts = StoreOptions()
    store = TimeSeriesStore(str(path), opts)
    ts = np.arange(math.floor((now - 31 * DAY) / 60) * 60, now, 60.0)
    for node in names:
        util = np.zeros((ts.size, GPUS))
        power = np.full((ts.size, GPUS), 60.0)
        for _, g, a, b, u, w in per_node[node]:
            sel = (ts >= a) & (ts < b)
            util[sel, g], power[sel, g] = u, w
        energy = np.cumsum(power * 60.0, axis=0)
        keys, cols = [], []
        for metric, arr in ((UTIL, util), (ENERGY, energy), (POWER, power)):
            for g in range(GPUS):
                keys.append((metric, (("gpu", str(g)), ("node", node))))
                cols.append(arr[:, g])
        rows = np.stack(cols, axis=1)
        for i in range(0, ts.size, 7 * 1440):
            store.append_rows(node, ts[i:i + 7 * 1440], keys, rows[i:i + 7 * 1440])
            store.maintain(now=float(ts[min(i + 7 * 1440, ts.size) - 1]), full=True)
    store.maintain(now=now, full=True)
    return store


def naive(store: TimeSeriesStore, per_node: dict, names: list[str], since: float, until: float) -> dict[str, float]:
    """GPU-hours in use per user the naive way: read each node's series, integrate over every hold."""
    acc: dict[str, float] = {}
    for node in names:
        got: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for key, metric, agg in (("util", UTIL, "avg"), ("energy", ENERGY, "last"), ("power", POWER, "avg")):
            for labels, t, v in store.query_range(metric, [Matcher("node", "=", node)], since - 60, until, 60.0, agg):
                got.setdefault(labels["gpu"], {})[key] = (t, np.asarray(v, dtype=np.float64))
        for hid, g, a, b, _u, _w in per_node[node]:
            c = got.get(str(g))
            if c is None or b <= since or a >= until:
                continue
            s = Samples(c["util"][0], c["util"][1], c["energy"][1], c["power"][1])
            fig = integrate(s, max(a, since), min(b, until), 1.0)
            acc[str(hid)] = sum(f[0] for f in fig.values()) / HOUR
    return acc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--naive-nodes", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(machine_line())
    rng = np.random.default_rng(12)
    now = math.floor(time.time() / 60) * 60
    since = now - 30 * DAY
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        t0 = time.perf_counter()
        db, per_node = build_db(tmp / "usage.db", args.nodes, now, rng)
        print(f"built in {time.perf_counter() - t0:.0f} s")
        ours: dict[str, float] = {}  # CPU seconds: on a shared machine wall time measures the neighbours
        ours_wall: dict[str, float] = {}
        one = f"user{0:03d}"  # one user's report by job (the API's ?user=, a person's own view)
        for name, by, user in (("user", "user", None), ("group", "group", None), ("job", "job", None),
                               ("node", "node", None), (f"job --user {one}", "job", one)):
            times, cpu, enc = [], [], {"json": [], "csv": []}
            answer = Answer(by)
            for _ in range(args.rounds):
                answer = Answer(by)  # freeing the last round's answer is not part of this one's time
                t, c = time.perf_counter(), time.process_time()
                answer = report(db, since, now, by, now=now, user=user)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
                # What GET /api/v1/usage then writes (JSON, or CSV with format=csv), timed apart.
                for fmt, write in (("json", lambda: json_body(answer, since, now, None, None)), ("csv", answer.csv)):
                    c = time.process_time()
                    write()
                    enc[fmt].append(time.process_time() - c)
            ours[name] = statistics.median(cpu)
            ours_wall[name] = statistics.median(times)
            total = sum(answer.figures["gpu_hours_in_use"])
            print(f"ours  --by {name:<5}  {ours_wall[name]:6.2f} s wall, {ours[name]:5.2f} s CPU  "
                  f"({len(answer):,} rows, {total:,.0f} GPU-hours); written as JSON +{statistics.median(enc['json']):.2f} s, "
                  f"as CSV +{statistics.median(enc['csv']):.2f} s CPU")
            answer = Answer(by)
        names = sorted(per_node)[: args.naive_nodes]
        t = time.perf_counter()
        store = build_store(tmp / "tsdb", per_node, names, now)
        print(f"store: {len(names)} nodes x 30 days at 1 min built in {time.perf_counter() - t:.0f} s")
        t, c = time.perf_counter(), time.process_time()
        got = naive(store, per_node, names, since, now)
        naive_wall = (time.perf_counter() - t) * args.nodes / len(names)
        naive_s = (time.process_time() - c) * args.nodes / len(names)
        store.close()
        # the naive way and ours agree on these nodes (GPU-hours in use per hold, to the minute)
        # (holds well inside the period: at its start the store's 1-minute rollups end by retention,
        # and its newest minutes are not in a rollup yet)
        inside = {str(h[0]) for n in names for h in per_node[n] if h[2] > since + HOUR and h[3] < now - HOUR}
        mine = {r["job"].split(":")[1]: r["gpu_hours_in_use"] for r in usage(db, since, now, "job", now=now)
                if r["nodes"][0] in names}
        worst = max(abs(mine.get(k, 0.0) - v) for k, v in got.items() if k in inside) if got else 0.0
        print(f"naive (store, 1-minute samples): {naive_wall:6.1f} s wall, {naive_s:6.1f} s CPU for {args.nodes} nodes "
              f"(measured on {len(names)}, scaled); agrees with ours to {worst * 60:.2f} GPU-minutes per job")
        for by in ours:
            if "--user" in by:  # the naive way for one user reads the nodes they ran on: not measured
                continue
            print(f"ratio naive / ours --by {by:<5}: {naive_s / ours[by]:6.0f}x CPU, "
                  f"{naive_wall / ours_wall[by]:5.0f}x wall")
        worst_by = max(ours, key=lambda b: ours[b])
        verdict(f"30-day report, {args.nodes} nodes x {GPUS} GPUs, <= {GOAL_S:g} s CPU", ours[worst_by] <= GOAL_S,
                f"slowest --by {worst_by} {ours[worst_by]:.2f} s CPU ({ours_wall[worst_by]:.2f} s wall); "
                f"naive {naive_s:.0f} s CPU")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
