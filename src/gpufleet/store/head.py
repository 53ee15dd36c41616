"""The in-memory head: recent samples of each node, not yet in a block.

A node's pushes usually carry the same series list every time, so the head
keeps, per node, "segments": a fixed series list (the schema) and a growing
rows x series float64 matrix plus a timestamp vector.  Appending a push is one
row copy; a new segment starts only when the node's series list changes.
"""
from __future__ import annotations

import numpy as np

from .rollup import Grid


class Schema:
    """One series list a node pushes (its WAL schema record) and where its columns sit in the head.

    A node's series list changes as users and processes come and go, and often goes back to
    an earlier one: every list seen recently is kept, so a push in a known shape finds its
    schema (by identity, as the hub reuses its key tuples) instead of starting a segment.
    """

    # gen: the WAL generation holding this schema's record (-1: none known); a push into a
    # newer generation writes the record there first, so every generation replays on its own
    # once older ones are deleted.
    __slots__ = ("schema_id", "keys", "sids", "gen", "since_schema", "seg", "cols")

    def __init__(self, schema_id: int, keys: tuple[object, ...], sids: np.ndarray) -> None:
        self.schema_id = schema_id
        self.keys = keys
        self.sids = sids
        self.gen = -1
        self.since_schema = 0  # data records since its schema record was last written
        self.seg: Segment | None = None  # the segment `cols` refers to
        self.cols: np.ndarray | None = None  # column of each sid there; None: the first len(sids)


class Segment:
    """The head of one node: rows x series float64 (NaN = absent) and a timestamp vector.

    Its columns are the union of every series list pushed since the last cut (new series
    add a column, earlier rows NaN), so switching between shapes costs no new buffer.
    """

    __slots__ = ("sids", "ts", "buf", "n", "_col")

    def __init__(self, sids: np.ndarray, capacity: int = 12) -> None:
        self.sids = sids
        self.ts = np.empty(capacity, np.float64)
        self.buf = np.empty((capacity, sids.size), np.float64)
        self.n = 0
        self._col: dict[int, int] | None = None

    def _grow(self, need: int) -> None:
        # A quarter more (at least a minute of 5 s pushes), not double: the head of 1,000
        # nodes is hundreds of MB, and doubling left up to half of it allocated but unused.
        # Still amortised O(1) per row; a bulk append takes what it needs.
        cap = max(need, self.ts.size + max(12, self.ts.size // 4))
        ts = np.empty(cap, np.float64)
        ts[: self.n] = self.ts[: self.n]
        buf = np.empty((cap, self.sids.size), np.float64)
        buf[: self.n] = self.buf[: self.n]
        self.ts, self.buf = ts, buf

    def columns_for(self, sids: np.ndarray) -> np.ndarray | None:
        """Columns of `sids` here (None: they are the first len(sids)), adding missing ones."""
        have = self.sids
        if sids is have or (sids.size <= have.size and np.array_equal(sids, have[: sids.size])):
            return None
        col = self._colmap()
        missing = [s for s in sids.tolist() if s not in col]
        if missing:
            old = have.size
            self.sids = np.concatenate([have, np.array(missing, np.int64)])
            buf = np.empty((self.ts.size, self.sids.size), np.float64)
            buf[: self.n, :old] = self.buf[: self.n]
            buf[: self.n, old:] = np.nan  # absent before this push
            self.buf = buf
            self._col = None
            col = self._colmap()
            if np.array_equal(sids, self.sids[: sids.size]):
                return None
        return np.array([col[s] for s in sids.tolist()], np.intp)

    def append(self, ts: float, values: np.ndarray, cols: np.ndarray | None = None) -> None:
        n = self.n
        if n == self.ts.size:
            self._grow(n + 1)
        self.ts[n] = ts
        row = self.buf[n]
        if cols is None:
            k = values.size
            row[:k] = values
            if k < row.size:
                row[k:] = np.nan
        else:
            if cols.size < row.size:
                row[:] = np.nan
            row[cols] = values
        self.n = n + 1

    def append_rows(self, ts: np.ndarray, rows: np.ndarray, cols: np.ndarray | None = None) -> None:
        n, m = self.n, ts.size
        if n + m > self.ts.size:
            self._grow(n + m)
        self.ts[n : n + m] = ts
        block = self.buf[n : n + m]
        if cols is None:
            k = rows.shape[1]
            block[:, :k] = rows
            if k < block.shape[1]:
                block[:, k:] = np.nan
        else:
            if cols.size < block.shape[1]:
                block[:] = np.nan
            block[:, cols] = rows
        self.n = n + m

    def _colmap(self) -> dict[int, int]:
        if self._col is None:
            self._col = {int(s): i for i, s in enumerate(self.sids)}
        return self._col

    def column(self, sid: int) -> int | None:
        return self._colmap().get(sid)


class NodeState:
    """Per-node ingest state: dedup clock, head segments, last push."""

    __slots__ = ("nid", "name", "last_ts", "segments", "cur", "samples", "schemas", "sch")

    MAX_SCHEMAS = 16  # series lists remembered per node (older ones are declared again if back)

    def __init__(self, nid: int, name: str, last_ts: float = float("-inf")) -> None:
        self.nid = nid
        self.name = name
        self.last_ts = last_ts
        self.segments: list[Segment] = []
        self.cur: Segment | None = None
        self.samples = 0
        self.schemas: list[Schema] = []  # most recently used first
        self.sch: Schema | None = None  # the last one used

    def find_schema(self, keys: tuple[object, ...]) -> Schema | None:
        for sch in self.schemas:  # identity first: the hub hands back the same tuples
            if sch.keys is keys:
                return sch
        for sch in self.schemas:
            if len(sch.keys) == len(keys) and sch.keys == keys:
                return sch
        return None

    def schema_by_id(self, schema_id: int) -> Schema | None:
        for sch in self.schemas:
            if sch.schema_id == schema_id:
                return sch
        return None

    def use_schema(self, sch: Schema) -> None:
        """Make `sch` current and most recent; forget the least recent beyond MAX_SCHEMAS."""
        if not self.schemas or self.schemas[0] is not sch:
            if sch in self.schemas:
                self.schemas.remove(sch)
            self.schemas.insert(0, sch)
            del self.schemas[self.MAX_SCHEMAS:]
        self.sch = sch

    def head_for(self, sch: Schema) -> tuple[Segment, np.ndarray | None]:
        """The head segment (started when empty) and `sch`'s columns in it."""
        seg = self.cur
        if seg is None:
            seg = self.cur = Segment(sch.sids)
            self.segments.append(seg)
        if sch.seg is not seg:  # columns only ever get added, so `cols` stays right for `seg`
            sch.seg, sch.cols = seg, seg.columns_for(sch.sids)
        return seg, sch.cols

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
