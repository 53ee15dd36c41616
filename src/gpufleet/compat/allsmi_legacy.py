"""`--compat all-smi-legacy`: all-smi's names with the per-device labels it used until 2026-04
(`gpu`, `instance`, `uuid`, `index`; host series labelled `instance` only), for dashboards
written before all-smi renamed them to `gpu_uuid` / `gpu_index` (allsmi.py)."""

from __future__ import annotations

from ..snapshot import NodeSnapshot
from .allsmi import render_mode
from .base import CompatMode


def render(snap: NodeSnapshot, openmetrics: bool, out: list[str]) -> None:
    render_mode(snap, openmetrics, out, legacy=True)


MODE = CompatMode("all-smi's names with its labels before 2026-04 (uuid, index)", render, names="all_smi")
