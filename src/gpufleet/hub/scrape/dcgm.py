"""dcgm-exporter: DCGM_FI_* names through the catalogue's `dcgm` Compat entries
(value_ours = value_theirs / scale); MIG rows (GPU_I_ID) become MigInstance records."""

from __future__ import annotations

from ...promtext import Sample
from .builder import Builder, compat_index, finite, to_int

DCGM = compat_index("dcgm")
# Framebuffer fields that make up a device's total memory; only USED/FREE are in the catalogue.
FB_USED, FB_FREE = "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"
FB_RESERVED, FB_TOTAL = "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_FB_TOTAL"
_MIB = 1024.0 * 1024.0


def map_samples(samples: list[Sample], b: Builder) -> int:
    ignored = 0
    # Raw framebuffer MiB per (gpu index, GPU instance or -1) to derive total memory afterwards.
    fb: dict[tuple[int, int], dict[str, float]] = {}
    for name, labels, v in samples:
        entry = DCGM.get(name)
        is_fb = name in (FB_RESERVED, FB_TOTAL)
        if (entry is None and not is_fb) or not finite(v):
            ignored += 1
            continue
        index = to_int(labels.get("gpu"))
        if index is None:
            ignored += 1
            continue
        g = b.gpu(index, labels.get("UUID", ""), labels.get("modelName", ""), "nvidia")
        if "DCGM_FI_DRIVER_VERSION" in labels and "driver_version" not in g.info:
            g.info["driver_version"] = labels["DCGM_FI_DRIVER_VERSION"]
        if labels.get("pci_bus_id") and "pci_bus_id" not in g.info:
            g.info["pci_bus_id"] = labels["pci_bus_id"]
        if labels.get("Hostname") and not b.host.hostname:
            b.host.hostname = labels["Hostname"]
        gi = to_int(labels.get("GPU_I_ID")) if labels.get("GPU_I_ID") else None
        if name in (FB_USED, FB_FREE, FB_RESERVED, FB_TOTAL):
            fb.setdefault((index, -1 if gi is None else gi), {})[name] = v
        if entry is None:
            continue
        if gi is not None:
            mig = b.mig(g, gi, 0, labels.get("GPU_I_PROFILE", ""))
            if "mig" in entry:
                m, inv = entry["mig"]
                mig.values[m.key] = inv(v)
                continue
            # A device-wide field reported on a MIG row (temperature, power, ...) is the
            # parent GPU's reading: keep it there, once. The instance's FB_FREE only feeds
            # its total above.
            if "gpu" in entry and name != FB_FREE:
                m, inv = entry["gpu"]
                g.values.setdefault(m.key, inv(v))
            continue
        if "gpu" in entry:
            m, inv = entry["gpu"]
            g.values[m.key] = inv(v)
        else:
            ignored += 1
    for (index, gi), f in fb.items():
        if FB_TOTAL in f:
            total = f[FB_TOTAL]
        elif FB_USED in f and FB_FREE in f:
            # nvidia-smi's total is used + free + reserved (driver-reserved memory, newer DCGM).
            total = f[FB_USED] + f[FB_FREE] + f.get(FB_RESERVED, 0.0)
        else:
            continue
        g = b.gpus[index]
        if gi < 0:
            g.values["memory_total_bytes"] = total * _MIB
        else:
            for mig in g.mig:
                if mig.gpu_instance == gi:
                    mig.values["memory_total_bytes"] = total * _MIB
    for g in b.gpus.values():
        g.values.setdefault("up", 1.0)
        if g.mig:
            g.values["mig_instances"] = float(len({m.gpu_instance for m in g.mig}))
    return ignored
