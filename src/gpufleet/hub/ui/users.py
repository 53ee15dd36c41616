"""Who uses what right now, across the fleet: per-user totals and where their processes run.

Built from each node's latest snapshot: GPU processes (user, container/pod/job, device
memory) and the agent's per-user usage records (CPU, memory, process counts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..fleet import NodeView

UNKNOWN = "?"  # a GPU process whose owner the agent could not read


def _owner_text(owner: Any) -> str:
    if owner is None:
        return ""
    parts = []
    if owner.slurm_job:
        parts.append(f"job {owner.slurm_job}")
    if owner.pod:
        parts.append(f"pod {owner.namespace + '/' if owner.namespace else ''}{owner.pod}")
    elif owner.container:
        parts.append(f"{owner.runtime or 'container'} {owner.container}")
    return ", ".join(parts)


def placements(views: Iterable[NodeView], user: str | None = None, *, commands: bool = True) -> list[dict[str, Any]]:
    """One row per GPU process (of `user`, or everyone's): node, GPU, pid, memory, owner; the
    command line only when `commands` (see hub/cmdlines.py)."""
    rows = []
    for v in views:
        snap = v.snapshot
        if snap is None:
            continue
        for g in snap.gpus:
            for p in g.processes:
                name = p.user or UNKNOWN
                if user is not None and name != user:
                    continue
                rows.append({
                    "user": name, "node": v.name, "gpu": g.index, "pid": p.pid, "memory": p.memory_bytes,
                    "util": g.values.get("utilization_ratio"), "owner": _owner_text(p.owner),
                    "command": p.command[:200] if commands else "", "model": g.model, "mig": p.gpu_instance,
                })
    return rows


def users_table(views: Iterable[NodeView]) -> list[dict[str, Any]]:
    """Per user: GPUs in use, their device memory and mean utilisation, nodes, CPU and memory."""
    acc: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        r = acc.get(name)
        if r is None:
            r = acc[name] = {"user": name, "gpus": set(), "gpu_memory": 0, "nodes": set(), "processes": 0,
                             "cpu": 0.0, "memory": 0, "util_sum": 0.0, "logins": 0}
        return r

    for v in views:
        snap = v.snapshot
        if snap is None or v.status in ("down", "moved"):
            continue
        for g in snap.gpus:
            for p in g.processes:
                r = row(p.user or UNKNOWN)
                key = (v.name, g.index)
                if key not in r["gpus"]:
                    r["gpus"].add(key)
                    r["util_sum"] += g.values.get("utilization_ratio", 0.0)
                r["gpu_memory"] += p.memory_bytes or 0
                r["nodes"].add(v.name)
        for u in snap.usage:
            r = row(u.user)
            r["processes"] += int(u.values.get("processes", 0))
            r["cpu"] += u.values.get("cpu_utilization_ratio", 0.0)
            r["memory"] += int(u.values.get("memory_used_bytes", 0))
            r["nodes"].add(v.name)
        for login in snap.users:
            row(login.name)["logins"] += 1
    out = []
    for r in acc.values():
        n = len(r["gpus"])
        out.append({"user": r["user"], "gpus": n, "gpu_memory": r["gpu_memory"],
                    "util": round(r["util_sum"] / n, 4) if n else None, "nodes": sorted(r["nodes"]),
                    "processes": r["processes"], "cpu": round(r["cpu"], 3), "memory": r["memory"],
                    "logins": r["logins"]})
    out.sort(key=lambda r: (-r["gpus"], -r["gpu_memory"], r["user"]))
    return out
