"""Wall-clock time for snapshots and pushes, with an offset that fault tests set.

`GPUFLEET_TEST_CLOCK_OFFSET=SECONDS` shifts this process's clock (read once, at first use):
an agent whose node clock is minutes off, without touching the host's clock.
"""

from __future__ import annotations

import os
import time

_offset: float | None = None


def offset() -> float:
    global _offset
    if _offset is None:
        try:
            _offset = float(os.environ.get("GPUFLEET_TEST_CLOCK_OFFSET", "") or 0.0)
        except ValueError:
            _offset = 0.0
    return _offset


def now() -> float:
    return time.time() + (_offset if _offset is not None else offset())
