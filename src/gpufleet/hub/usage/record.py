"""The occupancy record: who held which GPU when, written only when it changes.

`observe(snapshot)` is the hub's ingest hook (Hub.observers): it builds each GPU's holders
(holders.py) and compares them with the node's last; when equal (nearly always) that is all
it does. A change closes the holds that ended and opens the new ones at the snapshot's time,
with their events, in one SQLite transaction. A failed write changes nothing in memory, so
the next snapshot tries again. A node silent for longer than `gap_s` has its holds closed
at its last snapshot (`close_silent`, from the settle loop), so a dead node holds nothing.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping

from ...snapshot import NodeSnapshot
from .holders import Holder, Sig, fingerprint, node_holders

log = logging.getLogger("gpufleet.hub.usage")

Op = tuple[str, float, int, Holder, "int | None"]  # ("open" | "close", time, GPU, holder, hold id)
DAY_S = 86400.0


class OccupancyRecord:
    def __init__(self, db: sqlite3.Connection, gap_s: float, last_seen: Mapping[str, float] | None = None,
                 clock: Callable[[], float] = time.time,
                 heard: Callable[[str], float | None] = lambda node: None) -> None:
        self.db = db
        self.gap_s = gap_s
        self.clock = clock
        self.heard = heard  # hub clock of a node's last push (Fleet), None when unknown
        self.lock = threading.Lock()  # the connection and the maps below change together
        self._sig: dict[str, Sig] = {}
        self._fp: dict[str, tuple[object, ...]] = {}  # node -> fingerprint of its last snapshot
        self._open: dict[tuple[str, int], dict[Holder, int]] = {}  # (node, gpu) -> holder -> hold id
        self._last: dict[str, float] = {}  # node -> newest snapshot time observed
        self._jobs: Counter[str] = Counter()  # job key -> holds open
        self._events: deque[tuple[float, str]] = deque()  # (time, kind) of the last 24 h
        self.errors = 0
        self._load(last_seen or {})

    def _load(self, last_seen: Mapping[str, float]) -> None:
        rows = self.db.execute(
            "SELECT id, node, gpu, user, grp, job, slurm_job, pod, container, eq, mig, start, settled "
            "FROM holds WHERE end IS NULL ORDER BY node, gpu").fetchall()
        per_node: dict[str, dict[int, list[Holder]]] = {}
        for hid, node, gpu, *fields, start, settled in rows:
            h = Holder(*fields)
            self._open.setdefault((node, gpu), {})[h] = hid
            per_node.setdefault(node, {}).setdefault(gpu, []).append(h)
            self._jobs[h.job] += 1 if h.job else 0
            self._last[node] = max(self._last.get(node, 0.0), start, settled, last_seen.get(node, 0.0))
        for node, gpus in per_node.items():
            self._sig[node] = tuple((i, tuple(sorted(hs))) for i, hs in sorted(gpus.items()))
        since = self.clock() - DAY_S
        self._events.extend(self.db.execute("SELECT t, kind FROM events WHERE t >= ? ORDER BY t", (since,)))

    # ---- the ingest hook ------------------------------------------------------------------------

    def observe(self, snap: NodeSnapshot) -> None:
        """Called for every stored snapshot, oldest first per node. Never raises."""
        node, ts = snap.node, snap.timestamp
        last = self._last.get(node)
        fp = fingerprint(snap)
        if last is not None and ts - last <= self.gap_s and fp == self._fp.get(node):
            if ts > last:
                self._last[node] = ts
            return
        sig = node_holders(snap)
        if last is not None and sig == self._sig.get(node) and ts - last <= self.gap_s:
            self._fp[node] = fp
            if ts > last:
                self._last[node] = ts
            return
        uuids = {g.index: g.uuid for g in snap.gpus}
        try:
            with self.lock:
                self._change(node, ts, sig, uuids, fp)
        except sqlite3.Error as e:
            self.errors += 1
            log.error("could not record the GPU holders of node %s (retried at its next snapshot): %s", node, e)

    def _change(self, node: str, ts: float, sig: Sig, uuids: dict[int, str], fp: tuple[object, ...]) -> None:
        last = self._last.get(node)
        if last is not None and ts <= last:
            return  # an older snapshot (a race between two pushes of one node): already past it
        prev = dict(self._sig.get(node, ()))
        ops: list[Op] = []
        if last is not None and ts - last > self.gap_s and prev:
            # Silent too long: what it held ended at its last snapshot, whatever it reports now.
            ops += [("close", last, gpu, h, hid) for (n, gpu), held in self._open.items() if n == node
                    for h, hid in held.items()]
            prev = {}
        cur = dict(sig)
        for gpu in sorted(prev.keys() | cur.keys()):
            before, after = set(prev.get(gpu, ())), set(cur.get(gpu, ()))
            held = self._open.get((node, gpu), {})
            ops += [("close", ts, gpu, h, held.get(h)) for h in sorted(before - after)]
            ops += [("open", ts, gpu, h, None) for h in sorted(after - before)]
        self._apply(node, ops, uuids)
        self._sig[node] = sig
        self._fp[node] = fp
        self._last[node] = ts

    def _apply(self, node: str, ops: list[Op], uuids: dict[int, str]) -> None:
        """Write the opens and closes with their events in one transaction, then mirror them in memory."""
        # Holds open per job after these ops, for the jobs they touch (0: none left); the fleet's
        # counts change only once the write is done (copying them all made each change O(jobs)).
        jobs: dict[str, int] = {}
        open_now = self._jobs
        events: list[tuple[float, str, str, int, str, str]] = []
        opened: list[tuple[int, Holder, int]] = []
        closed: list[tuple[int, Holder]] = []
        db = self.db
        db.execute("BEGIN")
        try:
            for kind, t, gpu, h, hid in ops:
                if kind == "close":
                    if hid is not None:
                        db.execute("UPDATE holds SET end = ? WHERE id = ?", (t, hid))
                    closed.append((gpu, h))
                    events.append((t, "gpu_released", node, gpu, h.user, h.job))
                    if h.job:
                        n = (jobs[h.job] if h.job in jobs else open_now.get(h.job, 0)) - 1
                        jobs[h.job] = max(n, 0)
                        if n <= 0:
                            events.append((t, "job_ended", node, gpu, h.user, h.job))
                else:
                    cur = db.execute(
                        "INSERT INTO holds(node, gpu, uuid, user, grp, job, slurm_job, pod, container, eq, mig, "
                        "start, settled) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (node, gpu, uuids.get(gpu, ""), *h, t, t))
                    assert cur.lastrowid is not None
                    opened.append((gpu, h, cur.lastrowid))
                    events.append((t, "gpu_taken", node, gpu, h.user, h.job))
                    if h.job:
                        n = jobs[h.job] if h.job in jobs else open_now.get(h.job, 0)
                        if not n:
                            events.append((t, "job_started", node, gpu, h.user, h.job))
                        jobs[h.job] = n + 1
            db.executemany("INSERT INTO events(t, kind, node, gpu, user, job) VALUES (?,?,?,?,?,?)", events)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for gpu, h in closed:
            held = self._open.get((node, gpu))
            if held is not None:
                held.pop(h, None)
                if not held:
                    del self._open[(node, gpu)]
        for gpu, h, hid in opened:
            self._open.setdefault((node, gpu), {})[h] = hid
        for job, n in jobs.items():
            if n > 0:
                open_now[job] = n
            else:
                open_now.pop(job, None)
        self._events.extend((e[0], e[1]) for e in events)

    # ---- upkeep (settle loop) -----------------------------------------------------------------------

    def _silent(self, node: str, now: float) -> bool:
        # By when the hub last heard from it, not by the age of its data: a node sending its
        # spool after an outage sends old snapshots, and is not silent.
        heard = self.heard(node)
        return now - (heard if heard is not None else self._last.get(node, now)) > self.gap_s

    def close_silent(self, now: float) -> list[str]:
        """Close the holds of nodes silent for longer than gap_s at their last snapshot; their names."""
        quiet = [n for n in list(self._last) if self._sig.get(n) and self._silent(n, now)]
        done = []
        for node in quiet:
            try:
                with self.lock:
                    last = self._last[node]
                    if not self._silent(node, now):
                        continue
                    ops: list[Op] = [("close", last, gpu, h, hid)
                                     for (n, gpu), held in list(self._open.items()) if n == node
                                     for h, hid in held.items()]
                    self._apply(node, ops, {})
                    self._sig[node] = ()
                    self._fp.pop(node, None)
                done.append(node)
            except sqlite3.Error as e:
                self.errors += 1
                log.error("could not close the holds of silent node %s (retried): %s", node, e)
        return done

    def horizon(self, node: str) -> float | None:
        """The newest snapshot time of `node` seen by this hub since it started (None: none)."""
        return self._last.get(node)

    def counts_24h(self, now: float) -> dict[str, int]:
        since = now - DAY_S
        while self._events and self._events[0][0] < since:
            self._events.popleft()  # mostly in time order; a late (backfilled) event is filtered below
        out = Counter(kind for t, kind in tuple(self._events) if t >= since)
        return {k: out.get(k, 0) for k in ("gpu_taken", "gpu_released", "job_started", "job_ended")}
