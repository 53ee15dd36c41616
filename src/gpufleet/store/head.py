"""The in-memory head: recent samples of each node, not yet in a block.

A node's pushes usually carry the same series list every time, so the head
keeps, per node, one segment: the union of its series lists since the last cut
(the columns), a timestamp vector and its rows x columns values, sealed in
compressed chunks (``headchunk``: ~1 byte a sample instead of float64's 8).
Queries and the cut decode a node's head whole; a few decoded heads are kept
for queries, which read a node's series one after another.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import headchunk
from .rollup import Grid
from .serieslist import SeriesList
from .types import SeriesKey

# a schema's series list: key tuples (None: a name the index lost) or label sets (serieslist)
Keys = tuple[SeriesKey | None, ...] | SeriesList
# A schema's and a segment's series ids: 4 bytes, as the WAL and blocks write them (a node's
# few schemas and its head hold ~1,000 each: 8 bytes would be ~8 KB more a schema).
SID = np.uint32


class Schema:
    """One series list a node pushes (its WAL schema record) and where its columns sit in the head.

    A node's series list changes as users and processes come and go, and often goes back to
    an earlier one: every list seen recently is kept, so a push in a known shape finds its
    schema (by identity, as the hub reuses its key tuples) instead of starting a segment.
    """

    # gen: the WAL generation holding this schema's record (-1: none known); a push into a
    # newer generation writes the record there first, so every generation replays on its own
    # once older ones are deleted.
    __slots__ = ("schema_id", "keys", "sids", "gen", "since_schema", "seg", "cols", "normal")

    def __init__(self, schema_id: int, keys: Keys, sids: np.ndarray) -> None:
        self.schema_id = schema_id
        self.keys = keys
        self.sids = sids
        self.gen = -1
        self.since_schema = 0  # data records since its schema record was last written
        self.seg: Segment | None = None  # the segment `cols` refers to
        self.cols: np.ndarray | None = None  # column of each sid there; None: the first len(sids)
        # every key was normal as given (immutable tuples the index took as they are), so
        # each key object names its id: a changed list finds the keys it keeps by identity
        self.normal = False


_ASCENDING = np.empty(0, np.intp)  # Segment._col: the sids ascend, a column is its rank


class Segment:
    """The head of one node: its push times and rows x series values (NaN = absent), sealed.

    Its columns are the union of every series list pushed since the last cut (new series
    add a column, earlier rows NaN), so switching between shapes costs no new buffer.

    Values are kept as sealed bytes (``headchunk``), not as float64: every PIECE_ROWS
    pushes are sealed together against the row before them (``singles``: a seal costs
    ~30 numpy calls whatever its rows, so not one a push), and every CHUNK_ROWS rows of
    pieces are laid into one chunk (``chunks``), which compresses better.  Only the pushes
    not sealed yet (``pend``), the last sealed row (the next seal's reference) and the row
    before the open pieces stay as floats.  A chunk or piece may have fewer columns than
    the segment: it was sealed before those columns existed, and they read as NaN.
    """

    __slots__ = ("sids", "ts", "n", "chunks", "singles", "pend", "last", "open_ref", "dec", "_col")

    CHUNK_ROWS = 12  # a minute of 5 s pushes
    PIECE_ROWS = 3  # divides CHUNK_ROWS

    def __init__(self, sids: np.ndarray) -> None:
        self.sids = sids
        self.ts = np.empty(self.CHUNK_ROWS, np.float64)
        self.n = 0
        self.chunks: list[bytes] = []
        self.singles: list[bytes] = []  # pieces of PIECE_ROWS rows (or more), oldest first
        self.pend: list[np.ndarray] = []  # the newest rows, not sealed yet (< PIECE_ROWS)
        self.last: np.ndarray | None = None  # the newest sealed row (None: none yet)
        self.open_ref: np.ndarray | None = None  # the row before the singles (None: none)
        self.dec: np.ndarray | None = None  # the columns' precisions at the last seal (a hint)
        # sids' order for column() (None: not looked at since the sids last changed): an array
        # and a binary search, not a dict sid -> column (~50 bytes a series, 44 MiB over a
        # 1,000-node head once queries had touched it).
        self._col: np.ndarray | None = None

    def _grow_ts(self, need: int) -> None:
        # A quarter more (at least a minute of 5 s pushes), not double; a bulk append takes what it needs.
        cap = max(need, self.ts.size + max(12, self.ts.size // 4))
        ts = np.empty(cap, np.float64)
        ts[: self.n] = self.ts[: self.n]
        self.ts = ts

    def columns_for(self, sids: np.ndarray) -> np.ndarray | None:
        """Columns of `sids` here (None: they are the first len(sids)), adding missing ones."""
        have = self.sids
        if sids is have or (sids.size <= have.size and np.array_equal(sids, have[: sids.size])):
            return None
        # by sorting, not a dict of ~1,000 columns: a node's list changes as processes come and go
        order = np.argsort(have, kind="stable")
        pos = np.searchsorted(have, sids, sorter=order)
        found = np.zeros(sids.size, bool) if not have.size else have[order[np.minimum(pos, have.size - 1)]] == sids
        cols = np.empty(sids.size, np.int32)  # a column number fits (~1,000 a node)
        cols[found] = order[pos[found]]
        if not found.all():
            missing = np.flatnonzero(~found)
            cols[missing] = have.size + np.arange(missing.size)
            self.sids = np.concatenate([have, sids[missing]])
            # sealed rows keep their width (the new columns read as NaN there); the float rows
            # are padded the same way now, so the next seal codes against what a reader sees
            if self.last is not None:
                self.last = headchunk.pad(self.last, self.sids.size)
            if self.open_ref is not None:
                self.open_ref = headchunk.pad(self.open_ref, self.sids.size)
            self.pend = [headchunk.pad(r, self.sids.size) for r in self.pend]
            self._col = None
            if np.array_equal(sids, self.sids[: sids.size]):
                return None
        return cols

    def _row(self, values: np.ndarray, cols: np.ndarray | None) -> np.ndarray:
        width = self.sids.size
        if cols is None:
            if values.size == width:
                return np.array(values, np.float64)  # a copy: the caller's array may change
            row = np.full(width, np.nan)
            row[: values.size] = values
            return row
        row = np.full(width, np.nan)
        row[cols] = values
        return row

    def append(self, ts: float, values: np.ndarray, cols: np.ndarray | None = None) -> None:
        n = self.n
        if n == self.ts.size:
            self._grow_ts(n + 1)
        self.ts[n] = ts
        self.pend.append(self._row(values, cols))
        self.n = n + 1
        if len(self.pend) >= self.PIECE_ROWS:
            self._seal_pending()

    def append_rows(self, ts: np.ndarray, rows: np.ndarray, cols: np.ndarray | None = None) -> None:
        n, m = self.n, ts.size
        if n + m > self.ts.size:
            self._grow_ts(n + m)
        self.ts[n : n + m] = ts
        i = 0
        k = self.CHUNK_ROWS
        while i < m:
            if not self.singles and not self.pend and m - i >= k:  # a whole chunk at once (bulk, replay)
                block = np.full((k, self.sids.size), np.nan)
                if cols is None:
                    block[:, : rows.shape[1]] = rows[i : i + k]
                else:
                    block[:, cols] = rows[i : i + k]
                self._seal_chunk(block)
                i += k
                self.n += k
                continue
            self.n += 1
            self.pend.append(self._row(rows[i], cols))
            i += 1
            if len(self.pend) >= self.PIECE_ROWS:
                self._seal_pending()

    def newest(self) -> np.ndarray | None:
        """The newest row (None: no row)."""
        return self.pend[-1] if self.pend else self.last

    def _seal_pending(self) -> None:
        m = np.stack(self.pend)
        piece, self.dec = headchunk.seal_rows(self.last, m, self.dec)
        self.singles.append(piece)
        self.last = self.pend[-1]
        self.pend = []
        if len(self.singles) * self.PIECE_ROWS >= self.CHUNK_ROWS:
            self._seal_singles()

    def _seal_singles(self) -> None:
        """The open pieces become one chunk (coded against the row before them)."""
        chunk = headchunk.restack(self.singles)
        if chunk is None:  # the width or a precision changed among them: decode, seal anew
            self._seal_chunk(self._decode_singles(self.sids.size))
        else:
            self.chunks.append(chunk)
            self.open_ref = self.last
            if self.dec is not None and self.last is not None:
                self.dec = headchunk.recheck(self.last, self.dec)
        self.singles = []

    def _seal_chunk(self, block: np.ndarray) -> None:
        self.dec = headchunk.settle(block, self.dec)  # XOR columns looked at again
        self.chunks.append(headchunk.seal(self.open_ref, block, self.dec))
        self.last = self.open_ref = block[-1].copy()

    def _decode_singles(self, width: int) -> np.ndarray:
        chunk = headchunk.restack(self.singles) if len(self.singles) > 1 else None
        if chunk is not None:
            parts = [headchunk.unseal(chunk, self.open_ref)]
        else:
            parts = []
            ref = self.open_ref
            for buf in self.singles:
                piece = headchunk.unseal(buf, ref)
                parts.append(piece)
                ref = piece[-1]
        out = np.full((sum(p.shape[0] for p in parts), width), np.nan)
        r = 0
        for p in parts:
            out[r : r + p.shape[0], : p.shape[1]] = p
            r += p.shape[0]
        return out

    def values(self) -> np.ndarray:
        """Every row as n x series float64 (NaN = absent)."""
        width = self.sids.size
        out = np.full((self.n, width), np.nan)
        ref: np.ndarray | None = None
        r = 0
        for buf in self.chunks:
            m = headchunk.unseal(buf, ref)
            out[r : r + m.shape[0], : m.shape[1]] = m
            r += m.shape[0]
            ref = m[-1]
        if self.singles:
            got = self._decode_singles(width)
            out[r : r + got.shape[0]] = got
            r += got.shape[0]
        for row in self.pend:
            out[r] = row
            r += 1
        return out

    def column(self, sid: int) -> int | None:
        have = self.sids
        if not have.size:
            return None
        order = self._col
        if order is None:
            # sids are usually ascending already (new series get higher ids): no order to keep
            ascending = have.size < 2 or bool((have[1:] > have[:-1]).all())
            order = self._col = _ASCENDING if ascending else np.argsort(have, kind="stable")
        if order is _ASCENDING:
            at = int(np.searchsorted(have, sid))
            col = at
        else:
            at = int(np.searchsorted(have, sid, sorter=order))
            col = int(order[at]) if at < have.size else -1
        return col if 0 <= col < have.size and int(have[col]) == sid else None

    def nbytes(self) -> int:
        """Bytes its values take (sealed bytes and float rows), for stats and benchmarks."""
        total = sum(len(b) for b in self.chunks) + sum(len(b) for b in self.singles) + self.ts.nbytes
        return total + sum(r.nbytes for r in (self.last, self.open_ref, *self.pend) if r is not None)


class NodeState:
    """Per-node ingest state: dedup clock, head segments, last push."""

    __slots__ = ("nid", "name", "last_ts", "segments", "cur", "samples", "schemas", "sch", "dec_hint")

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
        # the cut head's columns and precisions: the next head, usually of the same columns,
        # starts from them instead of finding them again over its first minute
        self.dec_hint: tuple[np.ndarray, np.ndarray] | None = None

    def find_schema(self, keys: Keys) -> Schema | None:
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
            hint = self.dec_hint
            if hint is not None and (hint[0] is sch.sids or np.array_equal(hint[0], sch.sids)):
                seg.dec = hint[1]
            self.dec_hint = None
        if sch.seg is not seg:  # columns only ever get added, so `cols` stays right for `seg`
            sch.seg, sch.cols = seg, seg.columns_for(sch.sids)
        return seg, sch.cols

    def clear_head(self) -> None:
        seg = self.cur
        if seg is not None and seg.dec is not None and seg.dec.size == seg.sids.size:
            self.dec_hint = (seg.sids, seg.dec)
        self.segments = []
        self.cur = None
        self.samples = 0

    def first_ts(self) -> float | None:
        for seg in self.segments:
            if seg.n:
                return float(seg.ts[0])
        return None

    def grid(self) -> Grid | None:
        """The whole head as one grid, sids sorted (for the cut)."""
        got = self._values(remember=False)
        if got is None:
            return None
        sids, ts, vals = got
        order = np.argsort(sids)
        return ts, sids[order], [vals[:, order]]

    def series(self, sid: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Head samples of one series (NaN = absent are dropped)."""
        seg = self.cur
        if seg is None or not seg.n:
            return None
        col = seg.column(sid)
        if col is None:
            return None
        got = self._values(remember=True)
        assert got is not None
        _sids, ts, vals = got
        v = vals[:, col]
        keep = ~np.isnan(v)
        return ts[keep], v[keep]

    def _values(self, remember: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(sids, ts, n x sids values) of the head; decoded once per push for queries."""
        seg = self.cur
        if seg is None or not seg.n:
            return None
        key = (seg.n, seg.sids.size)
        hit = _decoded.get(id(seg))
        if hit is not None and hit[0] is seg and hit[1] == key:
            _decoded.move_to_end(id(seg))
            return hit[2]
        got = (seg.sids, seg.ts[: seg.n].copy(), seg.values())
        if remember:
            # a query reads a node's series one at a time: keep a few nodes decoded
            _decoded[id(seg)] = (seg, key, got)
            while len(_decoded) > _DECODED_NODES:
                _decoded.popitem(last=False)
        return got


# Heads decoded for queries, most recent last: (segment, (rows, columns) then, its values).
_DECODED_NODES = 4
_decoded: OrderedDict[int, tuple[Segment, tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]] = OrderedDict()
