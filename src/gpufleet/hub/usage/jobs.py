"""Jobs (a Slurm job, a pod, a container) from the occupancy record: every node and GPU they
held, when, with their figures over the job's whole life, and a plain verdict."""

from __future__ import annotations

import sqlite3
from typing import Any

from .holders import parse_mig
from .report import Prices, figures
from .settle import IDLE_RATIO

KINDS = {"slurm": "Slurm job", "pod": "pod", "container": "container"}


def describe_key(key: str) -> tuple[str, str]:
    kind, _, ident = key.partition(":")
    return kind, ident


def verdict(gpus: list[dict[str, Any]]) -> str:
    """'4 GPUs held, 1 used: ask for 1' — GPUs count as used at IDLE_RATIO mean utilisation or more."""
    held = len(gpus)
    if not held:
        return "no GPUs held"
    used = sum(1 for g in gpus if g["mean_utilization"] >= IDLE_RATIO)
    noun = "GPU" if held == 1 else "GPUs"
    settled = sum(g["gpu_hours_in_use"] for g in gpus)
    if settled <= 0:
        return f"{held} {noun} held, too recent to judge"
    mean = sum(g["gpu_hours_busy"] for g in gpus) / settled
    if used == held:
        return f"{held} {noun} held, {'it' if held == 1 else 'all'} used: mean utilisation {mean:.0%}"
    if used == 0:
        return f"{held} {noun} held, none used: the job did not use {'its GPU' if held == 1 else 'its GPUs'}"
    return f"{held} {noun} held, {used} used: ask for {used}"


_LIST = (
    "SELECT h.job, MIN(h.user), MIN(h.grp), group_concat(DISTINCT h.node), COUNT(DISTINCT h.node || ':' || h.gpu), "
    "MIN(h.start), MAX(COALESCE(h.end, h.settled)), SUM(h.end IS NULL), MIN(h.slurm_job), MIN(h.pod), "
    "MIN(h.container), SUM(h.held), SUM(h.idle), SUM(h.busy), SUM(h.energy) FROM holds h WHERE h.job != '' AND (h.end IS NULL OR h.end >= ?){extra} "
    "GROUP BY h.job {having} ORDER BY MIN(h.start) DESC LIMIT ?")


def jobs(db: sqlite3.Connection, *, since: float, user: str | None = None, running: bool = False,
         limit: int = 500, prices: Prices = Prices()) -> list[dict[str, Any]]:
    extra, args = "", [since]
    if user is not None:
        extra, args = " AND h.user = ?", [since, user]  # type: ignore[list-item]
    having = "HAVING SUM(h.end IS NULL) > 0" if running else ""
    rows = db.execute(_LIST.format(extra=extra, having=having), [*args, limit]).fetchall()
    if not rows:
        return []
    out = []
    for job, usr, grp, nodes, ngpus, start, end, open_, slurm, pod, container, *sums in rows:
        kind, ident = describe_key(job)
        out.append({"job": job, "kind": kind, "id": ident, "user": usr, "group": grp,
                    "nodes": sorted((nodes or "").split(",")), "gpus": ngpus, "start": start,
                    "end": None if open_ else end, "running": bool(open_),
                    "slurm_job": slurm, "pod": pod, "container": container,
                    **figures(sums, prices)})
    return out


def job(db: sqlite3.Connection, key: str, *, prices: Prices = Prices()) -> dict[str, Any] | None:
    holds = db.execute("SELECT id, node, gpu, uuid, user, grp, slurm_job, pod, container, start, end, settled, "
                       "held, idle, busy, energy, mig FROM holds WHERE job = ? ORDER BY node, gpu, start",
                       (key,)).fetchall()
    if not holds:
        return None
    sums = {h[0]: h[12:16] for h in holds}
    per_gpu: dict[tuple[str, int], dict[str, Any]] = {}
    total = [0.0, 0.0, 0.0, 0.0]
    for hid, node, gpu, uuid, user, grp, slurm, pod, container, start, end, settled, *_, mig in holds:
        # `slices`: the MIG GPU instances held on this GPU over the job's life ([]: the whole GPU)
        g = per_gpu.setdefault((node, gpu), {"node": node, "gpu": gpu, "uuid": uuid, "start": start, "end": end,
                                             "running": end is None, "slices": [], "sums": [0.0, 0.0, 0.0, 0.0]})
        g["slices"] = sorted({*g["slices"], *(int(gi) for gi in parse_mig(mig))})
        g["start"] = min(g["start"], start)
        g["running"] = g["running"] or end is None
        g["end"] = None if g["running"] else max(g["end"] or 0.0, end)
        for i, v in enumerate(sums.get(hid, [0.0, 0.0, 0.0, 0.0])):
            g["sums"][i] += v
            total[i] += v
    gpus = []
    for g in per_gpu.values():
        s = g.pop("sums")
        gpus.append({**g, **figures(s, prices)})
    first = holds[0]
    kind, ident = describe_key(key)
    running = any(h[10] is None for h in holds)
    return {
        "job": key, "kind": kind, "id": ident, "user": first[4], "group": first[5],
        "slurm_job": first[6], "pod": first[7], "container": first[8],
        "start": min(h[9] for h in holds), "end": None if running else max(h[10] for h in holds),
        "running": running, "nodes": sorted({h[1] for h in holds}), "gpus": gpus,
        **figures(total, prices), "verdict": verdict(gpus),
    }
