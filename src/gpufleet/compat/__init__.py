"""Other exporters' names for gpufleet's readings (`gpufleet agent --compat MODE,...`).

One module per mode, registered in MODES below: the one table that `--compat`, its help,
the exposition and the docs read. A mode renders the same snapshot under another exporter's
names, units, types and labels, so that exporter's dashboards and rules work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..snapshot import NodeSnapshot
from . import allsmi, allsmi_legacy, dcgm, ds01, node
from .base import CompatMode

MODES: dict[str, CompatMode] = {
    "dcgm": dcgm.MODE,
    "all-smi": allsmi.MODE,
    "all-smi-legacy": allsmi_legacy.MODE,
    "ds01": ds01.MODE,
    "node": node.MODE,
}

COMPAT_MODES: tuple[str, ...] = tuple(MODES)


def parse_compat(value: str | Iterable[str]) -> tuple[str, ...]:
    """'dcgm,all-smi' -> ('dcgm', 'all-smi'); unknown modes raise ValueError naming them."""
    items = value.split(",") if isinstance(value, str) else list(value)
    modes = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    seen: dict[str, str] = {}
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown compat mode {mode!r}; choose from: {', '.join(COMPAT_MODES)}")
        names = MODES[mode].names
        if names and names in seen:
            raise ValueError(f"compat modes {seen[names]!r} and {mode!r} write the same names: keep one")
        if names:
            seen[names] = mode
    return modes


def render_compat(snap: NodeSnapshot, modes: Iterable[str], openmetrics: bool, out: list[str]) -> None:
    for mode in modes:
        MODES[mode].render(snap, openmetrics, out)


def prefers_text(modes: Iterable[str]) -> bool:
    """True when one of the modes types a series in a way only the text format can say."""
    return any(MODES[m].prefers_text for m in modes)
