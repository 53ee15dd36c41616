"""Step aggregation of one series' samples or rollup rows onto a query grid.

Output point i stands for the bin [start + i*step, start + (i+1)*step), for i
from 0 while start + i*step <= end; bins without data are left out.  Rollup
rows are binned by their bucket start, so a bin's avg is sum(sum)/sum(count):
exact, not an average of averages.
"""
from __future__ import annotations

import math

import numpy as np

from .rollup import group_starts
from .types import AGGS, RAW


def validate_range(start: float, end: float, step: float, agg: str) -> int:
    """Check query arguments; return the number of bins."""
    for name, x in (("start", start), ("end", end), ("step", step)):
        if not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ValueError(f"query {name} must be a finite number, got {x!r}")
    if step <= 0:
        raise ValueError(f"query step must be > 0, got {step}")
    if end < start:
        raise ValueError(f"query end {end} is before start {start}")
    if agg not in AGGS:
        raise ValueError(f"agg must be one of {sorted(AGGS)}, got {agg!r}")
    nbins = int((end - start) // step) + 1
    if nbins > 1_000_000:
        raise ValueError(f"query asks for {nbins} points; use a larger step")
    return nbins


def aggregate(ts: np.ndarray, cols: list[np.ndarray], res: int, start: float, step: float,
              nbins: int, agg: str) -> tuple[np.ndarray, np.ndarray]:
    """Bin time-sorted rows; cols is [value] for raw, [min, max, sum, count, last] for rollups."""
    idx = np.floor((ts - start) / step).astype(np.int64)
    sel = (idx >= 0) & (idx < nbins)
    if not sel.all():
        idx = idx[sel]
        cols = [c[sel] for c in cols]
    if idx.size == 0:
        return np.zeros(0), np.zeros(0)
    starts = group_starts(idx)
    out_ts = start + idx[starts].astype(np.float64) * step
    if res == RAW:
        v = cols[0]
        if agg == "avg":
            counts = np.diff(np.append(starts, v.size))
            out = np.add.reduceat(v, starts) / counts
        elif agg == "max":
            out = np.maximum.reduceat(v, starts)
        elif agg == "min":
            out = np.minimum.reduceat(v, starts)
        else:
            out = v[np.append(starts[1:], v.size) - 1]
        return out_ts, out
    mn, mx, sm, ct, last = cols
    if agg == "avg":
        out = np.add.reduceat(sm, starts) / np.add.reduceat(ct, starts)
    elif agg == "max":
        out = np.maximum.reduceat(mx, starts)
    elif agg == "min":
        out = np.minimum.reduceat(mn, starts)
    else:
        out = last[np.append(starts[1:], last.size) - 1]
    return out_ts, out


def choose_resolution(start: float, step: float, now: float, retention: dict[int, float],
                      resolutions: tuple[int, ...]) -> int:
    """Coarsest resolution with >= 1 point per step whose retention still reaches start.

    If no resolution that dense reaches back far enough, the finest one that
    does is used (fewer points beat no points); failing that the coarsest.
    """
    coarse_first = sorted(resolutions, reverse=True)

    def covers(res: int) -> bool:
        return start >= now - retention[res]

    for res in coarse_first:
        if res <= step and covers(res):
            return res
    for res in reversed(coarse_first):
        if covers(res):
            return res
    return coarse_first[0]
