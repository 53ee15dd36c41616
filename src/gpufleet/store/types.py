"""Shared types of the time-series store: series keys, options (matchers: gpufleet.syntax)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..syntax import Matcher as Matcher  # re-exported: the store's matchers are the PromQL ones

# (metric name, sorted (label, value) pairs). Tuples so they hash and compare cheaply.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

RAW = 0  # resolution 0 = raw samples; rollups are named by their bucket width in seconds
MINUTE = 60
HOUR = 3600
RESOLUTIONS: tuple[int, ...] = (RAW, MINUTE, HOUR)
ROLLUPS: tuple[int, ...] = (MINUTE, HOUR)
AGGS: frozenset[str] = frozenset({"avg", "max", "min", "last"})

# Timestamps the store can name and encode: block files are named by their window
# start in 12 digits and windows are int64, so a sample must lie in [0, MAX_TS]
# (2**33 s is the year 2242); the clock check in the store is far tighter.
MAX_TS = float(2**33)


def _default_retention() -> dict[int, float]:
    return {RAW: 2 * 86400.0, MINUTE: 30 * 86400.0, HOUR: 400 * 86400.0}


def _default_windows() -> dict[int, int]:
    # Block windows nest (7200 divides 86400 divides 2592000) so a raw window's
    # rollups never straddle a rollup window; bucket widths divide the raw window.
    return {RAW: 7200, MINUTE: 86400, HOUR: 30 * 86400}


@dataclass(slots=True)
class StoreOptions:
    """Tunables; the defaults are the product defaults."""

    retention: dict[int, float] = field(default_factory=_default_retention)
    windows: dict[int, int] = field(default_factory=_default_windows)
    # The in-memory head is frozen into a block once it holds this many seconds
    # of data (or max_head_samples), bounding memory and WAL replay time.
    head_span_s: float = 300.0
    max_head_samples: int = 40_000_000
    # Blocks of a still-open window are merged once this many pile up, so a
    # query never has to visit hundreds of small blocks.
    merge_fanout: int = 8
    # A window is final (merged regardless of fanout) this long after its end.
    window_grace_s: float = 600.0
    zstd_level_head: int = 3
    zstd_level_compact: int = 9
    # Samples more than this far ahead of the host's clock are refused: one absurd
    # timestamp would otherwise become the node's dedup clock (every later real push
    # dropped as a duplicate) and a block that never expires. The hub refuses pushes
    # outside its own, narrower window first; this is the store's own backstop.
    max_future_s: float = 3600.0

    def validate(self) -> None:
        if not (0 <= self.max_future_s <= MAX_TS):
            raise ValueError("max_future_s must be between 0 and MAX_TS")
        for res in RESOLUTIONS:
            if res not in self.retention or self.retention[res] <= 0:
                raise ValueError(f"retention for resolution {res} must be > 0")
            if res not in self.windows:
                raise ValueError(f"window for resolution {res} missing")
        raw_w = self.windows[RAW]
        for res in ROLLUPS:
            if raw_w % res or self.windows[res] % raw_w:
                raise ValueError("block windows must nest: rollup width | raw window | rollup window")
