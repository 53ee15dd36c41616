"""Per-user totals: host processes, CPU, memory, and accelerator memory and devices."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..snapshot import NodeSnapshot, UserUsage
from .base import CollectContext

# GPU processes whose user nobody could tell (pid outside our namespace, backend silent).
UNKNOWN_USER = "unknown"


@dataclass(slots=True)
class _Totals:
    processes: int = 0
    cpu: float = 0.0
    memory: int = 0
    gpu_memory: int = 0
    gpus: set[int] = field(default_factory=set)


def user_usage(snap: NodeSnapshot) -> list[UserUsage]:
    totals: dict[str, _Totals] = {}
    host_pids: set[int] = set()
    for p in snap.processes:
        host_pids.add(p.pid)
        if not p.user:
            continue
        t = totals.get(p.user)
        if t is None:
            t = totals[p.user] = _Totals()
        t.processes += 1
        t.cpu += p.cpu_ratio
        t.memory += p.memory_bytes
    counted_gpu_only: set[int] = set()
    for gpu in snap.gpus:
        for gp in gpu.processes:
            user = gp.user or UNKNOWN_USER
            t = totals.get(user)
            if t is None:
                t = totals[user] = _Totals()
            if gp.memory_bytes:
                t.gpu_memory += gp.memory_bytes
            t.gpus.add(gpu.index)
            # A process the host table lacks (simulated, other namespace) still counts once.
            if gp.pid not in host_pids and gp.pid not in counted_gpu_only:
                counted_gpu_only.add(gp.pid)
                t.processes += 1
    return [
        UserUsage(user=user, values={
            "gpu_memory_used_bytes": float(t.gpu_memory),
            "gpus_in_use": float(len(t.gpus)),
            "processes": float(t.processes),
            "cpu_utilization_ratio": t.cpu,
            "memory_used_bytes": float(t.memory),
        })
        for user, t in sorted(totals.items())
    ]


class UsageCollector:
    name = "usage"

    def __init__(self, ctx: CollectContext) -> None:
        pass  # everything it needs is in the snapshot the earlier collectors filled

    def collect(self, snap: NodeSnapshot) -> None:
        snap.usage = user_usage(snap)
