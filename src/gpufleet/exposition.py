"""Render a NodeSnapshot as Prometheus text (0.0.4) or OpenMetrics (1.0.0).

Driven entirely by the catalogue: each metric's scope says which snapshot records carry
it and which identity labels they have. Rendering happens once per collection (the agent
caches the bytes), so this favours clarity over micro-optimisation, but it still avoids
per-sample allocations where it is easy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .catalogue import BY_SCOPE, CATALOGUE, Compat, Metric
from .scopes import COMMAND_LABEL_MAX as COMMAND_LABEL_MAX  # re-exported
from .scopes import Record, records  # what a snapshot holds per scope, and each record's labels
from .scopes import gpu_ids as _gpu_ids
from .snapshot import NodeSnapshot

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

COMPAT_MODES = ("dcgm", "all-smi")

_EMPTY: dict[str, str] = {}


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


def _label_block(names: tuple[str, ...], values: Iterable[str]) -> str:
    return ",".join(f'{n}="{escape(v)}"' for n, v in zip(names, values))


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


# --- compatibility names ---------------------------------------------------------------------


def _dcgm_labels(snap: NodeSnapshot, scope: str, ids: tuple[str, ...], gpu_info: dict[str, str]) -> str:
    gpu, uuid, model = ids[0], ids[1], ids[2]
    parts = [
        f'gpu="{gpu}"', f'UUID="{escape(uuid)}"', f'device="nvidia{gpu}"', f'modelName="{escape(model)}"',
    ]
    if scope == "mig":
        parts.append(f'GPU_I_PROFILE="{escape(ids[6])}"')
        parts.append(f'GPU_I_ID="{ids[4]}"')
    parts.append(f'Hostname="{escape(snap.node)}"')
    if gpu_info.get("driver_version"):
        parts.append(f'DCGM_FI_DRIVER_VERSION="{escape(gpu_info["driver_version"])}"')
    if gpu_info.get("pci_bus_id"):
        parts.append(f'pci_bus_id="{escape(gpu_info["pci_bus_id"])}"')
    return ",".join(parts)


def _allsmi_labels(snap: NodeSnapshot, scope: str, ids: tuple[str, ...]) -> str:
    inst = f'instance="{escape(snap.node)}"'
    if scope in ("gpu", "mig"):
        return f'gpu="{escape(ids[2])}",{inst},uuid="{escape(ids[1])}",index="{ids[0]}"'
    return inst


def _compat_lines(snap: NodeSnapshot, mode: str, openmetrics: bool, out: list[str]) -> None:
    # Several of our metrics can share one foreign name (DCGM_FI_DEV_FB_USED is reported for
    # whole GPUs and MIG instances alike), so group by the foreign name first.
    groups: dict[str, list[tuple[Metric, Compat]]] = {}
    for m in CATALOGUE:
        c = m.dcgm if mode == "dcgm" else m.allsmi
        if c is not None:
            groups.setdefault(c.name, []).append((m, c))
    gpu_info = {str(g.index): g.info for g in snap.gpus}
    for name, members in groups.items():
        lines: list[str] = []
        for m, c in members:
            for ids, values, _ in records(snap, m.scope):
                v = values.get(m.key)
                if v is None:
                    continue
                if mode == "dcgm":
                    lbl = _dcgm_labels(snap, m.scope, ids, gpu_info.get(ids[0], _EMPTY))
                else:
                    lbl = _allsmi_labels(snap, m.scope, ids)
                lines.append(f"{name}{{{lbl}}} {format_value(v * c.scale)}")
        if lines:
            # Declared as gauges: their names lack `_total`, so a counter type would be
            # rejected by promtool's lint; PromQL's rate() works on either.
            out.append(f"# HELP {name} {members[0][1].help}")
            out.append(f"# TYPE {name} gauge")
            out.extend(lines)
    if mode == "all-smi":
        lines = [
            f'all_smi_gpu_info{{{_allsmi_labels(snap, "gpu", _gpu_ids(g))},type="GPU"}} 1' for g in snap.gpus
        ]
        if lines:
            out.append("# HELP all_smi_gpu_info GPU device information")
            out.append("# TYPE all_smi_gpu_info gauge")
            out.extend(lines)


def render(snap: NodeSnapshot, *, openmetrics: bool = False, compat: Iterable[str] = ()) -> bytes:
    out: list[str] = []
    _native_lines(snap, openmetrics, out)
    for mode in compat:
        _compat_lines(snap, mode, openmetrics, out)
    if openmetrics:
        out.append("# EOF")
    out.append("")
    return "\n".join(out).encode()


def parse_compat(value: str | Iterable[str]) -> tuple[str, ...]:
    """'dcgm,all-smi' -> ('dcgm', 'all-smi'); unknown modes raise ValueError naming them."""
    items = value.split(",") if isinstance(value, str) else list(value)
    modes = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    for mode in modes:
        if mode not in COMPAT_MODES:
            raise ValueError(f"unknown compat mode {mode!r}; choose from: {', '.join(COMPAT_MODES)}")
    return modes
