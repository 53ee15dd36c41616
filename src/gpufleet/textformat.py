"""The small grammar of the Prometheus text and OpenMetrics formats that every renderer shares:
label-value escaping, sample values, HELP/TYPE headers. The native exposition (exposition.py)
and each compat mode (compat/) write through these, so both escape and type the same way."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

SampleType = Literal["gauge", "counter"]


def escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def format_value(v: float) -> str:
    if type(v) is int:  # collectors may store ints; Python 3.11 ints lack is_integer()
        return str(v)
    if v != v:  # NaN
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def label_block(names: Iterable[str], values: Iterable[str]) -> str:
    return ",".join(f'{n}="{escape(v)}"' for n, v in zip(names, values))


def openmetrics_expressible(name: str, kind: SampleType) -> bool:
    """OpenMetrics names a counter's samples `<family>_total`: a counter named otherwise
    (dcgm-exporter's DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION) has no valid OpenMetrics form."""
    return kind != "counter" or name.endswith("_total")


def header(out: list[str], name: str, help_text: str, kind: SampleType, openmetrics: bool) -> None:
    """HELP and TYPE lines of a family written under another exporter's name.

    The text format types it as that exporter does. OpenMetrics names a counter family without
    `_total`; a counter whose samples lack the suffix cannot be written as one there, so it is
    declared `unknown` (the agent answers Prometheus in the text format when such a family is
    present, see compat.prefers_text)."""
    family, typ = name, str(kind)
    if openmetrics and kind == "counter":
        if name.endswith("_total"):
            family = name[: -len("_total")]
        else:
            typ = "unknown"
    out.append(f"# HELP {family} {help_text}")
    out.append(f"# TYPE {family} {typ}")
