"""Who holds each GPU and MIG slice, and the node's free / held capacity.

Runs after `accelerators` (GPUs joined with their processes' users, containers, pods and
Slurm jobs) and `usage` (per-user totals it adds to). The work is allocation/derive.py:
pure, one pass over the GPUs' processes, no I/O of its own.

Options (agent config): `allocation.idle_below`, the busy share under which a held slot
counts as idle (default 0.05).
"""

from __future__ import annotations

from ..allocation import derive
from ..snapshot import NodeSnapshot
from .base import CollectContext


class AllocationCollector:
    name = "allocation"

    def __init__(self, ctx: CollectContext) -> None:
        idle = ctx.options.get("allocation.idle_below", derive.IDLE_BELOW)
        self._idle_below = float(idle) if isinstance(idle, (int, float)) else derive.IDLE_BELOW

    def collect(self, snap: NodeSnapshot) -> None:
        derive.apply(snap, idle_below=self._idle_below)
