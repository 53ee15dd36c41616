"""Store upkeep: cut the head into blocks, merge blocks per window, apply retention.

The head cut is a *cycle* that may span many ``maintain(budget_s=...)`` calls:
it starts a new WAL generation and marks the nodes with head data as pending;
each call cuts some pending nodes (each node's whole head, including pushes
since the rotation) into blocks of their own; when none is pending the older
generations are deleted.  A segment whose schema record lies in an older
generation writes it again before its next push, so each generation replays
on its own.  Merges run one at a time, node by node, and may span calls too;
inputs holding a node alone (a cycle's blocks) are copied frame for frame,
except in the final merge of a window, which re-encodes everything.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import numpy as np

from .base import StoreState
from .block import Block, BlockDamaged, BlockWriter
from .rollup import merge_grids, rollup_grid
from .types import RAW, RESOLUTIONS, ROLLUPS
from .recordlog import RecordLog
from .recovery import WAL_MAGIC


# Names added to series.snap per budgeted maintain() call: ~10-30 ms of encoding, so the
# 730k series of a 1,000-node fleet's first minutes catch up in a few minutes, never a stall.
SNAPSHOT_SLICE = 5000


class Compaction(StoreState):
    _yield_to: Callable[[], bool] | None = None

    def maintain(self, now: float | None = None, *, full: bool = False,
                 budget_s: float | None = None, yield_to: Callable[[], bool] | None = None) -> dict[str, int]:
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

        ``yield_to`` (with a budget): while it returns True, the call ends at the next
        point where it would check its budget, as if spent (the hub: a history read
        waits for the store's lock; a slice held it up to the whole budget).

        Returns counts: ``cut`` 1 if head data was cut, ``cut_nodes``,
        ``pending_nodes`` (still to cut in this cycle), ``merged`` (merges
        finished), ``deleted`` (blocks past retention).
        """
        deadline = None if budget_s is None or full else time.perf_counter() + float(budget_s)
        self._yield_to = yield_to if deadline is not None else None
        try:
            return self._maintain(now, full, deadline)
        finally:
            self._yield_to = None

    def _over(self, deadline: float | None, ahead: float = 0.0) -> bool:
        """Past the deadline (or `ahead` seconds from it), or asked to yield (a budgeted call)."""
        if deadline is None:
            return False
        return time.perf_counter() + ahead >= deadline or (self._yield_to is not None and self._yield_to())

    def _maintain(self, now: float | None, full: bool, deadline: float | None) -> dict[str, int]:
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
        if not self._over(deadline):
            done["merged"] += self._compact(now, full, deadline)
        if not self._over(deadline):
            # the copy series.log is rebuilt from when damaged: new names, a slice per call
            self.series_index.write_snapshot(None if deadline is None else SNAPSHOT_SLICE)
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
        self._wal = RecordLog(os.path.join(self.path, "wal", f"{self._wal_gen:010d}.log"), WAL_MAGIC)
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
                if pos > start and self._over(deadline, self._node_cut_s):
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
                    if self._over(deadline):
                        self._compact_dirty = True  # work left: look again next call
                        return merged
                    damaged = [(b, why) for b in run if b.data_crc is not None and not b.verified
                               for why in [b.verify()] if why]
                    if damaged:  # never copy damaged frames into a new block: set them aside first
                        for b, why in damaged:
                            self._set_aside(b, why)
                        continue
                    self._job = MergeJob(res, window, run,
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
                if job.pos > first and self._over(deadline):
                    return False
                nid = job.nids[job.pos]
                job.pos += 1
                holders = [b for b in job.blks if b.has_node(nid)]
                if len(holders) == 1 and not job.final:
                    w.copy_node(holders[0], nid)  # only one input has it: copy its frames as they are
                    continue
                try:
                    parts = [g for g in (b.read_node(nid) for b in holders) if g is not None]
                except BlockDamaged as e:
                    # a data problem, not the caller's: drop this merge, set the block
                    # aside, and let the next pass merge what is left
                    self._set_aside(e.block, str(e))
                    return True
                if parts:
                    ts, sids, cols = merge_grids(parts, job.res)
                    w.add_node(nid, ts, sids, cols)
            if job.pos > first and self._over(deadline):
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


class MergeJob:
    """A merge of blocks of one window in progress: its writer and the nodes still to merge."""

    __slots__ = ("res", "window", "blks", "writer", "nids", "pos", "final")

    def __init__(self, res: int, window: int, blks: list[Block], writer: BlockWriter, final: bool) -> None:
        self.res, self.window, self.blks, self.writer = res, window, list(blks), writer
        self.final = final  # re-encode every node at the compaction level
        self.nids = sorted({int(n) for b in blks for n in b.nodes["nid"]})
        self.pos = 0


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
