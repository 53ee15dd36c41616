"""A job's utilisation and memory over its life, one line per slot it held (the job page's
charts and GET /api/v1/jobs/{key}'s `series`).

A whole GPU's line is its own readings. A MIG slice's line is the slice's own: NVML gives
no whole-GPU utilisation with MIG on, so a MIG holder's GPU utilisation would be an empty
line. Its activity is the busiest compute instance of its GPU instance (as settling and the
agent's allocation collector count a slice busy); its memory the instance's memory used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...catalogue import name_of
from ...syntax import Matcher
from .settle import Query

# (utilisation metric, memory metric) of a whole GPU and of a MIG instance, from the catalogue
WHOLE = (name_of("gpu", "utilization_ratio"), name_of("gpu", "memory_used_bytes"))
MIG = (name_of("mig", "graphics_engine_active_ratio"), name_of("mig", "memory_used_bytes"))
MAX_SLOTS = 64  # lines in one answer: a bigger job's first 64 slots (node, GPU, slice order)
MAX_POINTS = 2000


def merged(results: Sequence[tuple[dict[str, str], Any, list[float]]]) -> dict[str, list[float | None]]:
    """Several series of one slot (a slice's compute instances, a GPU replaced under its index)
    as one line: the highest reading at each time, NaN left out."""
    best: dict[float, float] = {}
    for _, ts, values in results:
        for t, v in zip((float(t) for t in ts), values):
            if math.isnan(v):
                continue
            old = best.get(t)
            best[t] = v if old is None or v > old else old
    times = sorted(best)
    return {"timestamps": [*times], "values": [best[t] for t in times]}


def label(node: str, gpu: int, gpu_instance: int | None, profile: str) -> str:
    """What a user reads beside a line: 'n1 GPU 0', or 'n1 GPU 0 / MIG 1 (2g.20gb)'."""
    if gpu_instance is None:
        return f"{node} GPU {gpu}"
    return f"{node} GPU {gpu} / MIG {gpu_instance}" + (f" ({profile})" if profile else "")


def slots(job: dict[str, Any]) -> list[tuple[str, int, int | None]]:
    """(node, GPU, GPU instance or None for the whole GPU) of every slot the job held."""
    out: list[tuple[str, int, int | None]] = []
    for g in job["gpus"]:
        out += [(g["node"], g["gpu"], gi) for gi in g["slices"]] or [(g["node"], g["gpu"], None)]
    return out


def job_series(query: Query, job: dict[str, Any], start: float, end: float, points: int) -> dict[str, Any]:
    """{start, end, step, slots: [{node, gpu, gpu_instance, profile, label, utilization,
    memory_used_bytes}]}; each line {timestamps, values} in query_range's form (avg per step)."""
    step = max(1.0, (end - start) / max(1, min(points, MAX_POINTS)))
    out = []
    for node, gpu, gi in slots(job)[:MAX_SLOTS]:
        match = [Matcher("node", "=", node), Matcher("gpu", "=", str(gpu))]
        if gi is not None:
            match.append(Matcher("gpu_instance", "=", str(gi)))
        util_m, mem_m = WHOLE if gi is None else MIG
        util = query(util_m, match, start, end, step, "avg")
        mem = query(mem_m, match, start, end, step, "avg")
        profile = next((r[0].get("profile", "") for r in [*util, *mem] if r[0].get("profile")), "")
        out.append({"node": node, "gpu": gpu, "gpu_instance": gi, "profile": profile,
                    "label": label(node, gpu, gi, profile),
                    "utilization": merged(util), "memory_used_bytes": merged(mem)})
    return {"start": start, "end": end, "step": step, "slots": out}
