"""Compact per-node summaries for the fleet overview, and the deltas between two of them.

A summary is a flat dict of short keys, so the difference between two is a plain dict
comparison and a live update carries only the keys that changed. Values are rounded to
what the overview shows (integer %, °C, W, MiB): jitter below display precision is no
change, which keeps the deltas small. Keys (docs/ui.md lists them for API users):

  st status, ts snapshot time, c CPU %, m memory %, mt memory bytes, n GPU count,
  md GPU model, l labels, g<i> [util % (MIG: its instances'), mem used MiB, temp °C, power W, processes (null: unknown)],
  gm<i> GPU memory MiB, gu<i> users on GPU i ("alice,bob"), gd<i> 1 when GPU i is lost,
  sp why Prometheus' service discovery leaves the node out (only when it does).
"""

from __future__ import annotations

from typing import Any

from ...snapshot import gpu_busy_ratio
from ..fleet import NodeView
from ..sd import sd_problem

Summary = dict[str, Any]

MiB = 1024 * 1024


def pct(ratio: float | None) -> int | None:
    """A 0-1 ratio as the integer percent the UI shows (the tests compare against this)."""
    return None if ratio is None else int(round(ratio * 100))


def _int(x: float | None, scale: float = 1.0) -> int | None:
    return None if x is None else int(round(x / scale))


def node_summary(v: NodeView) -> Summary:
    s: Summary = {"st": v.status, "l": v.labels}
    problem = sd_problem(v)
    if problem:
        s["sp"] = problem
    snap = v.snapshot
    if snap is None:
        s["n"] = 0
        return s
    s["ts"] = round(snap.timestamp, 2)
    vals = snap.values
    s["c"] = pct(vals.get("cpu_utilization_ratio"))
    total = vals.get("memory_total_bytes")
    used = vals.get("memory_used_bytes")
    if total:
        s["mt"] = int(total)
        s["m"] = pct((used or 0.0) / total)
    s["n"] = len(snap.gpus)
    if snap.labels and not v.labels:
        s["l"] = snap.labels
    if snap.gpus:
        models = {g.model for g in snap.gpus}
        s["md"] = snap.gpus[0].model if len(models) == 1 else "mixed"
    for g in snap.gpus:
        gv = g.values
        i = g.index
        k = _KEYS[i] if 0 <= i < len(_KEYS) else (f"g{i}", f"gm{i}", f"gu{i}", f"gd{i}")
        # None when the driver could not list processes: unknown is not "no process".
        procs = g.processes
        nproc = len(procs) if procs else _int(gv.get("processes"))
        busy = gv.get("utilization_ratio")
        if busy is None:
            busy = gpu_busy_ratio(gv, (m.values for m in g.mig))  # MIG: from the instances
        used_mem, temp, power = gv.get("memory_used_bytes"), gv.get("temperature_celsius"), gv.get("power_watts")
        # pct() and _int() written out: this runs for every GPU of every changed node, 4 times a second
        s[k[0]] = [None if busy is None else int(round(busy * 100)),
                   None if used_mem is None else int(round(used_mem / MiB)),
                   None if temp is None else int(round(temp / 1.0)),
                   None if power is None else int(round(power / 1.0)), nproc]
        mem_total = gv.get("memory_total_bytes")
        if mem_total:
            s[k[1]] = int(round(mem_total / MiB))
        if procs:
            s[k[2]] = ",".join(sorted({p.user or "?" for p in procs}))
        if not g.up or gv.get("up") == 0:
            s[k[3]] = 1
    return s


_KEYS = [(f"g{i}", f"gm{i}", f"gu{i}", f"gd{i}") for i in range(64)]  # made once, not per GPU per summary


def diff(old: Summary, new: Summary) -> Summary:
    """Keys whose value changed, and None for keys that went away."""
    out = {k: val for k, val in new.items() if old.get(k, _MISSING) != val}
    for k in old:
        if k not in new:
            out[k] = None
    return out


_MISSING = object()
