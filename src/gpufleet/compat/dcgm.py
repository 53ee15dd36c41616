"""`--compat dcgm`: dcgm-exporter's DCGM_FI_* names, units, types and labels.

Labels as dcgm-exporter writes them: `gpu` (index), `UUID`, `device` (nvidiaN), `modelName`,
`Hostname`, the driver version and PCI bus id where known; MIG rows add `GPU_I_PROFILE` and
`GPU_I_ID`. Energy and ECC totals are counters there, so they are here, although their names
lack `_total` (promtool's lint flags that for dcgm-exporter too)."""

from __future__ import annotations

from ..snapshot import NodeSnapshot
from ..textformat import escape
from .base import CompatMode, families, has_counter_without_total, render_families

FAMILIES = families(lambda m: m.dcgm)


def labels(snap: NodeSnapshot, scope: str, ids: tuple[str, ...]) -> str:
    gpu, uuid, model = ids[0], ids[1], ids[2]
    parts = [f'gpu="{gpu}"', f'UUID="{escape(uuid)}"', f'device="nvidia{gpu}"', f'modelName="{escape(model)}"']
    if scope == "mig":
        parts.append(f'GPU_I_PROFILE="{escape(ids[6])}"')
        parts.append(f'GPU_I_ID="{ids[4]}"')
    parts.append(f'Hostname="{escape(snap.node)}"')
    info = next((g.info for g in snap.gpus if str(g.index) == gpu), None)
    if info:
        if info.get("driver_version"):
            parts.append(f'DCGM_FI_DRIVER_VERSION="{escape(info["driver_version"])}"')
        if info.get("pci_bus_id"):
            parts.append(f'pci_bus_id="{escape(info["pci_bus_id"])}"')
    return ",".join(parts)


def render(snap: NodeSnapshot, openmetrics: bool, out: list[str]) -> None:
    render_families(snap, FAMILIES, labels, openmetrics, out)


MODE = CompatMode("dcgm-exporter's DCGM_FI_* names, units, types and labels", render,
                  prefers_text=has_counter_without_total(FAMILIES))
