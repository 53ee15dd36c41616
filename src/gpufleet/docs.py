"""Generate docs/metrics.md from the catalogue, so the metric reference cannot drift.

`python -m gpufleet.docs > docs/metrics.md`; a test fails when the file is out of date.
"""

from __future__ import annotations

from .catalogue import CATALOGUE, Compat
from .compat import MODES
from .compat.node import reference as node_reference
from .nvidia_smi import markdown as nvidia_smi_markdown
from .scopes import SCOPES


def metrics_markdown() -> str:
    out = [
        "# Metric reference",
        "",
        "Generated from `src/gpufleet/catalogue.py` by `python -m gpufleet.docs`; do not edit by hand.",
        "Every series also has the label `node`. Units are base units (bytes, seconds, hertz, watts,",
        "joules, celsius; `_ratio` is 0-1). `--compat dcgm` / `--compat all-smi` add the names in the",
        "last two columns, converted to those exporters' units.",
        "",
    ]
    for scope, spec in SCOPES.items():
        metrics = [m for m in CATALOGUE if m.scope == scope]
        if not metrics:
            continue
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "none"
        out += [f"## {spec.title}", "", f"Identity labels: {labels}.", "",
                "| name | type | help | dcgm-exporter | all-smi |", "|---|---|---|---|---|"]
        for m in metrics:
            extra = f" Labels: {', '.join(f'`{x}`' for x in m.labels)}." if m.labels else ""
            out.append(f"| `{m.name}` | {m.kind} | {m.help}{extra} | {_compat(m.dcgm)} | {_compat(m.allsmi)} |")
        out.append("")
    out += _modes_markdown()
    out += nvidia_smi_markdown()
    return "\n".join(out)


def _modes_markdown() -> list[str]:
    out = ["## Compat modes", "", "`gpufleet agent --compat MODE,...` adds another exporter's names beside the",
           "`gpufleet_*` series (see docs/agent.md):", "", "| mode | what |", "|---|---|"]
    out += [f"| `{name}` | {mode.help} |" for name, mode in MODES.items()]
    out += ["", "### node_exporter names (`--compat node`)", "",
            "| name | type | labels | made from |", "|---|---|---|---|"]
    out += [f"| `{name}` | {kind} | {labels} | {source} |" for name, kind, labels, source in node_reference()]
    out.append("")
    return out


def _compat(c: Compat | None) -> str:
    """`NAME` (xSCALE, counter): the scale when not 1, the type when not gauge."""
    if c is None:
        return ""
    notes = ([f"x{c.scale:g}"] if c.scale != 1 else []) + ([c.type] if c.type != "gauge" else [])
    return f"`{c.name}`" + (f" ({', '.join(notes)})" if notes else "")


if __name__ == "__main__":
    print(metrics_markdown(), end="")
