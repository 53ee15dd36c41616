"""Opening a store: load its blocks and replay its WAL generations into the head.

Crash at any point is safe: every generation on disk is replayed, and rows at
or before a node's newest block time (whichever generation holds them) are
dropped as duplicates; an unfinished block is a ``.tmp`` deleted on open; a
merged block lists its sources so leftovers are deleted on open.
"""
from __future__ import annotations

import os
import struct
import time

import msgspec
import numpy as np

from . import formats
from .base import StoreState
from .block import Block, BlockDamaged
from .head import SID, NodeState, Schema
from .recordlog import RecordLog
from .types import RAW, RESOLUTIONS

# WAL records: a schema names a segment's series once; data records refer to it.
SCHEMA = struct.Struct("<BIII")  # type 1, schema id, node id, n  + n u32 series ids
DATA = struct.Struct("<BIdI")  # type 2, schema id, ts, n   + n float64
ROWS = struct.Struct("<BIII")  # type 3, schema id, rows, n + rows float64 ts + rows*n float64


WAL_MAGIC = b"GFWL"
# A segment's schema record is written again after this many of its data records, so
# a damaged schema record costs at most this many pushes of the node, not the generation.
SCHEMA_EVERY = 64


class Recovery(StoreState):
    """Opening: blocks first (they give each node's dedup clock), then every WAL generation."""

    def _load_blocks(self) -> None:
        found: list[Block] = []
        for res in RESOLUTIONS:
            d = self._block_dir(res)
            formats.make_dir(d)
            for name in sorted(os.listdir(d)):
                full = os.path.join(d, name)
                if name.endswith(".tmp"):
                    os.unlink(full)  # an unfinished write; its inputs still exist
                elif name.endswith(".blk"):
                    try:
                        found.append(Block(full))
                    except formats.StoreFormatError:
                        raise  # not damage: this release is too old for it
                    except (ValueError, IndexError, KeyError, TypeError, OSError, struct.error,
                            msgspec.DecodeError) as e:
                        # One unreadable block must not keep the hub from starting: set it
                        # aside for inspection, say so, and serve everything else.
                        aside = formats.set_aside(full)
                        self._damaged(f"block {full} is unreadable ({type(e).__name__}: {e}); set aside as "
                                      f"{aside}: its samples (window starting {_window_of(name)}) "
                                      "are no longer served")
        limit = self.ts_limit()
        sane: list[Block] = []
        for b in found:
            if b.window < 0 or b.min_ts < 0 or b.min_ts > limit:
                # Written by a release without the timestamp check (a push timestamped
                # 1e308 or far ahead): it would never expire and poison the node's clock.
                b.close()
                aside = formats.set_aside(b.path)
                self._damaged(f"block {b.path} holds only timestamps outside [0, now + "
                              f"{self.opts.max_future_s:g} s] ({b.min_ts:g} .. {b.max_ts:g}); set aside as {aside}")
            else:
                sane.append(b)
        found = sane
        superseded = {s for b in found for s in b.sources}
        for b in found:
            if b.seq in superseded:  # a merge finished but its inputs were not yet deleted
                b.close()
                os.unlink(b.path)
                continue
            self._blocks[b.res].append(b)
            self._seq = max(self._seq, b.seq + 1)
            if b.nodes.size:
                self._used_nodes = max(self._used_nodes, int(b.nodes["nid"].max()) + 1)
            if b.series.size:
                self._used_series = max(self._used_series, int(b.series["sid"].max()) + 1)
        for res in RESOLUTIONS:
            self._blocks[res].sort(key=lambda b: b.rank)
        for b in list(self._blocks[RAW]):
            try:
                newest = b.node_max_ts(limit)
            except BlockDamaged as e:
                self._set_aside(b, str(e))
                continue
            for nid, ts in newest.items():
                st = self._state_by_nid(nid)
                if st is None:
                    continue  # its name was lost with the series index
                st.last_ts = max(st.last_ts, ts)
                self._max_ts = max(self._max_ts, ts)

    def _state_by_nid(self, nid: int) -> NodeState | None:
        st = self._by_nid.get(nid)
        if st is None:
            name = self.series_index.node_name(nid)
            if name is None:
                return None
            st = NodeState(nid, name)
            self._nodes[name] = st
            self._by_nid[nid] = st
        return st

    def _replay_wal(self) -> None:
        """Replay every WAL generation on disk, oldest first.

        Several generations exist when a cut cycle was interrupted.  A node's rows
        at or before its newest block time (``last_ts`` from ``_load_blocks``) were
        cut already and are dropped, whichever generation holds them: a cycle cuts
        a node's whole head, including rows appended into the newer generation.
        A damaged record is skipped (the log resyncs after it); data records whose
        schema record was hit wait for the schema's next copy (``SCHEMA_EVERY``).
        """
        files = self._wal_files()
        self._replay_limit = self.ts_limit()
        self._replay_refused = 0
        self._replay_lost = 0
        schemas: dict[int, tuple[int, np.ndarray]] = {}
        sch_gen: dict[int, int] = {}
        pending: dict[int, list[bytes]] = {}
        for i, path in enumerate(files):
            gen = wal_gen(path)
            wal = RecordLog(path, WAL_MAGIC, on_damage=self._damaged, what="WAL")
            records, wal.recovered = wal.recovered, []
            if i < len(files) - 1:
                wal.close()
            else:
                self._wal = wal
            for rec in records:
                self._apply_wal(rec, schemas, sch_gen, gen, pending)
        if not files:
            self._wal = RecordLog(os.path.join(self.path, "wal", f"{1:010d}.log"), WAL_MAGIC)
        self._wal_gen = wal_gen(self._wal.path)
        lost = self._replay_lost + sum(_samples_of(r) for recs in pending.values() for r in recs)
        if lost:
            self._damaged(f"WAL in {os.path.join(self.path, 'wal')}: {lost} samples could not be replayed "
                          "(their series list was in a damaged record, or their series names were lost)")
        if self._replay_refused:
            self._damaged(f"WAL in {os.path.join(self.path, 'wal')} held {self._replay_refused} samples timestamped "
                          f"outside [0, now + {self.opts.max_future_s:g} s]; not replayed")
        self._next_schema = max(schemas, default=0) + 1
        for st in self._by_nid.values():
            # a schema whose record sits only in an older generation
            # re-declares it before its next push into the current one
            for known in st.schemas:
                known.gen = sch_gen.get(known.schema_id, -1)

    def _apply_wal(self, rec: bytes, schemas: dict[int, tuple[int, np.ndarray]],
                   sch_gen: dict[int, int], gen: int, pending: dict[int, list[bytes]]) -> None:
        try:
            kind = rec[0]
            if kind == 1:
                _, sch, nid, n = SCHEMA.unpack_from(rec)
                sids = np.frombuffer(rec, "<u4", n, SCHEMA.size).astype(SID)
                schemas[sch] = (nid, sids)
                sch_gen[sch] = gen
                self._used_nodes = max(self._used_nodes, nid + 1)
                if sids.size:
                    self._used_series = max(self._used_series, int(sids.max()) + 1)
                for waiting in pending.pop(sch, []):  # data that came before this copy of its schema
                    self._apply_wal(waiting, schemas, sch_gen, gen, pending)
                return
            if kind == 2:
                _, sch, ts, n = DATA.unpack_from(rec)
                tss = np.array([ts])
                rows = np.frombuffer(rec, "<f8", n, DATA.size).reshape(1, n)
            elif kind == 3:
                _, sch, m, n = ROWS.unpack_from(rec)
                tss = np.frombuffer(rec, "<f8", m, ROWS.size)
                rows = np.frombuffer(rec, "<f8", m * n, ROWS.size + 8 * m).reshape(m, n)
            else:
                return
        except (struct.error, ValueError, IndexError):
            self._replay_lost += _samples_of(rec)  # passed its CRC but is not a record we wrote
            return
        if sch not in schemas:
            pending.setdefault(sch, []).append(rec)
            return
        nid, sids = schemas[sch]
        st = self._state_by_nid(nid)
        if st is None or sids.size != n:
            self._replay_lost += rows.size
            return
        keep = tss > st.last_ts
        sane = (tss >= 0) & (tss <= self._replay_limit)
        if not sane.all():  # written before the store checked timestamps: never replayed
            self._replay_refused += int((keep & ~sane).sum()) * sids.size
            keep &= sane
        if not keep.any():
            return
        tss, rows = tss[keep], rows[keep]
        got = st.sch if st.sch is not None and st.sch.schema_id == sch else st.schema_by_id(sch)
        if got is None:
            index = self.series_index
            keys = tuple(index.keys(sids.tolist()))
            got = Schema(sch, keys, sids)
            got.normal = None not in keys  # the index's own tuples (None: a name it lost)
        st.use_schema(got)
        seg, cols = st.head_for(got)
        seg.append_rows(tss, rows, cols)
        self._note_appended(st, float(tss[0]), float(tss[-1]), rows.size)


def _samples_of(rec: bytes) -> int:
    """Samples a WAL data record holds (0 for schema records or unreadable ones)."""
    try:
        if rec[0] == 2:
            return int(DATA.unpack_from(rec)[3])
        if rec[0] == 3:
            _, _, m, n = ROWS.unpack_from(rec)
            return int(m) * int(n)
    except (struct.error, IndexError):
        pass
    return 0


def _window_of(name: str) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(name.split("-")[0])))
    except (ValueError, OverflowError, OSError):
        return "unknown"


def wal_gen(path: str) -> int:
    return int(os.path.basename(path).split(".")[0])
