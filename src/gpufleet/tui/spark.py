"""Sparklines as text: one cell per point, a gap (no data) stays blank rather than drawn as 0."""

from __future__ import annotations

from collections.abc import Sequence

TICKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], lo: float | None = None, hi: float | None = None) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return ""
    lo = min(known) if lo is None else lo
    hi = max(known) if hi is None else hi
    span = hi - lo
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            r = 0.0 if span <= 0 else min(max((v - lo) / span, 0.0), 1.0)
            out.append(TICKS[min(len(TICKS) - 1, int(r * len(TICKS)))])
    return "".join(out)
