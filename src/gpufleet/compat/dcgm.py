"""`--compat dcgm`: dcgm-exporter's DCGM_FI_* names, units, types and labels.

Labels as dcgm-exporter writes them: `gpu` (index), `UUID`, `device` (nvidiaN), `modelName`,
`Hostname`, the driver version and PCI bus id where known; MIG rows add `GPU_I_PROFILE` and
`GPU_I_ID`. Energy and ECC totals are counters there, so they are here, although their names
lack `_total` (promtool's lint flags that for dcgm-exporter too)."""

from __future__ import annotations

from ..snapshot import NodeSnapshot
from ..textformat import escape
from .base import CompatMode, Labeller, families, has_counter_without_total, render_families

FAMILIES = families(lambda m: m.dcgm)


def labeller(snap: NodeSnapshot) -> Labeller:
    host = f'Hostname="{escape(snap.node)}"'
    # What follows the host: driver version and PCI bus id, per GPU index.
    tail: dict[str, str] = {}
    for g in snap.gpus:
        extra = ""
        if g.info.get("driver_version"):
            extra += f',DCGM_FI_DRIVER_VERSION="{escape(g.info["driver_version"])}"'
        if g.info.get("pci_bus_id"):
            extra += f',pci_bus_id="{escape(g.info["pci_bus_id"])}"'
        tail[str(g.index)] = extra

    def labels(name: str, scope: str, ids: tuple[str, ...]) -> str:
        gpu, uuid, model = ids[0], ids[1], ids[2]
        lbl = f'gpu="{gpu}",UUID="{escape(uuid)}",device="nvidia{gpu}",modelName="{escape(model)}"'
        if scope == "mig":
            lbl += f',GPU_I_PROFILE="{escape(ids[6])}",GPU_I_ID="{ids[4]}"'
        return f"{lbl},{host}{tail.get(gpu, '')}"

    return labels


def render(snap: NodeSnapshot, openmetrics: bool, out: list[str]) -> None:
    render_families(snap, FAMILIES, labeller(snap), openmetrics, out)


MODE = CompatMode("dcgm-exporter's DCGM_FI_* names, units, types and labels", render,
                  prefers_text=has_counter_without_total(FAMILIES))
