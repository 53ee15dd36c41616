"""Physical memory and swap from /proc/meminfo."""

from __future__ import annotations

from .. import procfs
from ..snapshot import NodeSnapshot
from .base import CollectContext


# /proc/meminfo fields reported as they are.
_PLAIN = {"MemFree": "memory_free_bytes", "Buffers": "memory_buffers_bytes", "Cached": "memory_cached_bytes",
          "SReclaimable": "memory_slab_reclaimable_bytes"}


def memory_values(meminfo: dict[str, int]) -> dict[str, float]:
    total = meminfo["MemTotal"]
    available = meminfo.get("MemAvailable")
    if available is None:
        # Kernels before 3.14 lack MemAvailable; free + page cache is the classic estimate.
        available = meminfo.get("MemFree", 0) + meminfo.get("Buffers", 0) + meminfo.get("Cached", 0)
    available = min(available, total)
    swap_total = meminfo.get("SwapTotal", 0)
    swap_free = meminfo.get("SwapFree", swap_total)
    return {
        "memory_total_bytes": float(total),
        "memory_available_bytes": float(available),
        "memory_used_bytes": float(total - available),
        "swap_total_bytes": float(swap_total),
        "swap_used_bytes": float(max(0, swap_total - swap_free)),
        **{key: float(meminfo[name]) for name, key in _PLAIN.items() if name in meminfo},
    }


class MemoryCollector:
    name = "memory"

    def __init__(self, ctx: CollectContext) -> None:
        self._path = ctx.procfs / "meminfo"

    def collect(self, snap: NodeSnapshot) -> None:
        text = procfs.read_text(self._path)
        if text is None:
            raise RuntimeError(f"cannot read {self._path}")
        meminfo = procfs.parse_meminfo(text)
        if "MemTotal" not in meminfo:
            raise RuntimeError(f"{self._path} has no MemTotal")
        snap.values.update(memory_values(meminfo))
