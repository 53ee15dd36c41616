"""GPU detail: what NVIDIA's DCGM dashboard shows, in gpufleet's names, for one node's GPUs.

Utilisation, memory copy utilisation, SM and memory clocks, framebuffer used and free,
temperatures, power, energy, PCIe, XID and ECC errors laid out by hand; the profiling row holds
every GPU metric the catalogue maps to a DCGM profiling field (DCGM_FI_PROF_*), and the last row
every other GPU metric of the catalogue, so a field added there later gets a chart here.
"""

from __future__ import annotations

from ...catalogue import BY_SCOPE, Metric, name_of
from .kit import Board, Panel, Query, Variable, metric, metric_panel, remaining, sel, series, unit_of

UID = "gpufleet-gpu"
G = {"node": "$node", "gpu": "~$gpu"}  # the selected node's selected GPUs
LEGEND = "GPU {{gpu}}"


def _m(key: str) -> Metric:
    return metric("gpu", key)


def _chart(title: str, keys: list[str], description: str = "", width: int = 12, unit: str | None = None) -> Panel:
    ms = [_m(k) for k in keys]
    queries = tuple(Query(series(m, **G), LEGEND + (f" {_short(m, ms)}" if len(ms) > 1 else "")) for m in ms)
    return Panel(title, queries, unit or unit_of(ms[0], rate=ms[0].kind == "counter"),
                 description=description or " ".join(f"{m.name}: {m.help}" for m in ms), width=width)


def _short(m: Metric, group: list[Metric]) -> str:
    """What tells one metric of a chart from the others: its key minus the words they share."""
    words = [set(x.key.split("_")) for x in group]
    common = set.intersection(*words)
    return " ".join(w for w in m.key.split("_") if w not in common) or m.key


def _increase(title: str, key: str, description: str) -> Panel:
    m = _m(key)
    return Panel(title, (Query(f"increase({sel(m, **G)}[$__rate_interval])", LEGEND),), "short",
                 description=f"{description} ({m.name})", width=8)


def profiling(m: Metric) -> bool:
    return m.dcgm is not None and m.dcgm.name.startswith("DCGM_FI_PROF_")


def build() -> Board:
    b = Board(UID, "gpufleet / GPU detail",
              "One node's accelerators: everything NVIDIA's DCGM dashboard shows, from gpufleet's agent.",
              variables=(Variable("node", "Node", f"label_values({name_of('gpu', 'up')}, node)"),
                         Variable("gpu", "GPU", f"label_values({name_of('gpu', 'up')}{{node=\"$node\"}}, gpu)",
                                  multi=True)))
    energy = _m("energy_joules_total")
    b.row("Now", [
        Panel("GPU utilization", (Query(f"avg({sel(_m('utilization_ratio'), **G)})"),), "percentunit", "stat",
              width=4),
        Panel("Memory used", (Query(f"sum({sel(_m('memory_used_bytes'), **G)})"),), "bytes", "stat", width=4),
        Panel("Hottest", (Query(f"max({sel(_m('temperature_celsius'), **G)})"),), "celsius", "stat", width=4),
        Panel("Power", (Query(f"sum({sel(_m('power_watts'), **G)})"),), "watt", "stat", width=4),
        Panel("Energy in range", (Query(f"sum(increase({sel(energy, **G)}[$__range]))"),), "joule", "stat",
              description=f"Energy the selected GPUs used in the dashboard's time range ({energy.name}).", width=4),
        Panel("XID errors in range", (Query(f"sum(increase({sel(_m('xid_errors_total'), **G)}[$__range]))"),),
              "short", "stat", width=4),
    ])
    b.row("Utilization", [
        _chart("GPU utilization", ["utilization_ratio"]),
        _chart("Memory copy utilization", ["memory_bandwidth_utilization_ratio"]),
    ])
    b.row("Clocks", [
        _chart("SM clock", ["sm_clock_hertz", "sm_clock_max_hertz"]),
        _chart("Memory clock", ["memory_clock_hertz", "memory_clock_max_hertz"]),
    ])
    b.row("Framebuffer", [
        _chart("Framebuffer used", ["memory_used_bytes"], width=8),
        _chart("Framebuffer free", ["memory_free_bytes"], width=8),
        _chart("Framebuffer total", ["memory_total_bytes"], width=8),
    ])
    b.row("Thermals and power", [
        _chart("Temperature", ["temperature_celsius", "memory_temperature_celsius"], width=8),
        _chart("Power", ["power_watts", "power_limit_watts"], width=8),
        Panel("Energy", (Query(f"increase({sel(energy, **G)}[$__rate_interval])", LEGEND),), "joule",
              description=f"Energy used per interval ({energy.name}: {energy.help})", width=8),
        _chart("Fan speed", ["fan_speed_ratio"], width=8),
        _chart("Performance state", ["performance_state"], width=8),
        _chart("Clock throttle reasons", ["clock_throttle_reasons"], width=8),
    ])
    b.row("PCIe", [_chart("PCIe throughput", ["pcie_transmit_bytes_per_second", "pcie_receive_bytes_per_second"],
                          width=24)])
    b.row("Errors", [
        _increase("XID errors", "xid_errors_total", "New XID errors per interval"),
        _chart("Last XID", ["last_xid"], width=8),
        _increase("ECC corrected (single-bit)", "ecc_corrected_errors_total", "New corrected ECC errors"),
        _increase("ECC uncorrected (double-bit)", "ecc_uncorrected_errors_total", "New uncorrected ECC errors"),
        _chart("Up", ["up"], width=8),
        _chart("Processes", ["processes", "mig_instances"], width=8),
    ])
    b.uses(*(_m(k) for k in (
        "utilization_ratio", "memory_bandwidth_utilization_ratio", "sm_clock_hertz", "sm_clock_max_hertz",
        "memory_clock_hertz", "memory_clock_max_hertz", "memory_used_bytes", "memory_free_bytes",
        "memory_total_bytes", "temperature_celsius", "memory_temperature_celsius", "power_watts",
        "power_limit_watts", "energy_joules_total", "fan_speed_ratio", "performance_state",
        "clock_throttle_reasons", "pcie_transmit_bytes_per_second", "pcie_receive_bytes_per_second",
        "xid_errors_total", "last_xid", "ecc_corrected_errors_total", "ecc_uncorrected_errors_total", "up",
        "processes", "mig_instances")))
    prof = [m for m in BY_SCOPE["gpu"] if profiling(m) and m.kind != "info"]
    b.row("Profiling (DCGM_FI_PROF_* fields)", [
        Panel(m.key.replace("_", " ").removesuffix(" ratio").capitalize(), (Query(series(m, **G), LEGEND),),
              unit_of(m), description=f"{m.name}: {m.help} (DCGM: {m.dcgm.name if m.dcgm else ''})", width=8)
        for m in prof])
    b.uses(*prof)
    proc = metric("gpu_process", "memory_used_bytes")
    b.row("Processes", [Panel("Processes on the selected GPUs",
                              (Query(f'{sel(proc, node="$node", gpu="~$gpu")}', instant=True, table=True),),
                              "bytes", "table", description=f"{proc.name}: {proc.help}", width=24)])
    b.row("MIG instances", [metric_panel(m, G) for m in remaining("mig", [])])
    b.row("More GPU metrics", [metric_panel(m, G) for m in remaining("gpu", b.used)])
    return b
