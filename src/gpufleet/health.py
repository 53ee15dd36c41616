"""Does a GPU need a reset or a drain? One table of rules over its health counters.

The rules are data so that every place that judges a GPU judges it the same way: the web
UI's node and GPU pages evaluate this very table (sent to the browser as JSON), and a test
holds the built-in alert rules (hub/alerts/builtin.yaml) to it. A rule fires when the GPU's reading is above its
threshold; a reading the device does not report never fires (absent is not zero).

What each action means for an admin (NVIDIA's GPU memory error management guide):
- `drain`: take the GPU out of service and have it looked at; a reset will not fix it.
- `reset`: the GPU keeps working but a repair waits for the next GPU reset or reboot; drain
  its jobs, then reset it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Action = Literal["drain", "reset"]

# Worst first: a GPU that needs draining is shown as such even when a reset is pending too.
ACTIONS: tuple[Action, ...] = ("drain", "reset")


@dataclass(frozen=True, slots=True)
class Rule:
    key: str  # a gpu-scope catalogue key
    above: float
    action: Action
    reason: str


# A row remapped after an uncorrectable error is pending until the next reset (then the GPU is
# whole again), so it is judged through `remapped_rows_pending`; the built-in alert
# GpufleetGpuUncorrectableRowRemap pages on each new one.
RULES: tuple[Rule, ...] = (
    Rule("remapped_rows_failure", 0, "drain", "a row remap failed: no spare memory rows are left"),
    Rule("remapped_rows_pending", 0, "reset", "a row remap waits for a GPU reset"),
    Rule("retired_pages_pending", 0, "reset", "a retired memory page waits for a GPU reset"),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action | None  # None: nothing to do
    reasons: tuple[str, ...]


def judge(values: Mapping[str, float]) -> Verdict:
    """The worst action the GPU's readings call for, with every reason that applies."""
    fired = [r for r in RULES if (v := values.get(r.key)) is not None and v > r.above]
    for action in ACTIONS:
        if any(r.action == action for r in fired):
            return Verdict(action, tuple(r.reason for r in fired))
    return Verdict(None, ())


def rules_json() -> list[dict[str, Any]]:
    """The table for the web UI, which applies it to live snapshots."""
    return [asdict(r) for r in RULES]


# The readings the GPU page gathers in its health panel, in this order (those the device reports).
COUNTERS: tuple[str, ...] = (
    "remapped_rows_failure", "remapped_rows_pending", "remapped_rows_uncorrectable_total",
    "remapped_rows_correctable_total", "retired_pages_pending", "retired_pages_double_bit_total",
    "retired_pages_single_bit_total", "ecc_uncorrected_errors_total", "ecc_corrected_errors_total",
    "ecc_uncorrected_errors_aggregate_total", "ecc_corrected_errors_aggregate_total", "xid_errors_total",
    "last_xid", "pcie_replays_total", "nvlink_crc_flit_errors_total", "nvlink_crc_data_errors_total",
    "nvlink_replay_errors_total", "nvlink_recovery_errors_total", "throttle_power_seconds_total",
    "throttle_thermal_seconds_total", "throttle_sync_boost_seconds_total", "throttle_board_limit_seconds_total",
    "throttle_low_utilization_seconds_total", "throttle_reliability_seconds_total",
)


def page_json() -> dict[str, Any]:
    """What the node and GPU pages need to judge and show a GPU's health."""
    return {"rules": rules_json(), "counters": list(COUNTERS)}
