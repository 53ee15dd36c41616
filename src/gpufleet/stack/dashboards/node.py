"""Node: one machine's host, its accelerators at a glance, who uses it, and the agent's own health.

Hand-laid panels for what people look at first; every other node, CPU, disk, network and
collector metric of the catalogue follows in the last row, so new host fields appear by themselves.
"""

from __future__ import annotations

from ...catalogue import BY_SCOPE, Metric, name_of
from .kit import Board, Panel, Query, Variable, metric, metric_panel, remaining, sel, series, unit_of

UID = "gpufleet-node"
N = {"node": "$node"}


def _chart(title: str, scope: str, keys: list[str], legend: str, width: int = 8, unit: str | None = None,
           how: str = "{}") -> Panel:
    ms = [metric(scope, k) for k in keys]
    qs = tuple(Query(how.format(series(m, **N)), legend + (f" {m.key}" if len(ms) > 1 else "")) for m in ms)
    return Panel(title, qs, unit or unit_of(ms[0], rate=ms[0].kind == "counter"),
                 description=" ".join(f"{m.name}: {m.help}" for m in ms), width=width)


def _stat(title: str, m: Metric, unit: str | None = None) -> Panel:
    return Panel(title, (Query(sel(m, **N)),), unit or unit_of(m), "stat", description=m.help, width=4)


def build() -> Board:
    b = Board(UID, "gpufleet / Node", "One machine: host, accelerators, users and the gpufleet agent.",
              variables=(Variable("node", "Node", f"label_values({name_of('node', 'info')}, node)"),))
    node = {k: metric("node", k) for k in ("uptime_seconds", "cpu_cores", "memory_total_bytes", "gpus",
                                           "load1", "users_logged_in")}
    b.row("Now", [_stat("Uptime", node["uptime_seconds"]), _stat("CPU cores", node["cpu_cores"]),
                  _stat("Memory", node["memory_total_bytes"]), _stat("Accelerators", node["gpus"]),
                  _stat("Load (1m)", node["load1"]), _stat("Users logged in", node["users_logged_in"])])
    b.row("CPU and memory", [
        _chart("CPU utilization", "node", ["cpu_utilization_ratio"], "{{node}}"),
        _chart("CPU utilization per core", "cpu", ["utilization_ratio"], "cpu {{cpu}}"),
        _chart("Load", "node", ["load1", "load5", "load15"], "", unit="short"),
        _chart("Memory", "node", [m.key for m in BY_SCOPE["node"] if m.key.startswith("memory_")], ""),
        _chart("Swap", "node", ["swap_total_bytes", "swap_used_bytes"], ""),
        _chart("CPU frequency", "node", ["cpu_frequency_hertz"], "{{node}}"),
    ])
    # Seconds per second in each mode: the share of time, summed over cores (read with --compat node).
    modes = [m for m in BY_SCOPE["cpu"] if m.kind == "counter" and m.key.endswith("_seconds_total")]
    b.row("CPU time by mode", [Panel("CPU time by mode (agents with --compat node)", tuple(
        Query(f"avg(rate({sel(m, **N)}[$__rate_interval]))", m.key.removesuffix("_seconds_total")) for m in modes),
        "percentunit", description="Share of the node's CPU time in each mode, averaged over cores.", width=24)]
        if modes else [])
    b.uses(*modes)
    size, used = metric("disk", "size_bytes"), metric("disk", "used_bytes")
    b.row("Disks", [
        Panel("Disk space used", (Query(f"{sel(used, **N)} / {sel(size, **N)}", "{{mountpoint}}"),), "percentunit",
              description=f"{used.name} / {size.name}"),
        _chart("Disk free", "disk", ["free_bytes"], "{{mountpoint}}"),
        _chart("Disk throughput", "disk", ["read_bytes_total", "written_bytes_total"], "{{device}}"),
        _chart("Disk operations", "disk", ["reads_total", "writes_total"], "{{device}}", unit="iops"),
    ])
    b.row("Network", [
        _chart("Network throughput", "net", ["receive_bytes_total", "transmit_bytes_total"], "{{interface}}"),
        _chart("Network packets", "net", ["receive_packets_total", "transmit_packets_total"], "{{interface}}",
               unit="pps"),
        _chart("Network errors", "net", ["receive_errors_total", "transmit_errors_total"], "{{interface}}"),
        _chart("Network drops", "net", ["receive_drops_total", "transmit_drops_total"], "{{interface}}"),
    ])
    b.row("Accelerators", [
        _chart("GPU utilization", "gpu", ["utilization_ratio"], "GPU {{gpu}}", width=6),
        _chart("GPU memory used", "gpu", ["memory_used_bytes"], "GPU {{gpu}}", width=6),
        _chart("GPU power", "gpu", ["power_watts"], "GPU {{gpu}}", width=6),
        _chart("GPU temperature", "gpu", ["temperature_celsius"], "GPU {{gpu}}", width=6),
    ])
    b.row("Users on this node", [
        _chart("GPU memory by user", "user", ["gpu_memory_used_bytes"], "{{user}}", width=6),
        _chart("GPUs in use by user", "user", ["gpus_in_use"], "{{user}}", width=6),
        _chart("CPU cores by user", "user", ["cpu_utilization_ratio"], "{{user}}", width=6, unit="short"),
        _chart("Memory by user", "user", ["memory_used_bytes"], "{{user}}", width=6),
    ])
    # Who holds the node's accelerators (the allocation sources; GPU-equivalents count MIG shares).
    held = [m for m in BY_SCOPE["node"] if m.key.startswith(("gpus_", "unmanaged_"))]
    shares = [m for m in BY_SCOPE["node"] if m.key.startswith("gpu_equivalents_")]
    b.row("Allocation", [_chart(t, "node", [m.key for m in ms], "", width=12, unit="short")
                         for t, ms in (("Accelerators free and held", held), ("GPU-equivalents", shares)) if ms])
    b.uses(*held, *shares)
    agent = [metric("agent", k) for k in ("collection_duration_seconds", "collection_cpu_seconds")]
    b.row("gpufleet agent", [
        _chart("Collector success", "collector", ["success"], "{{collector}}", unit="short"),
        _chart("Collector duration", "collector", ["duration_seconds"], "{{collector}}"),
        _chart("Collector errors", "collector", ["errors_total"], "{{collector}}"),
        _chart("Collection time", "agent", ["collection_duration_seconds", "collection_cpu_seconds"], ""),
        _chart("Pushes to the hub", "agent", ["push_snapshots_total", "push_failures_total", "push_dropped_total"], ""),
        _chart("Push backlog", "agent", ["push_backlog"], ""),
    ])
    b.uses(*node.values(), *agent, size, used, *(m for m in BY_SCOPE["node"] if m.key.startswith("memory_")),
           *(metric("node", k) for k in ("cpu_utilization_ratio", "load5", "load15", "swap_total_bytes",
                                         "swap_used_bytes", "cpu_frequency_hertz")))
    used_keys = {"disk": ("free_bytes", "read_bytes_total", "written_bytes_total", "reads_total", "writes_total"),
                 "net": ("receive_bytes_total", "transmit_bytes_total", "receive_packets_total",
                         "transmit_packets_total", "receive_errors_total", "transmit_errors_total",
                         "receive_drops_total", "transmit_drops_total"),
                 "cpu": ("utilization_ratio",), "collector": ("success", "duration_seconds", "errors_total")}
    b.uses(*(metric(scope, k) for scope, ks in used_keys.items() for k in ks))
    more = [m for scope in ("node", "cpu", "disk", "net", "collector") for m in remaining(scope, b.used)]
    b.row("More host metrics", [metric_panel(m, N) for m in more])
    return b
