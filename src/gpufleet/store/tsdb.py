"""TimeSeriesStore: ties catalog, WAL, head, blocks, rollups and queries together.

Directory layout::

    LOCK                      flock'd while open (one writer per directory)
    series.log                catalog: node and series ids (append-only, CRC'd)
    wal/<gen>.log             WAL of the head (append-only, CRC'd)
    blocks/r<res>/<window>-<seq>.blk   immutable blocks (res 0 = raw, 60, 3600)

Write path: append -> WAL (one os.write, so in the OS before returning) ->
head.  ``maintain(now)`` freezes the head into level-0 blocks (raw + 1m + 1h
rollups, split at raw window boundaries), merges blocks of a window into one
(re-encoding at a higher zstd level), and drops blocks past retention.

The head cut is a *cycle* that may span many ``maintain(budget_s=...)`` calls:
it starts a new WAL generation and marks the nodes with head data as pending;
each call cuts some pending nodes (each node's whole head, including pushes
since the rotation) into blocks of their own; when none is pending the older
generations are deleted.  A segment whose schema record lies in an older
generation writes it again before its next push, so each generation replays
on its own.  Merges run one at a time, node by node, and may span calls too;
inputs holding a node alone (a cycle's blocks) are copied frame for frame,
except in the final merge of a window, which re-encodes everything.

Crash at any point is safe: every generation on disk is replayed, and rows at
or before a node's newest block time (whichever generation holds them) are
dropped as duplicates; an unfinished block is a ``.tmp`` deleted on open; a
merged block lists its sources so leftovers are deleted on open.
"""
from __future__ import annotations

import logging

import fcntl
import math
import os
import struct
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from . import query as q
from .block import Block, BlockWriter
from .catalog import Catalog
from .head import NodeState, Segment
from .rollup import merge_grids, rollup_grid
from .types import MAX_TS, RAW, RESOLUTIONS, ROLLUPS, Matcher, SeriesKey, StoreOptions
from .wal import RecordLog, read_records

_SCHEMA = struct.Struct("<BIII")  # type 1, schema id, node id, n
_DATA = struct.Struct("<BIdI")  # type 2, schema id, ts, n   + n float64
_ROWS = struct.Struct("<BIII")  # type 3, schema id, rows, n + rows float64 ts + rows*n float64


log = logging.getLogger("gpufleet.store")

class SeriesResult(NamedTuple):
    labels: dict[str, str]
    timestamps: np.ndarray
    values: list[float]


class TimeSeriesStore:
    """Embedded time-series store for the hub. See ``gpufleet.store`` for the API summary."""

    def __init__(self, path: str, options: StoreOptions | None = None) -> None:
        self.path = os.path.abspath(path)
        self.opts = options or StoreOptions()
        self.opts.validate()
        os.makedirs(self.path, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise RuntimeError(f"store {self.path} is open in another process") from None
        self.catalog = Catalog(os.path.join(self.path, "series.log"))
        self._nodes: dict[str, NodeState] = {}
        self._by_nid: dict[int, NodeState] = {}
        self._blocks: dict[int, list[Block]] = {res: [] for res in RESOLUTIONS}
        self._seq = 1
        self._max_ts = float("-inf")
        self._clock_now = float("-inf")
        self._head_nodes: set[int] = set()
        self._head_samples = 0
        self._head_first = math.inf  # <= the oldest head sample (exact after each cut cycle)
        self._next_schema = 1
        # Cut cycle in progress: nodes still to cut, and the WAL files to delete after.
        self._cycle_nodes: list[int] | None = None
        self._cycle_pos = 0
        self._cycle_wals: list[str] = []
        self._node_cut_s = 0.0  # running estimate of one node's cut, for the budget
        # Compaction in progress (one merge at a time, advanced node by node).
        self._job: _MergeJob | None = None
        self._compact_dirty = True  # blocks changed since the last full compaction pass
        self._compact_next = -math.inf  # when an open window next turns final
        self._retention_next = -math.inf  # when the oldest block next expires
        self.dropped_total = 0
        self._load_blocks()
        self._replay_wal()

    # ------------------------------------------------------------------ open
    def _block_dir(self, res: int) -> str:
        return os.path.join(self.path, "blocks", f"r{res}")

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
            name = self.catalog.node_names[nid]
            st = NodeState(nid, name)
            self._nodes[name] = st
            self._by_nid[nid] = st
        return st

    def _wal_files(self) -> list[str]:
        d = os.path.join(self.path, "wal")
        os.makedirs(d, exist_ok=True)
        return [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".log")]

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
            gen = _wal_gen(path)
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
        self._wal_gen = _wal_gen(self._wal.path)
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
            _, sch, nid, n = _SCHEMA.unpack_from(rec)
            schemas[sch] = (nid, np.frombuffer(rec, "<u4", n, _SCHEMA.size).astype(np.int64))
            sch_gen[sch] = gen
            return
        if kind == 2:
            _, sch, ts, n = _DATA.unpack_from(rec)
            tss = np.array([ts])
            rows = np.frombuffer(rec, "<f8", n, _DATA.size).reshape(1, n)
        elif kind == 3:
            _, sch, m, n = _ROWS.unpack_from(rec)
            tss = np.frombuffer(rec, "<f8", m, _ROWS.size)
            rows = np.frombuffer(rec, "<f8", m * n, _ROWS.size + 8 * m).reshape(m, n)
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
            keys = tuple(self.catalog.key(int(s)) for s in sids)
            seg = Segment(sch, keys, sids)
            st.segments.append(seg)
            st.cur = seg
        seg.append_rows(tss, rows)
        self._note_appended(st, float(tss[0]), float(tss[-1]), rows.size)

    # ---------------------------------------------------------------- ingest
    def _note_appended(self, st: NodeState, first: float, last: float, count: int) -> None:
        st.last_ts = last
        if not st.samples and first < self._head_first:
            self._head_first = first
        st.samples += count
        self._head_samples += count
        self._head_nodes.add(st.nid)
        if last > self._max_ts:
            self._max_ts = last

    def _node(self, node: str) -> NodeState:
        st = self._nodes.get(node)
        if st is None:
            nid = self.catalog.node_id(node)
            assert nid is not None
            st = self._state_by_nid(nid)
        return st

    def _segment_for(self, st: NodeState, keys: Sequence[SeriesKey]) -> Segment:
        k = keys if type(keys) is tuple else tuple(keys)
        seg = st.cur
        if seg is not None and (k is seg.keys or k == seg.keys):
            if seg.gen != self._wal_gen:  # a cut cycle rotated the WAL since its schema record
                self._wal.append(_SCHEMA.pack(1, seg.schema_id, st.nid, seg.sids.size)
                                 + seg.sids.astype("<u4").tobytes())
                seg.gen = self._wal_gen
            return seg
        sids = np.array(self.catalog.sids_for(st.nid, k), dtype=np.int64)
        if np.unique(sids).size != sids.size:
            seen: set[SeriesKey] = set()
            for key, sid in zip(k, sids):
                if int(sid) in seen:  # type: ignore[comparison-overlap]
                    raise ValueError(f"series {key!r} appears twice in one batch for node {st.name!r}")
                seen.add(int(sid))  # type: ignore[arg-type]
        sch = self._next_schema
        self._next_schema += 1
        self._wal.append(_SCHEMA.pack(1, sch, st.nid, sids.size) + sids.astype("<u4").tobytes())
        seg = Segment(sch, k, sids)
        seg.gen = self._wal_gen
        st.segments.append(seg)
        st.cur = seg
        return seg

    @staticmethod
    def _values(values: Any, n: int, node: str, keys: Sequence[SeriesKey], shape: tuple[int, ...]) -> np.ndarray:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"values for node {node!r} must be numbers") from None
        if arr.shape != shape:
            raise ValueError(f"node {node!r}: {len(keys)} keys but values have shape {arr.shape}, expected {shape}")
        if np.isinf(arr).any():
            pos = np.argwhere(np.isinf(arr))[0]
            raise ValueError(f"node {node!r}: infinite value for series {keys[int(pos[-1])]!r} (use NaN for absent)")
        return arr

    def ts_limit(self) -> float:
        """The latest timestamp accepted now: the host's clock plus ``max_future_s``."""
        return min(max(time.time(), self._clock_now) + self.opts.max_future_s, MAX_TS)

    def _check_ts(self, node: str, first: float, last: float) -> None:
        if first < 0:
            raise ValueError(f"node {node!r}: timestamp {first!r} is before 1970 (a Unix time in seconds is expected)")
        if last > self.ts_limit():
            raise ValueError(f"node {node!r}: timestamp {last!r} is more than {self.opts.max_future_s:g} s ahead"
                             f" of this host's clock ({time.time():.0f}); check the node's clock")

    def append(self, node: str, ts: float, keys: Sequence[SeriesKey], values: Sequence[float]) -> int:
        """Append one node's push (all samples share ts). Returns the number of samples dropped as duplicates."""
        if not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise ValueError(f"node {node!r}: timestamp must be a finite number, got {ts!r}")
        self._check_ts(node, float(ts), float(ts))
        n = len(keys)
        arr = self._values(values, n, node, keys, (n,))
        st = self._node(node)
        if ts <= st.last_ts:
            self.dropped_total += n
            return n
        if n == 0:
            return 0
        seg = self._segment_for(st, keys)
        ts = float(ts)
        payload = _DATA.pack(2, seg.schema_id, ts, n) + arr.tobytes()
        self._wal.append(payload)
        seg.append(ts, arr)
        self._note_appended(st, ts, ts, n)
        return 0

    def append_rows(self, node: str, timestamps: Sequence[float], keys: Sequence[SeriesKey], rows: Any) -> int:
        """Append several pushes of one node with the same series list (backfill, bulk load).

        ``rows`` is len(timestamps) x len(keys). Timestamps must strictly increase;
        rows at or before the node's last stored time are dropped and counted.
        """
        try:
            tss = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"node {node!r}: timestamps must be numbers") from None
        if not np.isfinite(tss).all():
            raise ValueError(f"node {node!r}: timestamps must be finite")
        if tss.size > 1 and not (np.diff(tss) > 0).all():
            raise ValueError(f"node {node!r}: timestamps within a batch must strictly increase")
        if tss.size:
            self._check_ts(node, float(tss[0]), float(tss[-1]))
        n = len(keys)
        arr = self._values(rows, n, node, keys, (tss.size, n))
        st = self._node(node)
        keep = tss > st.last_ts
        dropped = int((~keep).sum()) * n
        self.dropped_total += dropped
        if not keep.any() or n == 0:
            return dropped
        tss, arr = tss[keep], np.ascontiguousarray(arr[keep])
        seg = self._segment_for(st, keys)
        self._wal.append(_ROWS.pack(3, seg.schema_id, tss.size, n) + tss.tobytes() + arr.tobytes())
        seg.append_rows(tss, arr)
        self._note_appended(st, float(tss[0]), float(tss[-1]), arr.size)
        return dropped

    def flush(self) -> None:
        """fsync the WAL and catalog (appends are already in the OS; this covers power loss)."""
        self.catalog.flush(True)
        self._wal.flush(True)

    # ----------------------------------------------------------- maintenance
    def maintain(self, now: float | None = None, *, full: bool = False,
                 budget_s: float | None = None) -> dict[str, int]:
        """Cut the head into blocks, merge blocks, apply retention. Cheap when idle.

        A head cut runs as a *cycle*: once the head holds ``head_span_s`` of data
        (or ``max_head_samples``) the WAL moves to a new generation and every node
        with head data becomes pending; each call then cuts pending nodes (a
        node's whole head, including pushes that arrived since) into level-0
        blocks until ``budget_s`` seconds of wall time are spent, and the cycle's
        WAL generations are deleted once no node is pending.  Merges also stop
        at the budget (a merge advances node by node across calls).  With
        ``budget_s=None`` each call finishes what it starts.  At least one node
        is cut per call while a cycle is pending, so it always ends.

        ``full=True`` ignores the budget, cuts the whole head regardless of its
        age and merges every window (used before measuring size, and by tests).

        Returns counts: ``cut`` 1 if head data was cut, ``cut_nodes``,
        ``pending_nodes`` (still to cut in this cycle), ``merged`` (merges
        finished), ``deleted`` (blocks past retention).
        """
        deadline = None if budget_s is None or full else time.perf_counter() + float(budget_s)
        now = time.time() if now is None else float(now)
        self._clock_now = max(self._clock_now, now)
        done = {"cut": 0, "cut_nodes": 0, "pending_nodes": 0, "merged": 0, "deleted": 0}
        if self._job is not None and self._job.pos >= len(self._job.nids):
            # a merge whose nodes are done: its finish (index, fsync) comes first,
            # while the budget is whole, not after a cut has spent it
            done["merged"] += self._run_job(deadline)
        if self._cycle_nodes is None and self._head_samples and (full or self._head_due(now)):
            self._start_cycle()
        if self._cycle_nodes is not None:
            done["cut_nodes"] += self._cut_pending(deadline)
            done["cut"] = 1
        if full and (self._head_samples or self._wal.size):
            # pushes since the cycle began: cut them too, leaving an empty WAL
            self._start_cycle()
            done["cut_nodes"] += self._cut_pending(None)
            done["cut"] = 1
        if self._cycle_nodes is not None:
            done["pending_nodes"] = len(self._cycle_nodes) - self._cycle_pos
        if now >= self._retention_next:
            done["deleted"] = self._retention(now)
        if deadline is None or time.perf_counter() < deadline:
            done["merged"] += self._compact(now, full, deadline)
        return done

    def _head_due(self, now: float) -> bool:
        if self._head_samples >= self.opts.max_head_samples:
            return True
        return now - self._head_first >= self.opts.head_span_s

    def _new_writer(self, res: int, window: int, sources: list[Block], level: int) -> BlockWriter:
        seq = self._seq
        self._seq += 1
        path = os.path.join(self._block_dir(res), f"{window:012d}-{seq:010d}.blk")
        rank = max((b.rank for b in sources), default=seq)
        tier = max((b.tier for b in sources), default=-1) + 1
        return BlockWriter(path, res, window, seq, [b.seq for b in sources], level, rank, tier)

    def _add_block(self, path: str) -> Block:
        b = Block(path)
        self._blocks[b.res].append(b)
        self._compact_dirty = True
        self._retention_next = min(self._retention_next, b.max_ts + self.opts.retention[b.res])
        return b

    def _start_cycle(self) -> None:
        """Rotate the WAL and mark every node with head data as pending."""
        old = self._wal
        self._wal_gen += 1
        self._wal = RecordLog(os.path.join(self.path, "wal", f"{self._wal_gen:010d}.log"))
        old.close()
        # every older generation (more than one after an interrupted cycle) is
        # covered: its rows belong to nodes in _head_nodes, which all get cut
        self._cycle_wals = [p for p in self._wal_files() if p != self._wal.path]
        self._cycle_nodes = sorted(self._head_nodes)
        self._cycle_pos = 0

    def _cut_pending(self, deadline: float | None) -> int:
        """Cut pending nodes of the cycle into new level-0 blocks until the deadline."""
        assert self._cycle_nodes is not None
        nodes, start = self._cycle_nodes, self._cycle_pos
        writers: dict[tuple[int, int], BlockWriter] = {}
        wins = self.opts.windows

        def writer(res: int, window: int) -> BlockWriter:
            w = writers.get((res, window))
            if w is None:
                w = writers[(res, window)] = self._new_writer(res, window, [], self.opts.zstd_level_head)
            return w

        pos = start
        t0 = time.perf_counter()
        try:
            while pos < len(nodes):
                # stop before a node that would not fit (the finish's fsyncs come on top)
                if pos > start and deadline is not None and time.perf_counter() + self._node_cut_s >= deadline:
                    break
                nid = nodes[pos]
                pos += 1
                grid = self._by_nid[nid].grid()
                if grid is None:
                    continue
                ts, sids, (vals,) = grid
                # A writer may receive each node once, so split every resolution's
                # rows by that resolution's window (buckets never straddle one).
                for w0, lo, hi in _windows(ts, wins[RAW]):
                    writer(RAW, w0).add_node(nid, ts[lo:hi], sids, [vals[lo:hi]])
                for res in ROLLUPS:
                    bts, cols = rollup_grid(ts, vals, res)
                    for w0, lo, hi in _windows(bts, wins[res]):
                        writer(res, w0).add_node(nid, bts[lo:hi], sids, [c[lo:hi] for c in cols])
            new_blocks = [p for p in (w.finish() for w in writers.values()) if p]
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        if pos > start:
            per_node = (time.perf_counter() - t0) / (pos - start)
            self._node_cut_s = per_node if not self._node_cut_s else 0.7 * self._node_cut_s + 0.3 * per_node
        for p in new_blocks:
            self._add_block(p)
        # Blocks are durable; the nodes' heads (all their pushes so far) may go.
        for nid in nodes[start:pos]:
            st = self._by_nid[nid]
            self._head_samples -= st.samples
            st.clear_head()
            self._head_nodes.discard(nid)
        self._cycle_pos = pos
        if pos == len(nodes):
            self._finish_cycle()
        return pos - start

    def _finish_cycle(self) -> None:
        # Every row of the covered generations is in a block now: they may go.
        for path in self._cycle_wals:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._cycle_nodes = None
        self._cycle_pos = 0
        self._cycle_wals = []
        firsts = (self._by_nid[n].first_ts() for n in self._head_nodes)
        self._head_first = min((f for f in firsts if f is not None), default=math.inf)

    def _cut_head(self) -> None:
        """Cut the whole head now (finishing a cycle in progress, else one full cycle)."""
        if self._cycle_nodes is None:
            self._start_cycle()
        self._cut_pending(None)

    def _retention(self, now: float) -> int:
        deleted = 0
        nxt = math.inf
        for res in RESOLUTIONS:
            keep_s = self.opts.retention[res]
            horizon = now - keep_s
            keep = []
            for b in self._blocks[res]:
                if b.max_ts < horizon:
                    if self._job is not None and any(s is b for s in self._job.blks):
                        self._abort_job()  # its input expired; the merge would be stale
                    b.close()
                    os.unlink(b.path)
                    deleted += 1
                else:
                    keep.append(b)
                    nxt = min(nxt, b.max_ts + keep_s)
            self._blocks[res] = keep
        if deleted:
            self._compact_dirty = True
        self._retention_next = nxt
        return deleted

    def _compact(self, now: float, full: bool, deadline: float | None = None) -> int:
        """Merge blocks per window: tiered while the window is open, all at once when final.

        Open windows merge the newest run of `merge_fanout` blocks of one tier
        into the next tier, so each sample is re-encoded O(log) times, not once
        per head cut; a finished window ends as one block at the higher zstd level.
        With a deadline a merge may span calls; no new one starts past it.
        """
        merged = 0
        if self._job is not None:
            if not self._run_job(deadline):
                return 0
            merged += 1
        if not full and not self._compact_dirty and now < self._compact_next:
            return merged  # nothing changed since a pass that found no work
        next_final = math.inf
        for res in RESOLUTIONS:
            width = self.opts.windows[res]
            windows = sorted({b.window for b in self._blocks[res]})
            for window in windows:
                final = full or window + width + self.opts.window_grace_s <= now
                if not final:
                    next_final = min(next_final, window + width + self.opts.window_grace_s)
                for _ in range(64):  # bounded: each pass merges or stops
                    blks = [b for b in self._blocks[res] if b.window == window]  # rank order
                    if not blks:
                        break
                    if final:
                        if not (len(blks) >= 2 or (blks and not blks[0].compacted)):
                            break
                        run = blks
                    else:
                        run = blks[len(blks) - _suffix(blks, blks[-1].tier):]
                        if len(run) < self.opts.merge_fanout:
                            break
                    if deadline is not None and time.perf_counter() >= deadline:
                        self._compact_dirty = True  # work left: look again next call
                        return merged
                    self._job = _MergeJob(res, window, run,
                                          self._new_writer(res, window, run, self.opts.zstd_level_compact), final)
                    if not self._run_job(deadline):
                        return merged
                    merged += 1
                    if final:
                        break
        self._compact_dirty = False
        self._compact_next = next_final
        return merged

    def _run_job(self, deadline: float | None) -> bool:
        """Advance the merge in progress until the deadline; True when it finished."""
        job = self._job
        assert job is not None
        w = job.writer
        first = job.pos
        try:
            while job.pos < len(job.nids):
                # at least one node per call, so a merge always ends
                if job.pos > first and deadline is not None and time.perf_counter() >= deadline:
                    return False
                nid = job.nids[job.pos]
                job.pos += 1
                holders = [b for b in job.blks if b.has_node(nid)]
                if len(holders) == 1 and not job.final:
                    w.copy_node(holders[0], nid)  # only one input has it: copy its frames as they are
                    continue
                parts = [g for g in (b.read_node(nid) for b in holders) if g is not None]
                if parts:
                    ts, sids, cols = merge_grids(parts, job.res)
                    w.add_node(nid, ts, sids, cols)
            if job.pos > first and deadline is not None and time.perf_counter() >= deadline:
                return False  # finish at the start of the next call
            path = w.finish()
        except BaseException:
            self._abort_job()
            raise
        self._job = None
        blks = job.blks
        gone = {id(b) for b in blks}
        rest = [b for b in self._blocks[job.res] if id(b) not in gone]
        self._blocks[job.res] = rest
        if path:
            self._add_block(path)
        self._blocks[job.res].sort(key=lambda b: b.rank)
        self._compact_dirty = True
        for b in blks:
            b.close()
            os.unlink(b.path)
        return True

    def _abort_job(self) -> None:
        if self._job is not None:
            self._job.writer.abort()
            self._job = None
            self._compact_dirty = True

    def _merge(self, res: int, window: int, blks: list[Block]) -> None:
        """Merge blocks of one window into one, now."""
        self._abort_job()
        self._job = _MergeJob(res, window, blks, self._new_writer(res, window, blks, self.opts.zstd_level_compact), True)
        self._run_job(None)

    # ----------------------------------------------------------------- query
    def now(self) -> float:
        """The store's clock: the later of the newest sample and the last maintain(now)."""
        t = max(self._max_ts, self._clock_now)
        return t if math.isfinite(t) else time.time()

    def choose_resolution(self, start: float, end: float, step: float) -> int:
        """Resolution (0 = raw, 60, 3600) a query_range with these bounds reads."""
        return q.choose_resolution(start, step, self.now(), self.opts.retention, RESOLUTIONS)

    def _gather(self, sid: int, res: int, lo: float, hi: float) -> tuple[np.ndarray, list[np.ndarray]] | None:
        ts_parts: list[np.ndarray] = []
        col_parts: list[list[np.ndarray]] = []
        for b in self._blocks[res]:
            if b.max_ts < lo or b.min_ts > hi:
                continue
            got = b.read_series(sid)
            if got is not None:
                ts_parts.append(got[0])
                col_parts.append(got[1])
        st = self._by_nid.get(self.catalog.node_of(sid))
        if st is not None and st.samples:
            got_h = st.series(sid)
            if got_h is not None:
                hts, hv = got_h
                if res == RAW:
                    ts_parts.append(hts)
                    col_parts.append([hv])
                elif hts.size:
                    bts, cols = rollup_grid(hts, hv[:, None], res)
                    ts_parts.append(bts)
                    col_parts.append([c[:, 0] for c in cols])
        if not ts_parts:
            return None
        if len(ts_parts) == 1:
            return ts_parts[0], col_parts[0]
        ts = np.concatenate(ts_parts)
        cols = [np.concatenate(c) for c in zip(*col_parts)]
        if ts.size > 1 and not (np.diff(ts) >= 0).all():
            order = np.argsort(ts, kind="stable")  # stable: the later block wins "last"
            ts = ts[order]
            cols = [c[order] for c in cols]
        return ts, cols

    def query_range(self, metric: str, matchers: Sequence[Matcher], start: float, end: float,
                    step: float, agg: str = "avg") -> list[SeriesResult]:
        """Aggregate each matching series onto bins [start + i*step, +step) for start + i*step <= end."""
        nbins = q.validate_range(start, end, step, agg)
        res = self.choose_resolution(start, end, step)
        out: list[SeriesResult] = []
        hi = start + nbins * step
        for sid in self.catalog.match(metric, matchers):
            got = self._gather(sid, res, start, hi)
            if got is None:
                continue
            ts, vals = q.aggregate(got[0], got[1], res, float(start), float(step), nbins, agg)
            if ts.size:
                out.append(SeriesResult(self.catalog.labels(sid), ts, vals.tolist()))
        return out

    def latest(self, node: str) -> tuple[float, dict[SeriesKey, float]] | None:
        """The node's most recent push as (ts, {series key: value}), or None if unknown."""
        st = self._nodes.get(node)
        if st is None:
            return None
        if st.cur is not None and st.cur.n:
            seg = st.cur
            row = seg.buf[seg.n - 1]
            return float(seg.ts[seg.n - 1]), {  # NaN = absent, as from a block
                self.catalog.key(int(s)): float(v) for s, v in zip(seg.sids, row) if not math.isnan(v)}
        for b in reversed(self._blocks[RAW]):
            if b.has_node(st.nid):
                grid = b.read_node(st.nid)
                if grid is None:
                    continue
                ts, sids, (vals,) = grid
                row = vals[-1]
                return float(ts[-1]), {
                    self.catalog.key(int(s)): float(v) for s, v in zip(sids, row) if not math.isnan(v)}
        return None

    def series(self, metric: str | None = None, matchers: Sequence[Matcher] = ()) -> list[dict[str, str]]:
        """Label sets (with __name__ and node) of known series matching metric and matchers."""
        return [self.catalog.labels(s) for s in self.catalog.match(metric, matchers)]

    def stats(self) -> dict[str, Any]:
        """Bytes on disk, sample and series counts, bytes per raw sample."""
        by_res = {res: sum(b.nbytes for b in self._blocks[res]) for res in RESOLUTIONS}
        total = 0
        for root, _dirs, files in os.walk(self.path):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except FileNotFoundError:
                    pass
        block_samples = sum(b.samples for b in self._blocks[RAW])
        samples = block_samples + self._head_samples
        return {
            "bytes_on_disk": total,
            "bytes_raw_blocks": by_res[RAW],
            "bytes_rollup_1m": by_res[60],
            "bytes_rollup_1h": by_res[3600],
            "bytes_wal": self._wal.size,
            "samples": samples,
            "samples_in_blocks": block_samples,
            "samples_in_head": self._head_samples,
            "series": len(self.catalog.series),
            "nodes": len(self.catalog.node_names),
            "blocks": {res: len(self._blocks[res]) for res in RESOLUTIONS},
            "bytes_per_sample": total / samples if samples else 0.0,
            "raw_block_bytes_per_sample": by_res[RAW] / block_samples if block_samples else 0.0,
            "dropped_duplicates": self.dropped_total,
        }

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release files and the directory lock (the head stays in the WAL for the next open)."""
        if self._lock_fd < 0:
            return
        self._abort_job()  # its .tmp goes; the inputs are intact
        self._wal.close()
        self.catalog.close()
        for blks in self._blocks.values():
            for b in blks:
                b.close()
        os.close(self._lock_fd)
        self._lock_fd = -1

    def __enter__(self) -> TimeSeriesStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _MergeJob:
    """A merge of blocks of one window in progress: its writer and the nodes still to merge."""

    __slots__ = ("res", "window", "blks", "writer", "nids", "pos", "final")

    def __init__(self, res: int, window: int, blks: list[Block], writer: BlockWriter, final: bool) -> None:
        self.res, self.window, self.blks, self.writer = res, window, list(blks), writer
        self.final = final  # re-encode every node at the compaction level
        self.nids = sorted({int(n) for b in blks for n in b.nodes["nid"]})
        self.pos = 0


def _wal_gen(path: str) -> int:
    return int(os.path.basename(path).split(".")[0])


def _suffix(blks: list[Block], tier: int) -> int:
    """Length of the trailing run of blocks of the given tier."""
    n = 0
    for b in reversed(blks):
        if b.tier != tier:
            break
        n += 1
    return n


def _windows(ts: np.ndarray, width: int) -> list[tuple[int, int, int]]:
    """(window start, lo, hi) row ranges of sorted times split at multiples of width."""
    wstart = (np.floor(ts / width) * width).astype(np.int64)
    bounds = np.flatnonzero(np.diff(wstart)) + 1
    los = np.r_[0, bounds]
    his = np.r_[bounds, ts.size]
    return [(int(wstart[lo]), int(lo), int(hi)) for lo, hi in zip(los, his)]
