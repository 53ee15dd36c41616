"""From parsed samples to a snapshot: which exporter it is, and its mapper."""

from __future__ import annotations

import time
from collections.abc import Iterable

from ...promtext import Sample
from ...snapshot import NodeSnapshot
from ..targets import Target
from . import allsmi, dcgm, gpufleet_text, node_exporter
from .builder import Builder
from .state import ScrapeState


def detect_kind(samples: Iterable[Sample]) -> str | None:
    """Exporter kind from metric names; gpufleet wins (lossless), then dcgm, all-smi, node_exporter."""
    found: set[str] = set()
    for name, _, _ in samples:
        if name.startswith("gpufleet_"):
            return "gpufleet"
        if name.startswith("DCGM_FI_"):
            found.add("dcgm")
        elif name.startswith("all_smi_"):
            found.add("all-smi")
        elif name.startswith("node_"):
            found.add("node_exporter")
    for kind in ("dcgm", "all-smi", "node_exporter"):
        if kind in found:
            return kind
    return None


def to_snapshot(target: Target, samples: list[Sample], kind: str | None = None,
                state: ScrapeState | None = None, now: float | None = None) -> NodeSnapshot:
    """Map parsed samples onto a NodeSnapshot for `target`; kind None/auto detects it."""
    if kind in (None, "auto"):
        kind = detect_kind(samples)
    b = Builder()
    if kind == "gpufleet":
        ignored = gpufleet_text.map_samples(samples, b)
    elif kind == "dcgm":
        ignored = dcgm.map_samples(samples, b)
    elif kind == "all-smi":
        ignored = allsmi.map_samples(samples, b)
    elif kind == "node_exporter":
        ignored = node_exporter.map_samples(samples, b, state)
    else:
        kind, ignored = "unknown", len(samples)
    if b.gpus and "gpus" not in b.values:
        b.values["gpus"] = float(len(b.gpus))
    if state is not None:
        state.samples = len(samples)
        state.ignored = ignored
    return b.finish(target, kind, time.time() if now is None else now)


def from_agent_json(target: Target, snap: NodeSnapshot) -> NodeSnapshot:
    """An agent's own snapshot, renamed to the target's node and given the target's labels."""
    snap.backend = f"pull:gpufleet/{snap.backend}" if snap.backend else "pull:gpufleet"
    snap.node = target.node
    snap.labels = {**snap.labels, **target.labels}
    return snap
