"""all-smi: all_smi_* names through the catalogue's `allsmi` Compat entries; the vendor is
guessed from the model name (gpufleet/vendors.py).

Both label sets all-smi has used are read: `gpu_uuid` / `gpu_index` (v0.25, since 2026-04) and
`uuid` / `index` (before). all_smi_energy_consumed_joules_total carries no model (`gpu`) label;
its device is known by index from the other families."""

from __future__ import annotations

from ...promtext import Sample
from ...vendors import guess_vendor
from .builder import Builder, compat_index, finite, to_int

ALLSMI = compat_index("allsmi")


def _ids(labels: dict[str, str]) -> tuple[int | None, str]:
    index = labels.get("gpu_index", labels.get("index"))
    return to_int(index), labels.get("gpu_uuid", labels.get("uuid", ""))


def map_samples(samples: list[Sample], b: Builder) -> int:
    ignored = 0
    for name, labels, v in samples:
        if name == "all_smi_gpu_info":
            index, uuid = _ids(labels)
            if index is None:
                ignored += 1
                continue
            model = labels.get("gpu", "")
            g = b.gpu(index, uuid, model, guess_vendor(model))
            for key in ("driver_version", "pci_bus_id", "serial", "type"):
                if labels.get(key):
                    g.info[key] = labels[key]
            continue
        entry = ALLSMI.get(name)
        if entry is None or not finite(v):
            ignored += 1
            continue
        if labels.get("instance") and not b.host.hostname:
            b.host.hostname = labels["instance"]
        if "gpu" in entry:
            index, uuid = _ids(labels)
            if index is None:
                ignored += 1
                continue
            model = labels.get("gpu", "")
            m, inv = entry["gpu"]
            b.gpu(index, uuid, model, guess_vendor(model)).values[m.key] = inv(v)
        elif "node" in entry:
            m, inv = entry["node"]
            if m.key in b.values:  # several CPU sockets: the first row stands for the node
                ignored += 1
                continue
            b.values[m.key] = inv(v)
        else:
            ignored += 1
    for g in b.gpus.values():
        g.values.setdefault("up", 1.0)
        if not g.vendor or g.vendor == "unknown":
            g.vendor = guess_vendor(g.model)
    return ignored
