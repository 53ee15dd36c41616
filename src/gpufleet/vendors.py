"""Accelerator vendors and their backends: the one table a new vendor is added to.

Each entry names a vendor as snapshots spell it (`Gpu.vendor`), the words that give it away in
a model name (for exporters, such as all-smi, that report a model but no vendor), and, when
gpufleet can read its devices itself, the backend: its `--backend` name, a title for the
agent's log and the class to build, named as "module:Class" so the module is imported only
when chosen (a broken vendor library never stops the others loading, and the hub, which reads
this table to name vendors, never imports backend code).

A new vendor backend is one file under backends/ and one entry here. `--backend auto` tries the
entries with `auto=True`, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Vendor:
    vendor: str  # as Gpu.vendor spells it
    brand: str  # as people write it: "NVIDIA"
    model_words: tuple[str, ...]  # lower-case words in model names that mean this vendor
    backend: str = ""  # --backend name; "" when gpufleet has no backend for it (pulled only)
    library: str = ""  # what the backend opens, for the agent's log: "NVML"
    factory: str = ""  # "module:Class", built with no arguments
    auto: bool = False  # tried by --backend auto

    @property
    def title(self) -> str:
        return f"{self.brand} ({self.library})"


VENDORS: tuple[Vendor, ...] = (
    Vendor("nvidia", "NVIDIA", ("nvidia", "geforce", "tesla", "quadro", "jetson"),
           backend="nvml", library="NVML", factory="gpufleet.backends.nvml:NvmlBackend", auto=True),
    Vendor("amd", "AMD", ("amd", "radeon", "instinct"),
           backend="amdsmi", library="AMD SMI", factory="gpufleet.backends.amdsmi:AmdSmiBackend", auto=True),
    Vendor("apple", "Apple", ("apple",)),
    Vendor("intel", "Intel", ("gaudi", "intel", "habana")),
    Vendor("google", "Google", ("tpu", "google")),
    Vendor("tenstorrent", "Tenstorrent", ("tenstorrent",)),
    Vendor("furiosa", "FuriosaAI", ("furiosa", "rngd")),
    Vendor("rebellions", "Rebellions", ("rebellions",)),
)

BY_BACKEND: dict[str, Vendor] = {v.backend: v for v in VENDORS if v.backend}
# Every --backend value: auto, the vendors', all-smi (any vendor, through a local all-smi), then the
# simulator and none (see backends/__init__.py).
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BY_BACKEND, "all-smi", "sim", "none")


def guess_vendor(model: str) -> str:
    """The vendor a model name gives away ('NVIDIA H100' -> 'nvidia'), else 'unknown'."""
    low = model.lower()
    for v in VENDORS:
        if any(word in low for word in v.model_words):
            return v.vendor
    return "unknown"
