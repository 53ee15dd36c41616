"""Render a NodeSnapshot as Prometheus text (0.0.4) or OpenMetrics (1.0.0).

Driven entirely by the catalogue: each metric's scope says which snapshot records carry
it and which identity labels they have. Rendering happens once per collection (the agent
caches the bytes), so this favours clarity over micro-optimisation, but it still avoids
per-sample allocations where it is easy.
"""

from __future__ import annotations

from collections.abc import Iterable

from .catalogue import BY_SCOPE, Metric
from .compat import COMPAT_MODES as COMPAT_MODES  # re-exported: the table lives in compat/
from .compat import parse_compat as parse_compat
from .compat import render_compat
from .scopes import COMMAND_LABEL_MAX as COMMAND_LABEL_MAX  # re-exported
from .scopes import Record, records  # what a snapshot holds per scope, and each record's labels
from .snapshot import NodeSnapshot
from .textformat import escape as escape  # re-exported
from .textformat import format_value as format_value
from .textformat import label_block as _label_block

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _native_lines(snap: NodeSnapshot, openmetrics: bool, out: list[str]) -> None:
    node_lbl = f'node="{escape(snap.node)}"'
    for scope in BY_SCOPE:
        render_scope(scope, list(records(snap, scope)), openmetrics, out, node_lbl)


def render_scope(scope: str, recs: list[Record], openmetrics: bool, out: list[str], base_labels: str = "") -> None:
    """Append the catalogue's metrics of one scope for the given records."""
    from .catalogue import SCOPE_LABELS

    if not recs:
        return
    names = SCOPE_LABELS[scope]
    prefixes = []
    for ids, _, _ in recs:
        own = _label_block(names, ids) if ids else ""
        prefixes.append(",".join(p for p in (base_labels, own) if p))
    for m in BY_SCOPE[scope]:
        lines: list[str] = []
        if m.kind == "info":
            for pfx, (_, _, info) in zip(prefixes, recs):
                extra = _label_block(m.labels, (info.get(k, "") for k in m.labels))
                lines.append(f"{m.name}{{{','.join(p for p in (pfx, extra) if p)}}} 1")
        else:
            key = m.key
            for pfx, (_, values, _) in zip(prefixes, recs):
                v = values.get(key)
                if v is not None:
                    lines.append(f"{m.name}{{{pfx}}} {format_value(v)}" if pfx else f"{m.name} {format_value(v)}")
        if lines:
            _header(out, m, openmetrics)
            out.extend(lines)


def _header(out: list[str], m: Metric, openmetrics: bool) -> None:
    if openmetrics:
        out.append(f"# HELP {m.family} {m.help}")
        out.append(f"# TYPE {m.family} {m.kind}")
    else:
        kind = "gauge" if m.kind == "info" else m.kind  # the text format has no info type
        out.append(f"# HELP {m.name} {m.help}")
        out.append(f"# TYPE {m.name} {kind}")


def render(snap: NodeSnapshot, *, openmetrics: bool = False, compat: Iterable[str] = ()) -> bytes:
    out: list[str] = []
    _native_lines(snap, openmetrics, out)
    render_compat(snap, compat, openmetrics, out)
    if openmetrics:
        out.append("# EOF")
    out.append("")
    return "\n".join(out).encode()
