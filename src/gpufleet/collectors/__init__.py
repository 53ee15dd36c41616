"""The collector table: one collector per file, run in this order.

Order matters only where a collector reads what an earlier one wrote: `accelerators`
joins GPU processes with the table `processes` (or `simhost`) built, `usage` sums both
per user, and `allocation` says who holds each GPU and adds that to the per-user totals.
The name is what `--collectors` lists.
"""

from __future__ import annotations

from .base import CollectContext, Collector, Factory


def _table() -> dict[str, Factory]:
    # Imported here so a collector whose library is missing fails alone, at build time.
    from . import accelerators, allocation, cpu, disks, memory, network, processes, simhost, system, usage, users

    return {
        "system": system.SystemCollector,
        "cpu": cpu.CpuCollector,
        "memory": memory.MemoryCollector,
        "disks": disks.DiskCollector,
        "network": network.NetworkCollector,
        "users": users.UsersCollector,
        "processes": processes.ProcessCollector,
        # In place of the host collectors above, so before what reads the process table.
        "simhost": simhost.SimHostCollector,
        "accelerators": accelerators.AcceleratorCollector,
        "usage": usage.UsageCollector,
        "allocation": allocation.AllocationCollector,
    }


# Not run unless asked for: stands in for the real host collectors on simulated nodes.
OFF_BY_DEFAULT = frozenset({"simhost"})
SIMULATED_NODE = ["simhost", "accelerators", "usage", "allocation"]


def collector_names() -> list[str]:
    return list(_table())


def build(ctx: CollectContext, enabled: list[str] | None = None) -> list[Collector]:
    table = _table()
    names = enabled if enabled is not None else [n for n in table if n not in OFF_BY_DEFAULT]
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown collector {unknown[0]!r}; known: {', '.join(table)}")
    return [table[n](ctx) for n in table if n in names]


__all__ = ["CollectContext", "Collector", "build", "collector_names"]
