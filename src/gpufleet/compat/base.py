"""What a compat mode is, and the rendering every catalogue-driven mode shares.

A mode's names live in the catalogue, beside the metric they translate (`Metric.dcgm`,
`Metric.allsmi`, ...), with the scale to the other exporter's unit and the type it gives the
series. A mode module says which of those names it uses and how it labels each scope's records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..catalogue import CATALOGUE, Compat, Metric
from ..scopes import records
from ..snapshot import NodeSnapshot
from ..textformat import format_value, header, openmetrics_expressible

# (snapshot, openmetrics?, output lines to append to)
Renderer = Callable[[NodeSnapshot, bool, list[str]], None]
# The catalogue field a mode reads (Metric.dcgm, Metric.allsmi, ...).
Names = Callable[[Metric], "Compat | None"]
# Labels of one record under the mode, made per snapshot by the mode:
# (foreign name, scope, record ids) -> 'a="1",b="2"', or None to leave the record out.
Labeller = Callable[[str, str, tuple[str, ...]], "str | None"]


@dataclass(frozen=True, slots=True)
class CompatMode:
    """One `--compat` mode: a line for --help and docs, and how it renders a snapshot."""

    help: str
    render: Renderer
    # True when some of its text-format types cannot be said in OpenMetrics (counters named
    # without `_total`, as dcgm-exporter's): the agent then answers in the text format whenever
    # the scraper accepts it, so Prometheus records the types the other exporter gives.
    prefers_text: bool = False
    # Modes writing the same names (all-smi and all-smi-legacy) cannot be on together: one
    # exposition may hold each family once.
    names: str = ""


def families(names: Names) -> dict[str, list[tuple[Metric, Compat]]]:
    """Catalogue entries by foreign name. Several of our metrics can share one foreign name
    (DCGM_FI_DEV_FB_USED is reported for whole GPUs and MIG instances alike)."""
    out: dict[str, list[tuple[Metric, Compat]]] = {}
    for m in CATALOGUE:
        c = names(m)
        if c is not None:
            members = out.setdefault(c.name, [])
            if members and members[0][1].type != c.type:
                raise RuntimeError(f"compat name {c.name} is typed both {members[0][1].type} and {c.type}")
            members.append((m, c))
    return out


def has_counter_without_total(fams: dict[str, list[tuple[Metric, Compat]]]) -> bool:
    return any(not openmetrics_expressible(name, ms[0][1].type) for name, ms in fams.items())


def render_families(snap: NodeSnapshot, fams: dict[str, list[tuple[Metric, Compat]]], labeller: Labeller,
                    openmetrics: bool, out: list[str]) -> None:
    """Each family that has a value on this snapshot: its header and one sample per record."""
    for name, members in fams.items():
        lines: list[str] = []
        for m, c in members:
            for ids, values, _ in records(snap, m.scope):
                v = values.get(m.key)
                if v is None:
                    continue
                lbl = labeller(name, m.scope, ids)
                if lbl is not None:
                    lines.append(f"{name}{{{lbl}}} {format_value(v * c.scale)}")
        if lines:
            header(out, name, members[0][1].help, members[0][1].type, openmetrics)
            out.extend(lines)
