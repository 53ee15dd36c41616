"""Downsampling and grid merging, vectorised over all series of a node.

A "grid" is a node's data as ``ts (rows,)``, ``sids (n,)`` and a list of
``rows x n`` float arrays with NaN for "no sample".  Raw grids have one
column; rollup grids have five: min, max, sum, count, last.  Rollup rows of
the same bucket coming from different blocks (a bucket split by a head cut)
are combined associatively: min of mins, max of maxes, sum+sum, count+count,
and the later block's last.
"""
from __future__ import annotations

import numpy as np

Grid = tuple[np.ndarray, np.ndarray, list[np.ndarray]]

# Sums of decimal values pick up binary rounding noise (0.1+0.2); rounding the
# sum to 1e-6 keeps it exactly decimal so the codec stores it compactly.
_SUM_DECIMALS = 6
_SUM_ROUND_LIMIT = 1e9


def _clean_sum(s: np.ndarray) -> np.ndarray:
    small = np.abs(s) < _SUM_ROUND_LIMIT
    return np.where(small, np.round(s, _SUM_DECIMALS), s)


def group_starts(keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted 1-D array."""
    if keys.size == 0:
        return np.zeros(0, np.intp)
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def _last_valid(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per group and column, the last non-NaN value (NaN if none)."""
    rows = values.shape[0]
    idx = np.where(np.isnan(values), -1, np.arange(rows)[:, None])
    last_idx = np.maximum.reduceat(idx, starts, axis=0)
    cols = np.broadcast_to(np.arange(values.shape[1]), last_idx.shape)
    out: np.ndarray = values[np.clip(last_idx, 0, None), cols]
    out[last_idx < 0] = np.nan
    return out


def rollup_grid(ts: np.ndarray, grid: np.ndarray, width: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Raw grid (rows x n) -> bucket start times and [min, max, sum, count, last]."""
    buckets = np.floor(ts / width) * width
    starts = group_starts(buckets)
    valid = ~np.isnan(grid)
    with np.errstate(invalid="ignore"):
        mn = np.fmin.reduceat(grid, starts, axis=0)
        mx = np.fmax.reduceat(grid, starts, axis=0)
    count = np.add.reduceat(valid.astype(np.float64), starts, axis=0)
    total = _clean_sum(np.add.reduceat(np.where(valid, grid, 0.0), starts, axis=0))
    last = _last_valid(grid, starts)
    empty = count == 0
    total[empty] = np.nan
    count[empty] = np.nan
    return buckets[starts], [mn, mx, total, count, last]


def merge_rollup_rows(ts: np.ndarray, cols: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Combine rows with equal bucket time; rows must be in write order per bucket."""
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    cols = [c[order] for c in cols]
    starts = group_starts(ts)
    if starts.size == ts.size:
        return ts, cols
    mn, mx, sm, ct, last = cols
    with np.errstate(invalid="ignore"):
        mn = np.fmin.reduceat(mn, starts, axis=0)
        mx = np.fmax.reduceat(mx, starts, axis=0)
    has = ~np.isnan(ct)
    cnt = np.add.reduceat(np.where(has, ct, 0.0), starts, axis=0)
    tot = _clean_sum(np.add.reduceat(np.where(has, sm, 0.0), starts, axis=0))
    last = _last_valid(last, starts)
    empty = cnt == 0
    cnt[empty] = np.nan
    tot[empty] = np.nan
    return ts[starts], [mn, mx, tot, cnt, last]


def concat_grids(parts: list[Grid], ncols: int) -> Grid:
    """Stack grids (in write order) over the union of their series."""
    sids = np.unique(np.concatenate([p[1] for p in parts]))
    total = sum(p[0].size for p in parts)
    ts = np.concatenate([p[0] for p in parts])
    out = [np.full((total, sids.size), np.nan) for _ in range(ncols)]
    row = 0
    for pts, psids, pcols in parts:
        cols_idx = np.searchsorted(sids, psids)
        for o, c in zip(out, pcols):
            o[row : row + pts.size, cols_idx] = c
        row += pts.size
    return ts, sids, out


def merge_grids(parts: list[Grid], res: int) -> Grid:
    """Merge a node's grids from several blocks into one, ordered by time."""
    ncols = 1 if res == 0 else 5
    ts, sids, cols = concat_grids(parts, ncols)
    if res == 0:
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        cols = [c[order] for c in cols]
        # Per-node appends are strictly increasing, so equal times only appear
        # if a block was written twice; keep the later copy.
        keep = np.concatenate((ts[1:] != ts[:-1], [True])) if ts.size else np.zeros(0, bool)
        return ts[keep], sids, [c[keep] for c in cols]
    ts, cols = merge_rollup_rows(ts, cols)
    return ts, sids, cols
