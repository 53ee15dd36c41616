"""Fleet overview: how many agents and accelerators answer, how busy and hot they are, and who uses them."""

from __future__ import annotations

from .kit import Board, Panel, Query, metric, sel

UID = "gpufleet-fleet"
AGENTS_UP = 'up{node!=""}'  # http_sd gives every agent target a node label; the hub's own job has none


def build() -> Board:
    up, util = metric("gpu", "up"), metric("gpu", "utilization_ratio")
    used, total = metric("gpu", "memory_used_bytes"), metric("gpu", "memory_total_bytes")
    power, temp, energy = metric("gpu", "power_watts"), metric("gpu", "temperature_celsius"), \
        metric("gpu", "energy_joules_total")
    umem, ugpus = metric("user", "gpu_memory_used_bytes"), metric("user", "gpus_in_use")
    info = metric("node", "info")
    b = Board(UID, "gpufleet / Fleet overview", "Every node and accelerator gpufleet watches.")
    b.row("Now", [
        Panel("Agents up", (Query(f"sum({AGENTS_UP})"),), kind="stat", width=3,
              description="Agent targets Prometheus scraped successfully (up == 1)."),
        Panel("Agents down", (Query(f"count({AGENTS_UP} == 0) or vector(0)"),), kind="stat", width=3),
        Panel("Accelerators", (Query(f"count({up.name})"),), kind="stat", width=3),
        Panel("Accelerators lost", (Query(f"count({up.name} == 0) or vector(0)"),), kind="stat", width=3),
        Panel("Mean utilization", (Query(f"avg({util.name})"),), "percentunit", "stat", width=3),
        Panel("Memory in use", (Query(f"sum({used.name}) / sum({total.name})"),), "percentunit", "stat", width=3),
        Panel("Power now", (Query(f"sum({power.name})"),), "watt", "stat", width=3),
        Panel("Energy in range", (Query(f"sum(increase({energy.name}[$__range]))"),), "joule", "stat", width=3),
    ])
    free, held = metric("node", "gpus_free"), metric("node", "gpus_held")
    eq_held, eq_idle = metric("node", "gpu_equivalents_held"), metric("node", "gpu_equivalents_idle_held")
    b.row("Capacity", [
        Panel("Accelerators free", (Query(f"sum({free.name})"),), kind="stat", width=6, description=free.help),
        Panel("Accelerators held", (Query(f"sum({held.name})"),), kind="stat", width=6, description=held.help),
        Panel("Held but idle", (Query(f"sum({eq_idle.name}) / sum({eq_held.name})"),), "percentunit", "stat",
              width=6, description=f"Share of the held GPU-equivalents that are idle: the waste ({eq_idle.name})."),
        Panel("Free and held over time", (Query(f"sum({free.name})", "free"), Query(f"sum({held.name})", "held")),
              width=6),
    ])
    b.row("By node", [
        Panel("GPU utilization by node", (Query(f"avg by (node) ({util.name})", "{{node}}"),), "percentunit"),
        Panel("GPU memory used by node", (Query(f"sum by (node) ({used.name})", "{{node}}"),), "bytes"),
        Panel("GPU power by node", (Query(f"sum by (node) ({power.name})", "{{node}}"),), "watt"),
        Panel("Hottest GPU by node", (Query(f"max by (node) ({temp.name})", "{{node}}"),), "celsius"),
        Panel("Idle accelerators", (Query(f"count({sel(util)} < 0.05) or vector(0)", "idle"),),
              description="Accelerators below 5% utilization."),
        Panel("Accelerators by model", (Query(f"count by (model, vendor) ({up.name})", instant=True, table=True),),
              kind="table"),
    ])
    b.row("Users", [
        Panel("GPU memory by user (top 10)", (Query(f"topk(10, sum by (user) ({umem.name}))", "{{user}}"),), "bytes"),
        Panel("GPUs in use by user (top 10)", (Query(f"topk(10, sum by (user) ({ugpus.name}))", "{{user}}"),)),
    ])
    b.row("Nodes", [Panel("Nodes", (Query(info.name, instant=True, table=True),), kind="table", width=24,
                          description=info.help)])
    return b
