"""The `nvidia-smi --query-gpu` fields people script against, and the gpufleet reading each one is.

One table: docs/metrics.md prints it (so a user moving a script over finds the metric), and
`gpufleet.gpucheck` (scripts/gpu-check) uses it to compare a real GPU's nvidia-smi answers
with what the agent reports, each field with its own tolerance.

How an nvidia-smi answer (`--format=csv,noheader,nounits`) becomes our value, per `parse`:
- "number": float(answer) * scale (nvidia-smi's unit to our base unit);
- "pstate": "P0" -> 0;
- "yesno": "Yes" -> 1, "No" -> 0;
- "active": a clocks_event_reasons.* flag, "Active" -> 1, "Not Active" -> 0; ours is `bit` of
  the reasons bitmask;
- "hex": "0x0000000000000004" -> 4;
- "text": compared as text with an identity label or info label (`source` says which).
"[N/A]", "[Not Supported]" and the like mean "the device cannot say": the gpufleet reading must
then be absent too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .catalogue import metric, name_of

Parse = Literal["number", "pstate", "yesno", "active", "hex", "text"]
MiB = 1024.0 * 1024.0


@dataclass(frozen=True, slots=True)
class SmiField:
    field: str  # nvidia-smi --query-gpu name
    key: str  # gpu-scope catalogue key, or the label (identity / info) for "text"
    parse: Parse = "number"
    scale: float = 1.0  # nvidia-smi unit -> our base unit
    abs_tol: float = 0.0  # |ours - theirs| allowed, in our unit ...
    rel_tol: float = 0.0  # ... or this share of theirs, whichever is larger
    bit: int = 0  # for "active": the bit of clock_throttle_reasons
    source: Literal["value", "identity", "info"] = "value"
    moving: bool = False  # changes from one moment to the next (compared with two readings)
    unit: str = ""  # nvidia-smi's unit, for the docs

    @property
    def metric(self) -> str:
        """What the docs show: the metric name, or the label that carries it."""
        if self.source == "identity":
            return f"label `{self.key}` on every gpu series"
        if self.source == "info":
            return f"`{name_of('gpu', 'info')}{{{self.key}}}`"
        if self.parse == "active":
            return f"`{name_of('gpu', self.key)}` bit 0x{self.bit:x}"
        return f"`{name_of('gpu', self.key)}`"


def _flag(name: str, bit: int) -> SmiField:
    return SmiField(f"clocks_event_reasons.{name}", "clock_throttle_reasons", "active", bit=bit, moving=True)


# Tolerances: exact for identities, counts and settings; small for moving readings (the agent
# and nvidia-smi never read at the same instant).
FIELDS: tuple[SmiField, ...] = (
    SmiField("index", "gpu", "text", source="identity"),
    SmiField("uuid", "uuid", "text", source="identity"),
    SmiField("name", "model", "text", source="identity"),
    SmiField("pci.bus_id", "pci_bus_id", "text", source="info"),
    SmiField("serial", "serial", "text", source="info"),
    SmiField("vbios_version", "vbios_version", "text", source="info"),
    SmiField("driver_version", "driver_version", "text", source="info"),
    SmiField("compute_mode", "compute_mode", "text", source="info"),
    SmiField("mig.mode.current", "mig_mode", "text", source="info"),
    SmiField("utilization.gpu", "utilization_ratio", scale=0.01, unit="%", abs_tol=0.15, moving=True),
    SmiField("utilization.memory", "memory_bandwidth_utilization_ratio", scale=0.01, unit="%", abs_tol=0.15, moving=True),
    SmiField("utilization.encoder", "encoder_utilization_ratio", scale=0.01, unit="%", abs_tol=0.15, moving=True),
    SmiField("utilization.decoder", "decoder_utilization_ratio", scale=0.01, unit="%", abs_tol=0.15, moving=True),
    SmiField("memory.total", "memory_total_bytes", scale=MiB, unit="MiB", abs_tol=MiB),
    SmiField("memory.reserved", "memory_reserved_bytes", scale=MiB, unit="MiB", abs_tol=MiB),
    SmiField("memory.used", "memory_used_bytes", scale=MiB, unit="MiB", abs_tol=64 * MiB, rel_tol=0.02, moving=True),
    SmiField("memory.free", "memory_free_bytes", scale=MiB, unit="MiB", abs_tol=64 * MiB, rel_tol=0.02, moving=True),
    SmiField("temperature.gpu", "temperature_celsius", abs_tol=3.0, moving=True),
    SmiField("temperature.memory", "memory_temperature_celsius", abs_tol=3.0, moving=True),
    SmiField("power.draw", "power_watts", abs_tol=10.0, rel_tol=0.10, moving=True),
    SmiField("power.limit", "power_limit_watts", abs_tol=1.0),
    SmiField("enforced.power.limit", "power_limit_watts", abs_tol=1.0),
    SmiField("clocks.sm", "sm_clock_hertz", scale=1e6, unit="MHz", abs_tol=50e6, rel_tol=0.10, moving=True),
    SmiField("clocks.mem", "memory_clock_hertz", scale=1e6, unit="MHz", abs_tol=50e6, rel_tol=0.10, moving=True),
    SmiField("clocks.max.sm", "sm_clock_max_hertz", scale=1e6, unit="MHz"),
    SmiField("clocks.max.mem", "memory_clock_max_hertz", scale=1e6, unit="MHz"),
    SmiField("pstate", "performance_state", "pstate", moving=True),
    SmiField("fan.speed", "fan_speed_ratio", scale=0.01, unit="%", abs_tol=0.05, moving=True),
    SmiField("ecc.errors.corrected.volatile.total", "ecc_corrected_errors_total"),
    SmiField("ecc.errors.uncorrected.volatile.total", "ecc_uncorrected_errors_total"),
    SmiField("ecc.errors.corrected.aggregate.total", "ecc_corrected_errors_aggregate_total"),
    SmiField("ecc.errors.uncorrected.aggregate.total", "ecc_uncorrected_errors_aggregate_total"),
    SmiField("retired_pages.single_bit_ecc.count", "retired_pages_single_bit_total"),
    SmiField("retired_pages.double_bit.count", "retired_pages_double_bit_total"),
    SmiField("retired_pages.pending", "retired_pages_pending", "yesno"),
    SmiField("remapped_rows.correctable", "remapped_rows_correctable_total"),
    SmiField("remapped_rows.uncorrectable", "remapped_rows_uncorrectable_total"),
    SmiField("remapped_rows.pending", "remapped_rows_pending", "yesno"),
    SmiField("remapped_rows.failure", "remapped_rows_failure", "yesno"),
    SmiField("clocks_event_reasons.active", "clock_throttle_reasons", "hex", moving=True),
    _flag("gpu_idle", 0x1),
    _flag("applications_clocks_setting", 0x2),
    _flag("sw_power_cap", 0x4),
    _flag("hw_slowdown", 0x8),
    _flag("sync_boost", 0x10),
    _flag("sw_thermal_slowdown", 0x20),
    _flag("hw_thermal_slowdown", 0x40),
    _flag("hw_power_brake_slowdown", 0x80),
)

BY_FIELD: dict[str, SmiField] = {f.field: f for f in FIELDS}


def markdown() -> list[str]:
    """The docs/metrics.md section: each nvidia-smi field and the gpufleet reading it is."""
    out = ["## nvidia-smi fields", "",
           "What each `nvidia-smi --query-gpu` field people script against is in gpufleet (gpu scope;",
           "`scripts/gpu-check` compares them on a real GPU with the tolerance shown, in nvidia-smi's units).", "",
           "| nvidia-smi field | gpufleet | conversion | tolerance |", "|---|---|---|---|"]
    for f in FIELDS:
        if f.parse == "number":
            ours = metric(name_of("gpu", f.key)).unit or "count"
            conv = f"{f.unit} -> {ours}" if f.scale != 1 else "same unit"
        else:
            conv = {"pstate": "`P0` -> 0", "yesno": "Yes -> 1, No -> 0", "active": "Active -> bit set",
                    "hex": "hex -> number", "text": "same text"}[f.parse]
        if f.abs_tol or f.rel_tol:
            tol = " or ".join(p for p in (f"±{f.abs_tol / f.scale:g}" if f.abs_tol else "",
                                          f"±{f.rel_tol:.0%}" if f.rel_tol else "") if p)
        else:
            tol = "exact"
        out.append(f"| `{f.field}` | {f.metric} | {conv} | {tol} |")
    out.append("")
    return out
