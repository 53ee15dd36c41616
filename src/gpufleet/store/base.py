"""The state a TimeSeriesStore's parts share (declared once, for the type checker)."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .block import Block
from .series_index import SeriesIndex
from .head import NodeState
from .types import StoreOptions
from .wal import RecordLog

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

    def _block_dir(self, res: int) -> str:
        return os.path.join(self.path, "blocks", f"r{res}")

    def _wal_files(self) -> list[str]:
        d = os.path.join(self.path, "wal")
        os.makedirs(d, exist_ok=True)
        return [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".log")]

    def ts_limit(self) -> float:
        raise NotImplementedError

    def _note_appended(self, st: NodeState, first: float, last: float, count: int) -> None:
        raise NotImplementedError
