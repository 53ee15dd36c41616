"""The state a TimeSeriesStore's parts share (declared once, for the type checker)."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import time

from . import formats
from .block import Block
from .head import NodeState
from .recordlog import RecordLog
from .series_index import SeriesIndex
from .types import StoreOptions

if TYPE_CHECKING:
    from .compaction import MergeJob

log = logging.getLogger("gpufleet.store")


class StoreState:
    """Attributes set by ``TimeSeriesStore.__init__`` and used by its recovery and compaction parts."""

    path: str
    opts: StoreOptions
    series_index: SeriesIndex
    _nodes: dict[str, NodeState]
    _by_nid: dict[int, NodeState]
    _blocks: dict[int, list[Block]]
    _seq: int
    _max_ts: float
    _clock_now: float
    _head_nodes: set[int]
    _head_samples: int
    _head_first: float
    _next_schema: int
    _wal: RecordLog
    _wal_gen: int
    _cycle_nodes: list[int] | None
    _cycle_pos: int
    _cycle_wals: list[str]
    _node_cut_s: float
    _job: MergeJob | None
    _compact_dirty: bool
    _compact_next: float
    _retention_next: float
    damage: list[str]  # one line per damaged file or record met since open (also logged)
    _used_nodes: int  # 1 + the highest node id the blocks and WAL use
    _used_series: int

    def _damaged(self, msg: str) -> None:
        """Say once, as one error line, what was damaged and what it cost."""
        log.error("store: %s", msg)
        self.damage.append(msg)

    def _set_aside(self, b: Block, why: str) -> None:
        """Stop serving a damaged block: rename it ``.corrupt`` and say what it held."""
        job = self._job
        if job is not None and any(x is b for x in job.blks):
            self._abort_job()
        self._blocks[b.res] = [x for x in self._blocks[b.res] if x is not b]
        self._compact_dirty = True
        b.close()
        try:
            aside = formats.set_aside(b.path)
        except FileNotFoundError:
            aside = "(gone)"
        span = " to ".join(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) for t in (b.min_ts, b.max_ts))
        self._damaged(f"block {b.path} is damaged ({why}); set aside as {aside}: "
                      f"{b.samples} samples of {len(b.nodes)} node(s) from {span} are no longer served")

    def _abort_job(self) -> None:
        raise NotImplementedError

    def _block_dir(self, res: int) -> str:
        return os.path.join(self.path, "blocks", f"r{res}")

    def _wal_files(self) -> list[str]:
        d = os.path.join(self.path, "wal")
        formats.make_dir(d)
        return [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".log")]

    def ts_limit(self) -> float:
        raise NotImplementedError

    def _note_appended(self, st: NodeState, first: float, last: float, count: int) -> None:
        raise NotImplementedError
