"""Opening a store: load its blocks and replay its WAL generations into the head.

Crash at any point is safe: every generation on disk is replayed, and rows at
or before a node's newest block time (whichever generation holds them) are
dropped as duplicates; an unfinished block is a ``.tmp`` deleted on open; a
merged block lists its sources so leftovers are deleted on open.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from .base import StoreState, log
from .block import Block
from .head import NodeState, Segment
from .types import RAW, RESOLUTIONS
from .wal import RecordLog, read_records

# WAL records: a schema names a segment's series once; data records refer to it.
SCHEMA = struct.Struct("<BIII")  # type 1, schema id, node id, n  + n u32 series ids
DATA = struct.Struct("<BIdI")  # type 2, schema id, ts, n   + n float64
ROWS = struct.Struct("<BIII")  # type 3, schema id, rows, n + rows float64 ts + rows*n float64


class Recovery(StoreState):
    def _load_blocks(self) -> None:
        found: list[Block] = []
        for res in RESOLUTIONS:
            d = self._block_dir(res)
            os.makedirs(d, exist_ok=True)
            for name in sorted(os.listdir(d)):
                full = os.path.join(d, name)
                if name.endswith(".tmp"):
                    os.unlink(full)  # an unfinished write; its inputs still exist
                elif name.endswith(".blk"):
                    try:
                        found.append(Block(full))
                    except (ValueError, IndexError, KeyError, OSError) as e:
                        # One unreadable block must not keep the hub from starting: set it
                        # aside for inspection, say so, and serve everything else.
                        log.error("store block %s is unreadable (%s: %s); moved aside as %s.corrupt",
                                  full, type(e).__name__, e, name)
                        os.replace(full, full + ".corrupt")
        limit = self.ts_limit()
        sane: list[Block] = []
        for b in found:
            if b.window < 0 or b.min_ts < 0 or b.min_ts > limit:
                # Written by a release without the timestamp check (a push timestamped
                # 1e308 or far ahead): it would never expire and poison the node's clock.
                log.error("store block %s holds only timestamps outside [0, now + %g s] (%s .. %s); "
                          "moved aside as %s.corrupt", b.path, self.opts.max_future_s, b.min_ts, b.max_ts,
                          os.path.basename(b.path))
                b.close()
                os.replace(b.path, b.path + ".corrupt")
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
        for res in RESOLUTIONS:
            self._blocks[res].sort(key=lambda b: b.rank)
        for b in self._blocks[RAW]:
            for nid, ts in b.node_max_ts(limit).items():
                st = self._state_by_nid(nid)
                st.last_ts = max(st.last_ts, ts)
                self._max_ts = max(self._max_ts, ts)

    def _state_by_nid(self, nid: int) -> NodeState:
        st = self._by_nid.get(nid)
        if st is None:
            name = self.series_index.node_names[nid]
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
        """
        files = self._wal_files()
        self._replay_limit = self.ts_limit()
        self._replay_refused = 0
        schemas: dict[int, tuple[int, np.ndarray]] = {}
        sch_gen: dict[int, int] = {}
        for i, path in enumerate(files):
            gen = wal_gen(path)
            if i < len(files) - 1:
                log_records, _ = read_records(path)
            else:
                self._wal = RecordLog(path)
                log_records = self._wal.recovered
                self._wal.recovered = []
            for rec in log_records:
                self._apply_wal(rec, schemas, sch_gen, gen)
        if not files:
            self._wal = RecordLog(os.path.join(self.path, "wal", f"{1:010d}.log"))
        self._wal_gen = wal_gen(self._wal.path)
        if self._replay_refused:
            log.error("store WAL in %s held %d samples timestamped outside [0, now + %g s]; not replayed",
                      os.path.join(self.path, "wal"), self._replay_refused, self.opts.max_future_s)
        self._next_schema = max(schemas, default=0) + 1
        for st in self._by_nid.values():
            # a segment whose schema record sits only in an older generation
            # re-declares it before its next push into the current one
            if st.cur is not None and sch_gen.get(st.cur.schema_id) == self._wal_gen:
                st.cur.gen = self._wal_gen

    def _apply_wal(self, rec: bytes, schemas: dict[int, tuple[int, np.ndarray]],
                   sch_gen: dict[int, int], gen: int) -> None:
        kind = rec[0]
        if kind == 1:
            _, sch, nid, n = SCHEMA.unpack_from(rec)
            schemas[sch] = (nid, np.frombuffer(rec, "<u4", n, SCHEMA.size).astype(np.int64))
            sch_gen[sch] = gen
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
        nid, sids = schemas[sch]
        st = self._state_by_nid(nid)
        keep = tss > st.last_ts
        sane = (tss >= 0) & (tss <= self._replay_limit)
        if not sane.all():  # written before the store checked timestamps: never replayed
            self._replay_refused += int((keep & ~sane).sum()) * sids.size
            keep &= sane
        if not keep.any():
            return
        tss, rows = tss[keep], rows[keep]
        seg = st.cur
        if seg is None or seg.schema_id != sch:
            keys = tuple(self.series_index.key(int(s)) for s in sids)
            seg = Segment(sch, keys, sids)
            st.segments.append(seg)
            st.cur = seg
        seg.append_rows(tss, rows)
        self._note_appended(st, float(tss[0]), float(tss[-1]), rows.size)


def wal_gen(path: str) -> int:
    return int(os.path.basename(path).split(".")[0])
