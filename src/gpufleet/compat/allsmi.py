"""`--compat all-smi`: all-smi's all_smi_* names and units, as its API mode exports them."""

from __future__ import annotations

from ..scopes import gpu_ids
from ..snapshot import NodeSnapshot
from ..textformat import escape
from .base import CompatMode, families, render_families

FAMILIES = families(lambda m: m.allsmi)


def labels(snap: NodeSnapshot, scope: str, ids: tuple[str, ...]) -> str:
    inst = f'instance="{escape(snap.node)}"'
    if scope in ("gpu", "mig"):
        return f'gpu="{escape(ids[2])}",{inst},uuid="{escape(ids[1])}",index="{ids[0]}"'
    return inst


def render(snap: NodeSnapshot, openmetrics: bool, out: list[str]) -> None:
    render_families(snap, FAMILIES, labels, openmetrics, out)
    lines = [f'all_smi_gpu_info{{{labels(snap, "gpu", gpu_ids(g))},type="GPU"}} 1' for g in snap.gpus]
    if lines:
        out.append("# HELP all_smi_gpu_info GPU device information")
        out.append("# TYPE all_smi_gpu_info gauge")
        out.extend(lines)


MODE = CompatMode("all-smi's all_smi_* names and labels", render)
