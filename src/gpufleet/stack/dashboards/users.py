"""Per-user usage: GPU memory, GPUs, CPU and memory each user's processes hold, where, and GPU-hours."""

from __future__ import annotations

from .kit import Board, Panel, Query, Variable, metric, metric_panel, remaining, sel, unit_of

UID = "gpufleet-users"
U = {"user": "~$user", "node": "~$node"}


def build() -> Board:
    gmem, gpus, procs = metric("user", "gpu_memory_used_bytes"), metric("user", "gpus_in_use"), \
        metric("user", "processes")
    cpu, mem = metric("user", "cpu_utilization_ratio"), metric("user", "memory_used_bytes")
    pmem = metric("gpu_process", "memory_used_bytes")
    b = Board(UID, "gpufleet / Users", "What each user's processes use across the fleet.",
              variables=(Variable("user", "User", f"label_values({procs.name}, user)", multi=True),
                         Variable("node", "Node", f"label_values({procs.name}{{user=~\"$user\"}}, node)",
                                  multi=True)))
    b.row("In range", [
        Panel("GPU-hours in range", (Query(
            f"sum by (user) (avg_over_time({sel(gpus, **U)}[$__range])) * $__range_s / 3600", "{{user}}"),),
            "short", "stat", width=12,
            description=f"Mean GPUs in use over the time range times its length ({gpus.name})."),
        Panel("Peak GPU memory in range", (Query(f"max by (user) (max_over_time({sel(gmem, **U)}[$__range]))",
                                                 "{{user}}"),), "bytes", "stat", width=12),
    ])
    b.row("By user", [
        Panel("GPU memory", (Query(f"sum by (user) ({sel(gmem, **U)})", "{{user}}"),), unit_of(gmem),
              description=gmem.help),
        Panel("GPUs in use", (Query(f"sum by (user) ({sel(gpus, **U)})", "{{user}}"),), description=gpus.help),
        Panel("CPU cores", (Query(f"sum by (user) ({sel(cpu, **U)})", "{{user}}"),), description=cpu.help),
        Panel("Memory", (Query(f"sum by (user) ({sel(mem, **U)})", "{{user}}"),), unit_of(mem), description=mem.help),
        Panel("Processes", (Query(f"sum by (user) ({sel(procs, **U)})", "{{user}}"),), description=procs.help),
        Panel("GPU memory by user and node", (Query(f"sum by (user, node) ({sel(gmem, **U)})", "{{user}} on {{node}}"),),
              unit_of(gmem)),
    ])
    b.row("Processes on accelerators", [Panel(
        "Processes", (Query(sel(pmem, **U), instant=True, table=True),), "bytes", "table", width=24,
        description=pmem.help)])
    b.uses(gmem, gpus, procs, cpu, mem)
    # What users hold through the allocation sources (Slurm, Kubernetes, a state file), in use or idle.
    alloc = [m for m in remaining("user", b.used) if m.key.startswith(("gpus_allocated", "gpu_equivalents", "held_"))]
    b.row("Allocations", [
        Panel(m.help.split(" (")[0].rstrip("."), (Query(f"sum by (user) ({sel(m, **U)})", "{{user}}"),),
              unit_of(m), description=f"{m.name}: {m.help}", width=6) for m in alloc])
    b.uses(*alloc)
    b.row("More per-user metrics", [metric_panel(m, U) for m in remaining("user", b.used)])
    return b
