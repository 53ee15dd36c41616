"""The in-memory head: recent samples of each node, not yet in a block.

A node's pushes usually carry the same series list every time, so the head
keeps, per node, "segments": a fixed series list (the schema) and a growing
rows x series float64 matrix plus a timestamp vector.  Appending a push is one
row copy; a new segment starts only when the node's series list changes.
"""
from __future__ import annotations

import numpy as np

from .rollup import Grid


class Segment:
    # gen: the WAL generation holding this segment's schema record (-1: none
    # known); a push into a newer generation writes the schema there first, so
    # every generation replays on its own once older ones are deleted.
    __slots__ = ("schema_id", "keys", "sids", "ts", "buf", "n", "_col", "gen", "since_schema")

    def __init__(self, schema_id: int, keys: tuple[object, ...], sids: np.ndarray, capacity: int = 16) -> None:
        self.schema_id = schema_id
        self.keys = keys
        self.sids = sids
        self.ts = np.empty(capacity, np.float64)
        self.buf = np.empty((capacity, sids.size), np.float64)
        self.n = 0
        self._col: dict[int, int] | None = None
        self.gen = -1
        self.since_schema = 0  # data records since its schema record was last written

    def _grow(self, need: int) -> None:
        cap = max(need, 2 * self.ts.size)
        ts = np.empty(cap, np.float64)
        ts[: self.n] = self.ts[: self.n]
        buf = np.empty((cap, self.sids.size), np.float64)
        buf[: self.n] = self.buf[: self.n]
        self.ts, self.buf = ts, buf

    def append(self, ts: float, values: np.ndarray) -> None:
        n = self.n
        if n == self.ts.size:
            self._grow(n + 1)
        self.ts[n] = ts
        self.buf[n] = values
        self.n = n + 1

    def append_rows(self, ts: np.ndarray, rows: np.ndarray) -> None:
        n, m = self.n, ts.size
        if n + m > self.ts.size:
            self._grow(n + m)
        self.ts[n : n + m] = ts
        self.buf[n : n + m] = rows
        self.n = n + m

    def column(self, sid: int) -> int | None:
        if self._col is None:
            self._col = {int(s): i for i, s in enumerate(self.sids)}
        return self._col.get(sid)


class NodeState:
    """Per-node ingest state: dedup clock, head segments, last push."""

    __slots__ = ("nid", "name", "last_ts", "segments", "cur", "samples")

    def __init__(self, nid: int, name: str, last_ts: float = float("-inf")) -> None:
        self.nid = nid
        self.name = name
        self.last_ts = last_ts
        self.segments: list[Segment] = []
        self.cur: Segment | None = None
        self.samples = 0

    def clear_head(self) -> None:
        self.segments = []
        self.cur = None
        self.samples = 0

    def first_ts(self) -> float | None:
        for seg in self.segments:
            if seg.n:
                return float(seg.ts[0])
        return None

    def grid(self) -> Grid | None:
        segs = [s for s in self.segments if s.n]
        if not segs:
            return None
        if len(segs) == 1:
            s = segs[0]
            order = np.argsort(s.sids)
            return s.ts[: s.n].copy(), s.sids[order], [s.buf[: s.n][:, order]]
        sids = np.unique(np.concatenate([s.sids for s in segs]))
        total = sum(s.n for s in segs)
        ts = np.concatenate([s.ts[: s.n] for s in segs])
        out = np.full((total, sids.size), np.nan)
        row = 0
        for s in segs:
            out[row : row + s.n, np.searchsorted(sids, s.sids)] = s.buf[: s.n]
            row += s.n
        return ts, sids, [out]

    def series(self, sid: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Head samples of one series (NaN = absent are dropped)."""
        ts_parts, v_parts = [], []
        for s in self.segments:
            if not s.n:
                continue
            col = s.column(sid)
            if col is None:
                continue
            ts_parts.append(s.ts[: s.n])
            v_parts.append(s.buf[: s.n, col])
        if not ts_parts:
            return None
        ts = np.concatenate(ts_parts)
        v = np.concatenate(v_parts)
        keep = ~np.isnan(v)
        return ts[keep], v[keep]
