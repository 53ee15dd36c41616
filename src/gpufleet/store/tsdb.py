"""TimeSeriesStore: ties the series index, WAL, head, blocks, rollups and queries together.

Directory layout::

    LOCK                      flock'd while open (one writer per directory)
    series.log                series index: node and series ids (append-only, CRC'd)
    wal/<gen>.log             WAL of the head (append-only, CRC'd)
    blocks/r<res>/<window>-<seq>.blk   immutable blocks (res 0 = raw, 60, 3600)

Write path: append -> WAL (one os.write, so in the OS before returning) ->
head.  ``maintain(now)`` freezes the head into level-0 blocks (raw + 1m + 1h
rollups, split at raw window boundaries), merges blocks of a window into one
(re-encoding at a higher zstd level), and drops blocks past retention.

This module is the front (ingest and queries); opening and recovery live in
``recovery.py``, head cuts, merges and retention in ``compaction.py``.
"""
from __future__ import annotations

import fcntl
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import formats
from .formats import StoreInUse
from . import query as q
from .base import log
from .block import Block, BlockDamaged
from .series_index import SeriesIndex
from .serieslist import SeriesList
from .compaction import Compaction
from .head import SID, Keys, NodeState, Schema, Segment
from .recovery import DATA, ROWS, SCHEMA, SCHEMA_EVERY, Recovery
from .rollup import rollup_grid
from .types import MAX_TS, RAW, RESOLUTIONS, Matcher, SeriesKey, StoreOptions

__all__ = ["SeriesResult", "TimeSeriesStore", "log"]


def _identities(keys: Keys) -> Iterable[object]:
    """What names each key of a list by identity: the key object, or of a SeriesList the
    metric and its label set object (alive while the list is: no id is reused meanwhile)."""
    if type(keys) is SeriesList:
        return zip(keys.metrics, keys.set_ids())
    return map(id, keys)


class SeriesResult(NamedTuple):
    labels: dict[str, str]
    timestamps: np.ndarray
    values: list[float]


class TimeSeriesStore(Recovery, Compaction):
    """Embedded time-series store for the hub. See ``gpufleet.store`` for the API summary."""

    def __init__(self, path: str, options: StoreOptions | None = None) -> None:
        self.path = os.path.abspath(path)
        self.opts = options or StoreOptions()
        self.opts.validate()
        formats.make_dir(self.path)
        self._lock_fd = formats.open_file(os.path.join(self.path, "LOCK"), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreInUse(f"store {self.path} is open in another process (a running hub?): stop it first") from None
        self.damage = []
        self._used_nodes = self._used_series = 0
        try:
            self._open()
        except BaseException:
            os.close(self._lock_fd)  # a refused or failed open leaves the directory free
            self._lock_fd = -1
            raise

    def _open(self) -> None:
        formats.make_private(self.path)
        self.series_index = SeriesIndex(os.path.join(self.path, "series.log"), self._damaged)
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
        self._job = None
        self._compact_dirty = True  # blocks changed since the last full compaction pass
        self._compact_next = -math.inf  # when an open window next turns final
        self._retention_next = -math.inf  # when the oldest block next expires
        self.dropped_total = 0
        self._load_blocks()
        self._replay_wal()
        self.series_index.report(self._used_nodes, self._used_series)

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
            nid = self.series_index.node_id(node)
            assert nid is not None
            st = self._state_by_nid(nid)
            assert st is not None
        return st

    def _segment_for(self, st: NodeState, keys: Sequence[SeriesKey]) -> tuple[Schema, Segment, np.ndarray | None]:
        """The schema of this series list (declared in the WAL when new), the head and its columns."""
        k = keys if type(keys) is tuple or type(keys) is SeriesList else tuple(keys)
        sch = st.sch
        if sch is None or sch.keys is not k:
            if sch is None or not (len(k) == len(sch.keys) and k == sch.keys):
                sch = st.find_schema(k)
                if sch is None:
                    sch = self._new_schema(st, k)
            sch.keys = k  # the caller's tuple: the next push in this shape matches by identity
        sch.since_schema += 1
        # again when a cut cycle rotated the WAL since its schema record, and every
        # SCHEMA_EVERY pushes, so one damaged record never orphans a node's whole head
        if sch.gen != self._wal_gen or sch.since_schema >= SCHEMA_EVERY:
            self._wal.append(SCHEMA.pack(1, sch.schema_id, st.nid, sch.sids.size) + sch.sids.astype("<u4").tobytes())
            sch.gen = self._wal_gen
            sch.since_schema = 0
        st.use_schema(sch)
        seg, cols = st.head_for(sch)
        return sch, seg, cols

    def _new_schema(self, st: NodeState, k: Keys) -> Schema:
        got = self._sids_like(st.sch, st.nid, k)
        if got is None:
            ids, normal = self.series_index.resolve(st.nid, k)
            got = np.array(ids, dtype=SID), normal
        sids, normal = got
        if not (sids[1:] > sids[:-1]).all() and np.unique(sids).size != sids.size:  # new series ascend
            seen: set[SeriesKey] = set()
            for key, sid in zip(k, sids):
                if int(sid) in seen:  # type: ignore[comparison-overlap]
                    raise ValueError(f"series {key!r} appears twice in one batch for node {st.name!r}")
                seen.add(int(sid))  # type: ignore[arg-type]
        sch = Schema(self._next_schema, k, sids)
        sch.normal = normal
        self._next_schema += 1
        return sch

    def _sids_like(self, prev: Schema | None, nid: int,
                   k: Keys) -> tuple[np.ndarray, bool] | None:
        """Ids of a node's changed series list from the one it had: a process or user coming or
        going changes a few series of a thousand, and the hub hands back the very key objects
        of the series that stay (of a SeriesList: the metric and the very label set object), so
        those are found by identity (only keys that were normal when first named: nothing to
        check again); the index looks up the rest.
        None: nothing to go by (the index resolves the whole list)."""
        if prev is None or not prev.normal or type(prev.keys) is not type(k):
            return None
        if type(k) is SeriesList and prev.keys.common != k.common:  # type: ignore[union-attr]
            return None  # the node's own labels changed: every series is another
        ident = _identities
        by_id = dict(zip(ident(prev.keys), prev.sids.tolist()))
        got: list[int | None] = list(map(by_id.get, ident(k)))
        if None not in got:
            return np.array(got, dtype=SID), True
        miss = [i for i, sid in enumerate(got) if sid is None]
        if 2 * len(miss) > len(got):
            return None  # mostly new: as a whole (a node's first run, the index's own checks)
        ids, normal = self.series_index.resolve(nid, [k[i] for i in miss])
        for i, sid in zip(miss, ids):
            got[i] = sid
        return np.array(got, dtype=SID), normal

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
        sch, seg, cols = self._segment_for(st, keys)
        ts = float(ts)
        payload = DATA.pack(2, sch.schema_id, ts, n) + arr.tobytes()
        self._wal.append(payload)
        seg.append(ts, arr, cols)
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
        sch, seg, cols = self._segment_for(st, keys)
        self._wal.append(ROWS.pack(3, sch.schema_id, tss.size, n) + tss.tobytes() + arr.tobytes())
        seg.append_rows(tss, arr, cols)
        self._note_appended(st, float(tss[0]), float(tss[-1]), arr.size)
        return dropped

    def flush(self) -> None:
        """fsync the WAL and series index (appends are already in the OS; this covers power loss)."""
        self.series_index.flush(True)
        self._wal.flush(True)

    def flush_later(self) -> Callable[[], None]:
        """flush() in two steps: this (under the lock the caller holds for the store) takes copies of
        the files' descriptors; the call it returns fsyncs what was appended so far and closes them,
        without the lock. An fsync took 5-70 ms at 1,000 nodes, and reads and appends waited."""
        fds = [self.series_index.dup()]
        try:
            fds.append(self._wal.dup())
        except BaseException:
            os.close(fds[0])
            raise

        def sync() -> None:
            try:
                for fd in fds:
                    os.fsync(fd)
            finally:
                for fd in fds:
                    os.close(fd)

        return sync

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
        for b in list(self._blocks[res]):
            if b.max_ts < lo or b.min_ts > hi:
                continue
            try:
                got = b.read_series(sid)
            except BlockDamaged as e:
                self._set_aside(b, str(e))  # noticed now: answer from the rest, and from now on
                continue
            if got is not None:
                ts_parts.append(got[0])
                col_parts.append(got[1])
        st = self._by_nid.get(self.series_index.node_of(sid))
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
        for sid in self.series_index.match(metric, matchers):
            got = self._gather(sid, res, start, hi)
            if got is None:
                continue
            ts, vals = q.aggregate(got[0], got[1], res, float(start), float(step), nbins, agg)
            if ts.size:
                out.append(SeriesResult(self.series_index.labels(sid), ts, vals.tolist()))
        return out

    def latest(self, node: str) -> tuple[float, dict[SeriesKey, float]] | None:
        """The node's most recent push as (ts, {series key: value}), or None if unknown."""
        st = self._nodes.get(node)
        if st is None:
            return None
        seg = st.cur
        row = seg.newest() if seg is not None else None
        if seg is not None and row is not None:
            return float(seg.ts[seg.n - 1]), self._named(seg.sids, row)  # NaN = absent, as from a block
        for b in reversed(list(self._blocks[RAW])):
            if b.has_node(st.nid):
                try:
                    grid = b.read_node(st.nid)
                except BlockDamaged as e:
                    self._set_aside(b, str(e))
                    continue
                if grid is None:
                    continue
                ts, sids, (vals,) = grid
                return float(ts[-1]), self._named(sids, vals[-1])
        return None

    def _named(self, sids: np.ndarray, row: np.ndarray) -> dict[SeriesKey, float]:
        """{key: value} of a row's present values whose series have names."""
        have = ~np.isnan(row)
        keys = self.series_index.keys(sids[have].tolist())
        return {k: v for k, v in zip(keys, row[have].tolist()) if k is not None}

    def count_series(self, metric: str, matchers: Sequence[Matcher]) -> int:
        """How many series query_range would read for these (an index lookup, no data read)."""
        return sum(1 for _ in self.series_index.match(metric, matchers))

    def series(self, metric: str | None = None, matchers: Sequence[Matcher] = ()) -> list[dict[str, str]]:
        """Label sets (with __name__ and node) of known series matching metric and matchers."""
        return [self.series_index.labels(s) for s in self.series_index.match(metric, matchers)]

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
            "series": self.series_index.count,
            "nodes": len(self.series_index.node_names),
            "blocks": {res: len(self._blocks[res]) for res in RESOLUTIONS},
            "bytes_per_sample": total / samples if samples else 0.0,
            "raw_block_bytes_per_sample": by_res[RAW] / block_samples if block_samples else 0.0,
            "dropped_duplicates": self.dropped_total,
            "damaged": len(self.damage),
        }

    def verify_blocks(self) -> int:
        """Check every block's frames now (open reads only indexes); set damaged ones aside. Returns how many."""
        bad = 0
        for res in RESOLUTIONS:
            for b in list(self._blocks[res]):
                why = b.verify() if not b.verified else ""
                if why:
                    self._set_aside(b, why)
                    bad += 1
        return bad

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release files and the directory lock (the head stays in the WAL for the next open)."""
        if self._lock_fd < 0:
            return
        self._abort_job()  # its .tmp goes; the inputs are intact
        try:
            self.series_index.write_snapshot()
        except OSError as e:  # a full disk must not keep the store from closing; series.log has it all
            log.warning("store: could not write %s: %s", self.series_index.snap_path, e)
        self._wal.close()
        self.series_index.close()
        for blks in self._blocks.values():
            for b in blks:
                b.close()
        os.close(self._lock_fd)
        self._lock_fd = -1

    def __enter__(self) -> TimeSeriesStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
