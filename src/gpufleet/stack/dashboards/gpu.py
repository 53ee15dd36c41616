"""GPU detail: what NVIDIA's DCGM dashboard shows, in gpufleet's names, for one node's GPUs.

Utilisation, memory copy utilisation, SM and memory clocks, framebuffer, temperatures, power,
energy, PCIe, XID and ECC errors are laid out by hand. The rows after them take their metrics
from the catalogue by family (key prefix: `throttle_`, `nvlink_`, `remapped_rows_`, ...; the
profiling ratios by their DCGM_FI_PROF_* name or `_active_ratio` key), and the last row charts
every GPU metric no row took, so a field added to the catalogue later gets a chart here.
"""

from __future__ import annotations

from ...catalogue import Metric, name_of
from .kit import Board, Panel, Query, Variable, metric, metric_panel, remaining, sel, series, unit_of

UID = "gpufleet-gpu"
G = {"node": "$node", "gpu": "~$gpu"}  # the selected node's selected GPUs
LEGEND = "GPU {{gpu}}"


def _m(key: str) -> Metric:
    return metric("gpu", key)


def _short(m: Metric, group: list[Metric]) -> str:
    """What tells one metric of a chart from the others: its key minus the words they share."""
    common = set.intersection(*(set(x.key.split("_")) for x in group))
    return " ".join(w for w in m.key.split("_") if w not in common) or m.key


def _chart(title: str, ms: list[Metric], how: str = "series", width: int = 12, unit: str | None = None,
           scope_legend: str = LEGEND) -> Panel:
    """One chart of metrics that share a unit. `how`: series (counters as rates), increase (new
    events per interval), value (a counter's running total, e.g. a board's lifetime count)."""
    def expr(m: Metric) -> str:
        if how == "increase":
            return f"increase({sel(m, **G)}[$__rate_interval])"
        return sel(m, **G) if how == "value" else series(m, **G)

    queries = tuple(Query(expr(m), scope_legend + (f" {_short(m, ms)}" if len(ms) > 1 else "")) for m in ms)
    if unit is None:
        unit = "short" if how in ("increase", "value") else unit_of(ms[0], rate=ms[0].kind == "counter")
    return Panel(title, queries, unit, description=" ".join(f"{m.name}: {m.help}" for m in ms), width=width)


def _keys(*keys: str) -> list[Metric]:
    return [_m(k) for k in keys]


def profiling(m: Metric) -> bool:
    """DCGM's profiling fields: engine, SM, tensor, DRAM and pipe activity ratios."""
    return (m.dcgm is not None and m.dcgm.name.startswith("DCGM_FI_PROF_")) or m.key.endswith("_active_ratio")


def _family(b: Board, scope: str, *prefixes: str) -> list[Metric]:
    """The scope's metrics whose key starts with a prefix and that no panel charts yet."""
    return [m for m in remaining(scope, b.used) if m.key.startswith(prefixes)]


def _add(b: Board, title: str, panels: list[Panel], ms: list[Metric]) -> None:
    b.row(title, panels)
    b.uses(*ms)


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
    _add(b, "Utilization", [
        _chart("GPU utilization", _keys("utilization_ratio")),
        _chart("Memory copy utilization", _keys("memory_bandwidth_utilization_ratio")),
    ], _keys("utilization_ratio", "memory_bandwidth_utilization_ratio"))
    _add(b, "Clocks", [
        _chart("SM clock", _keys("sm_clock_hertz", "sm_clock_max_hertz")),
        _chart("Memory clock", _keys("memory_clock_hertz", "memory_clock_max_hertz")),
    ], _keys("sm_clock_hertz", "sm_clock_max_hertz", "memory_clock_hertz", "memory_clock_max_hertz"))
    fb = ("memory_used_bytes", "memory_free_bytes", "memory_total_bytes", "memory_reserved_bytes")
    _add(b, "Framebuffer", [_chart(f"Framebuffer {k.split('_')[1]}", _keys(k), width=6) for k in fb], _keys(*fb))
    _add(b, "Thermals and power", [
        _chart("Temperature", _keys("temperature_celsius", "memory_temperature_celsius"), width=8),
        _chart("Power", _keys("power_watts", "power_limit_watts"), width=8),
        Panel("Energy", (Query(f"increase({sel(energy, **G)}[$__rate_interval])", LEGEND),), "joule",
              description=f"Energy used per interval ({energy.name}: {energy.help})", width=8),
        _chart("Fan speed", _keys("fan_speed_ratio"), width=8),
        _chart("Performance state", _keys("performance_state"), width=8),
        _chart("Clock throttle reasons", _keys("clock_throttle_reasons"), width=8),
    ], _keys("temperature_celsius", "memory_temperature_celsius", "power_watts", "power_limit_watts",
             "energy_joules_total", "fan_speed_ratio", "performance_state", "clock_throttle_reasons"))
    throttle = _family(b, "gpu", "throttle_")
    # seconds held down per second: the share of time each reason throttled the clocks
    b.row("Throttling", [_chart("Throttle time by reason", throttle, width=24)] if throttle else [])
    b.uses(*throttle)
    _add(b, "PCIe", [
        _chart("PCIe throughput", _keys("pcie_transmit_bytes_per_second", "pcie_receive_bytes_per_second")),
        _chart("PCIe replays", _keys("pcie_replays_total"), "increase"),
    ], _keys("pcie_transmit_bytes_per_second", "pcie_receive_bytes_per_second", "pcie_replays_total"))
    _add(b, "Errors", [
        _chart("XID errors", _keys("xid_errors_total"), "increase", width=8),
        _chart("Last XID", _keys("last_xid"), width=8),
        _chart("Up", _keys("up"), width=8),
        _chart("ECC corrected (single-bit)", _keys("ecc_corrected_errors_total"), "increase", width=8),
        _chart("ECC uncorrected (double-bit)", _keys("ecc_uncorrected_errors_total"), "increase", width=8),
        _chart("Processes", _keys("processes", "mig_instances"), width=8),
    ], _keys("xid_errors_total", "last_xid", "up", "ecc_corrected_errors_total", "ecc_uncorrected_errors_total",
             "processes", "mig_instances"))
    health: list[Panel] = []
    for prefix, title in (("ecc_", "ECC errors over the board's life"), ("retired_pages_", "Retired pages"),
                          ("remapped_rows_", "Remapped rows")):
        fam = _family(b, "gpu", prefix)
        totals = [m for m in fam if m.kind == "counter"]
        flags = [m for m in fam if m.kind != "counter"]
        health += [_chart(title, totals, "value", width=8)] if totals else []
        health += [_chart(f"{title}: pending / failed", flags, width=8)] if flags else []
        b.uses(*fam)
    b.row("Memory health (ECC, page retirement, row remapping)", health)
    link = _family(b, "gpu", "nvlink_")
    nvlink = [_chart("NVLink links up", [m for m in link if m.kind != "counter"], width=8),
              _chart("NVLink throughput", [m for m in link if m.unit == "bytes"], width=8),
              _chart("NVLink errors", [m for m in link if m.key.endswith("_errors_total")], "increase", width=8)]
    b.uses(*link)
    per_link = remaining("gpu_link", [])
    nvlink += [metric_panel(m, G, prefix="per link: ") for m in per_link]
    b.row("NVLink / XGMI (totals, then per link)", [p for p in nvlink if p.queries])
    b.uses(*per_link)
    prof = [m for m in remaining("gpu", b.used) if profiling(m)]
    _add(b, "Profiling (DCGM_FI_PROF_* fields)", [
        Panel(m.key.replace("_", " ").removesuffix(" ratio").capitalize(), (Query(series(m, **G), LEGEND),),
              unit_of(m), description=f"{m.name}: {m.help}" + (f" (DCGM: {m.dcgm.name})" if m.dcgm else ""), width=8)
        for m in prof], prof)
    video = _family(b, "gpu", "encoder_", "decoder_")
    _add(b, "Video", [_chart("Encoder and decoder", video, width=24)] if video else [], video)
    proc = metric("gpu_process", "memory_used_bytes")
    b.row("Processes", [Panel("Processes on the selected GPUs", (Query(sel(proc, **G), instant=True, table=True),),
                              "bytes", "table", description=f"{proc.name}: {proc.help}", width=24)])
    b.row("MIG instances", [metric_panel(m, G) for m in remaining("mig", [])])
    b.row("More GPU metrics", [metric_panel(m, G) for m in remaining("gpu", b.used)])
    return b


