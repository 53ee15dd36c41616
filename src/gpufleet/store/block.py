"""Immutable block files: one resolution, one aligned time window, all nodes.

Layout::

    "GFB1" | frames ... | index (msgpack) | <u64 index_off><u32 index_len><u32 crc> "GFB1"

The index holds ``format`` (2; absent in version 1 blocks), ``writer`` and
``data_crc``, a CRC-32 over every frame: ``verify`` checks it (``store check``,
and each input before a merge copies its frames).  A read that meets a damaged
frame (zstd checksum) raises ``BlockDamaged`` so the store can set the block aside.

Per node there is one timestamp frame (a node's series share its push
timestamps, so time costs ~nothing per series) and one frame per series holding
a presence bitmap over the node's rows (omitted when always present) and the
value columns (1 for raw; min, max, sum, count, last for rollups).  Every frame
is its own zstd frame with a content checksum, so a single series is read
without touching its neighbours.  Files are written to a temp name, fsynced and
renamed, so a reader only ever sees complete blocks.
"""
from __future__ import annotations

import mmap
import os
import struct
import zlib
from typing import Any

import msgspec
import numpy as np
import zstandard

from . import codec, formats

MAGIC = b"GFB1"
_FOOTER = struct.Struct("<QII4s")
_U32 = struct.Struct("<I")

NODE_DT = np.dtype(
    [("nid", "<u4"), ("rows", "<u4"), ("ts_off", "<u8"), ("ts_len", "<u4"),
     ("s_lo", "<u4"), ("s_hi", "<u4"), ("min_ts", "<f8"), ("max_ts", "<f8")]
)
SERIES_DT = np.dtype([("sid", "<u4"), ("node", "<u4"), ("off", "<u8"), ("len", "<u4"),
                      ("inner", "<u4"), ("inner_len", "<u4"), ("count", "<u4")])
# Series of a node are packed into shared zstd frames of about this many raw
# bytes: a frame costs ~20 bytes of headers and checksum, which would dominate
# short series (a 5 min head cut holds 60 points at 5 s), while one long series
# still gets a frame of its own so a query decompresses little else.
GROUP_BYTES = 8192

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


class BlockDamaged(Exception):
    """A block's frames or index do not check out; ``str()`` says what failed."""

    def __init__(self, block: "Block", detail: str) -> None:
        super().__init__(detail)
        self.block = block


_READ_ERRORS = (zstandard.ZstdError, ValueError, struct.error, IndexError)


def ncols_for(res: int) -> int:
    return 1 if res == 0 else 5


class BlockWriter:
    """Streams nodes into a new block file; :meth:`finish` makes it visible."""

    def __init__(self, path: str, res: int, window: int, seq: int, sources: list[int], level: int,
                 rank: int | None = None, tier: int = 0) -> None:
        self.path = path
        self.tmp = path + ".tmp"
        self.res, self.window, self.seq, self.sources = res, window, seq, sources
        self._fh = os.fdopen(formats.open_file(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb")
        self._fh.write(MAGIC)
        self._crc = 0  # over every byte between MAGIC and the index
        self._pos = len(MAGIC)
        self._zc = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._nodes: list[tuple[Any, ...]] = []
        # Series index rows as one SERIES_DT array per node: no per-series Python
        # objects survive add_node (they would feed the cyclic GC's full
        # collections, which cost ~100 ms in a hub holding a big catalog).
        self._series: list[np.ndarray] = []
        self._nseries = 0
        self.samples = 0
        self._seen: set[int] = set()
        self.compacted = bool(sources)
        # rank orders blocks by the age of their data (a merge keeps its newest
        # source's rank), so "later block wins" stays true for rollup "last".
        self.rank = seq if rank is None else rank
        self.tier = tier

    def _put(self, raw: bytes) -> tuple[int, int]:
        comp = self._zc.compress(raw)
        off = self._pos
        self._fh.write(comp)
        self._crc = zlib.crc32(comp, self._crc)
        self._pos += len(comp)
        return off, len(comp)

    def add_node(self, nid: int, ts: np.ndarray, sids: np.ndarray, cols: list[np.ndarray]) -> None:
        """Add one node: ts (rows,), sids (n,), cols = [rows x n] arrays, NaN = absent."""
        rows = ts.size
        if rows == 0:
            return
        if nid in self._seen:
            raise ValueError(f"node {nid} added twice to block {self.path}")
        self._seen.add(nid)
        present = ~np.isnan(cols[0])
        counts = present.sum(axis=0)
        node_row = len(self._nodes)
        s_lo = self._nseries
        ts_off, ts_len = self._put(codec.encode(ts))
        payload, starts, lens, kept = _payloads(cols, present, counts, rows)
        # series of this node packed into frames of about GROUP_BYTES, in order: a frame
        # ends after the series that takes it to GROUP_BYTES or more
        n = kept.size
        r_off = np.empty(n, np.uint64)
        r_len = np.empty(n, np.uint32)
        inner = np.empty(n, np.uint32)
        lo = 0
        acc = 0
        lens_l = lens.tolist()
        for i in range(n):
            acc += lens_l[i]
            if acc >= GROUP_BYTES or i == n - 1:
                a, b = int(starts[lo]), int(starts[i]) + lens_l[i]
                off, ln = self._put(payload[a:b].tobytes())
                r_off[lo : i + 1] = off
                r_len[lo : i + 1] = ln
                inner[lo : i + 1] = starts[lo : i + 1] - a
                lo, acc = i + 1, 0
        chunk = np.empty(n, SERIES_DT)
        chunk["sid"], chunk["node"], chunk["off"], chunk["len"] = sids[kept], node_row, r_off, r_len
        chunk["inner"], chunk["inner_len"], chunk["count"] = inner, lens, counts[kept]
        self.samples += int(counts[kept].sum())
        self._add_series(chunk)
        self._nodes.append((nid, rows, ts_off, ts_len, s_lo, self._nseries,
                            float(ts[0]), float(ts[-1])))

    def _add_series(self, chunk: np.ndarray) -> None:
        if chunk.size:
            self._series.append(chunk)
            self._nseries += chunk.size

    def copy_node(self, src: Block, nid: int) -> None:
        """Add one node's frames from another block of the same resolution, byte for byte.

        For merges whose inputs hold disjoint nodes (the blocks of one cut
        cycle): no decode or re-encode.  The frames keep the source's zstd
        level, so the result is not marked compacted (a final merge re-encodes it).
        """
        if src.res != self.res:
            raise ValueError("copy_node between resolutions")
        row = src._node_row.get(nid)
        if row is None:
            return
        if nid in self._seen:
            raise ValueError(f"node {nid} added twice to block {self.path}")
        self._seen.add(nid)
        rec = src.nodes[row]
        lo, hi = int(rec["s_lo"]), int(rec["s_hi"])
        ser = src.series[lo:hi]
        start = int(rec["ts_off"])
        end = start + int(rec["ts_len"])
        if hi > lo:  # a node's frames are contiguous: its timestamps, then its groups
            end = max(end, int((ser["off"].astype(np.int64) + ser["len"]).max()))
        frames = src._mm[start:end]
        self._fh.write(frames)
        self._crc = zlib.crc32(frames, self._crc)
        delta = self._pos - start
        self._pos += end - start
        node_row = len(self._nodes)
        s_lo = self._nseries
        chunk = ser.copy()
        # delta is negative when the node sits further into its source than into this
        # block (a node present in only one input); offsets are unsigned, so shift in int64.
        chunk["off"] = (chunk["off"].astype(np.int64) + delta).astype(np.uint64)
        chunk["node"] = node_row
        self._add_series(chunk)
        self.samples += int(ser["count"].sum())
        self._nodes.append((nid, int(rec["rows"]), int(rec["ts_off"]) + delta, int(rec["ts_len"]),
                            s_lo, self._nseries, float(rec["min_ts"]), float(rec["max_ts"])))
        self.compacted = False

    def finish(self) -> str | None:
        """Write the index, fsync, rename into place. Returns the path, or None if empty."""
        if not self._nodes:
            self._fh.close()
            os.unlink(self.tmp)
            return None
        # A node whose pushes held only absent values still has rows (its push times):
        # kept, so its dedup clock and latest() read the same after a cut as before.
        nodes = np.array(self._nodes, dtype=NODE_DT)
        series = np.concatenate(self._series) if self._series else np.empty(0, SERIES_DT)
        order = np.argsort(series["sid"], kind="stable").astype("<u4")
        index = _enc.encode({
            "res": self.res, "window": self.window, "seq": self.seq, "sources": self.sources,
            "min_ts": float(nodes["min_ts"].min()), "max_ts": float(nodes["max_ts"].max()),
            "samples": self.samples, "nodes": nodes.tobytes(), "series": series.tobytes(),
            "order": order.tobytes(), "compacted": self.compacted,
            "rank": self.rank, "tier": self.tier,
            "format": formats.FORMAT, "writer": formats.WRITER, "data_crc": self._crc,
        })
        self._fh.write(index)
        self._fh.write(_FOOTER.pack(self._pos, len(index), zlib.crc32(index), MAGIC))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)
        formats.fsync_dir(os.path.dirname(self.path))
        return self.path

    def abort(self) -> None:
        self._fh.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class Block:
    """A read-only, memory-mapped block."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < len(MAGIC) + _FOOTER.size:
                raise ValueError(f"block {path} is truncated")
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.nbytes = size
        off, ln, crc, magic = _FOOTER.unpack_from(self._mm, size - _FOOTER.size)
        if magic != MAGIC or self._mm[:4] != MAGIC or off + ln > size:
            raise ValueError(f"block {path} has a bad footer")
        raw = self._mm[off : off + ln]
        if zlib.crc32(raw) != crc:
            raise ValueError(f"block {path} index checksum mismatch")
        meta = _dec.decode(raw)
        self.format: int = int(meta.get("format", 1))
        if self.format > formats.FORMAT:
            self._mm.close()
            raise formats.too_new(path, self.format, str(meta.get("writer", "")))
        self.data_crc: int | None = meta.get("data_crc")
        self.index_off = off
        self.verified = False
        self.res: int = meta["res"]
        self.window: int = meta["window"]
        self.seq: int = meta["seq"]
        self.sources: list[int] = list(meta["sources"])
        self.min_ts: float = meta["min_ts"]
        self.max_ts: float = meta["max_ts"]
        self.samples: int = meta["samples"]
        self.compacted: bool = bool(meta.get("compacted", False))
        self.rank: int = int(meta.get("rank", self.seq))
        self.tier: int = int(meta.get("tier", 0))
        self.nodes = np.frombuffer(meta["nodes"], NODE_DT)
        self.series = np.frombuffer(meta["series"], SERIES_DT)
        self._order = np.frombuffer(meta["order"], "<u4")
        self._sorted_sids = self.series["sid"][self._order]
        self._node_row = {int(n): i for i, n in enumerate(self.nodes["nid"])}
        self._zd = zstandard.ZstdDecompressor()
        self._ts_cache: dict[int, np.ndarray] = {}
        self._frame_cache: dict[int, bytes] = {}
        self.ncols = ncols_for(self.res)

    def close(self) -> None:
        try:
            self._mm.close()
        except BufferError:
            pass  # a numpy view still references the map; GC closes it

    def node_max_ts(self, limit: float = float("inf")) -> dict[int, float]:
        """Each node's newest time in this block, ignoring times after ``limit``."""
        out: dict[int, float] = {}
        for row, (n, t) in enumerate(zip(self.nodes["nid"].tolist(), self.nodes["max_ts"].tolist())):
            if t > limit:  # rare: data from the future; find the newest time that is not
                try:
                    ts = self.node_ts(row)
                except _READ_ERRORS as e:
                    raise BlockDamaged(self, f"node {n}: {type(e).__name__}: {e}") from None
                ok = ts[ts <= limit]
                if not ok.size:
                    continue
                t = float(ok[-1])
            out[int(n)] = float(t)
        return out

    def has_node(self, nid: int) -> bool:
        return nid in self._node_row

    def verify(self) -> str:
        """'' if every frame checks out, else what failed. Version 1 blocks decode every frame."""
        try:
            if self.data_crc is not None:
                if zlib.crc32(self._mm[len(MAGIC) : self.index_off]) != self.data_crc:
                    return "frames fail their CRC"
            else:
                offs = {(int(r["ts_off"]), int(r["ts_len"])) for r in self.nodes}
                offs |= {(int(r["off"]), int(r["len"])) for r in self.series}
                for off, ln in sorted(offs):
                    self._frame(off, ln)
        except BlockDamaged as e:
            return str(e)
        self.verified = True
        return ""

    def _frame(self, off: int, ln: int) -> bytes:
        try:
            return self._zd.decompress(self._mm[off : off + ln])
        except zstandard.ZstdError as e:
            raise BlockDamaged(self, f"frame at byte {off}: {e}") from None

    def node_ts(self, node_row: int) -> np.ndarray:
        ts = self._ts_cache.get(node_row)
        if ts is None:
            rec = self.nodes[node_row]
            ts = codec.decode(self._frame(int(rec["ts_off"]), int(rec["ts_len"])), int(rec["rows"]))
            if len(self._ts_cache) > 256:
                self._ts_cache.clear()
            self._ts_cache[node_row] = ts
        return ts

    def _payload(self, row: int) -> memoryview:
        rec = self.series[row]
        off = int(rec["off"])
        frame = self._frame_cache.get(off)
        if frame is None:
            frame = self._frame(off, int(rec["len"]))
            self._frame_cache = {off: frame}  # neighbours in a group are usually read next
        inner = int(rec["inner"])
        return memoryview(frame)[inner : inner + int(rec["inner_len"])]

    def _decode_series(self, row: int) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
        rec = self.series[row]
        node_row = int(rec["node"])
        ts = self.node_ts(node_row)
        count = int(rec["count"])
        buf = self._payload(row)
        pos = 1
        mask: np.ndarray | None = None
        if buf[0] == 1:
            nb = (ts.size + 7) // 8
            mask = np.unpackbits(np.frombuffer(buf, np.uint8, nb, 1), count=ts.size).astype(bool)
            pos += nb
        cols = []
        for _ in range(self.ncols):
            (ln,) = _U32.unpack_from(buf, pos)
            pos += 4
            cols.append(codec.decode(memoryview(buf)[pos : pos + ln], count))
            pos += ln
        return ts, mask, cols

    def read_series(self, sid: int) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """Timestamps and columns of the present samples of one series, or None."""
        i = int(np.searchsorted(self._sorted_sids, sid))
        if i >= self._sorted_sids.size or int(self._sorted_sids[i]) != sid:
            return None
        try:
            ts, mask, cols = self._decode_series(int(self._order[i]))
        except BlockDamaged:
            raise
        except _READ_ERRORS as e:
            raise BlockDamaged(self, f"series {sid}: {type(e).__name__}: {e}") from None
        return (ts if mask is None else ts[mask]), cols

    def read_node(self, nid: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
        """A node as a dense grid: ts (rows,), sids (n,), ncols arrays rows x n (NaN = absent)."""
        try:
            return self._read_node(nid)
        except BlockDamaged:
            raise
        except _READ_ERRORS as e:
            raise BlockDamaged(self, f"node {nid}: {type(e).__name__}: {e}") from None

    def _read_node(self, nid: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
        node_row = self._node_row.get(nid)
        if node_row is None:
            return None
        rec = self.nodes[node_row]
        lo, hi = int(rec["s_lo"]), int(rec["s_hi"])
        ts = self.node_ts(node_row)
        rows = ts.size
        sids = self.series["sid"][lo:hi].astype(np.int64)
        grids = [np.full((rows, hi - lo), np.nan) for _ in range(self.ncols)]
        full_js: list[int] = []
        full_bufs: list[list[memoryview]] = [[] for _ in range(self.ncols)]
        for j, row in enumerate(range(lo, hi)):
            buf = self._payload(row)
            if buf[0] == 1:  # gaps: decode this one on its own
                _, mask, cols = self._decode_series(row)
                for g, c in zip(grids, cols):
                    g[mask, j] = c
                continue
            pos = 1
            for k in range(self.ncols):
                (ln,) = _U32.unpack_from(buf, pos)
                full_bufs[k].append(buf[pos + 4 : pos + 4 + ln])
                pos += 4 + ln
            full_js.append(j)
        if full_js:
            for g, bufs in zip(grids, full_bufs):
                g[:, full_js] = codec.decode_columns(bufs, rows)
        return ts, sids, grids


def _payloads(cols: list[np.ndarray], present: np.ndarray, counts: np.ndarray,
              rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A node's series frames' contents, laid out with numpy, not series by series.

    Per series with a sample: ``\x00`` (always present) or ``\x01`` + its presence bitmap,
    then per value column a u32 length and ``codec.encode`` of its present values.
    Returns (all payloads back to back as uint8, each one's start, its length, the
    columns they belong to): always-present series, the common case, are encoded for
    all columns at once (``codec.encode_columns_packed``) and scattered in place.
    """
    kept = np.flatnonzero(counts > 0)
    full = np.flatnonzero(counts == rows)
    lens = np.zeros(counts.size, np.int64)
    packs = [codec.encode_columns_packed(c[:, full]) for c in cols] if full.size else []
    if full.size:
        lens[full] = 1 + sum(4 + p[0] for p in packs)
    gaps: dict[int, bytes] = {}
    for j in np.flatnonzero((counts > 0) & (counts < rows)).tolist():  # series with gaps: few
        mask = present[:, j]
        parts = [b"\x01", np.packbits(mask).tobytes()]
        for c in cols:
            enc = codec.encode(c[mask, j])
            parts += [_U32.pack(len(enc)), enc]
        gaps[j] = b"".join(parts)
        lens[j] = len(gaps[j])
    klens = lens[kept]
    starts = np.zeros(kept.size, np.int64)
    if kept.size:
        np.cumsum(klens[:-1], out=starts[1:])
    buf = np.empty(int(klens.sum()), np.uint8)
    at = np.zeros(counts.size, np.int64)
    at[kept] = starts
    if full.size:
        buf[at[full]] = 0
        piece = at[full] + 1
        four = np.arange(4)
        for lengths, blocks in packs:
            buf[piece[:, None] + four] = lengths.astype("<u4").view(np.uint8).reshape(-1, 4)
            for local, mat in blocks:
                buf[(piece[local] + 4)[:, None] + np.arange(mat.shape[1])] = mat
            piece = piece + 4 + lengths
    for j, payload in gaps.items():
        buf[at[j] : at[j] + len(payload)] = np.frombuffer(payload, np.uint8)
    return buf, starts, klens, kept
