"""The cyclic GC's passes on a clock, between pushes, never while an API read runs.

Every push replaces its node's kept snapshot, ~50 tracked lists (the decoded records' list
fields), and alert evaluation replaces its state every few seconds. CPython starts a young pass
when allocations minus frees pass a threshold, and such churn leaves that count near zero: at
1,000 nodes its passes came every ~5 s, each over the whole fleet's latest snapshots (70-240 ms
holding the GIL, and a history query arriving meanwhile waited: the week query's p99). Run every
YOUNG_EVERY_S instead, a young pass scans what a quarter second left (a few ms); each object is still
scanned about once there, so the CPU is the same.

The collector's count-based passes stay on (a fleet joining grows it fast), but a young pass run
here resets that count, so the older generations are done here too: the middle one every
MIDDLE_EVERY_S (as often as the counts gave at 1,000 nodes), the oldest after `threshold[2]`
middle passes once the heap has grown by a quarter since the last full pass (CPython's own rule
counts objects moved into the oldest generation, which Python cannot read; the heap's blocks are
a cheap measure of the same growth, and keep full passes rare with millions of long-lived series
and shapes that stay).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable

YOUNG_EVERY_S = 0.25
MIDDLE_EVERY_S = 60.0


class GcPace:
    def __init__(self, busy: Callable[[], bool], clock: Callable[[], float] = time.monotonic,
                 collect: Callable[[int], int] = gc.collect,
                 heap: Callable[[], int] = sys.getallocatedblocks) -> None:
        self.busy = busy  # an API read is running: no pass starts now
        self.clock = clock
        self.collect = collect
        self.heap = heap
        self._next = clock() + YOUNG_EVERY_S
        self._middle_at = clock() + MIDDLE_EVERY_S
        self._middle = 0  # middle passes since the last full one
        self._heap = heap()  # after the last full pass (or at start)

    def maybe(self) -> int | None:
        """Called between pushes: the generation collected now, or None (not due, or a read runs)."""
        now = self.clock()
        if now < self._next or not gc.isenabled() or self.busy():
            return None
        self._next = now + YOUNG_EVERY_S
        t2 = gc.get_threshold()[2]
        gen = 0
        if now >= self._middle_at:
            self._middle_at = now + MIDDLE_EVERY_S
            gen = 1
            if self._middle >= t2 and self.heap() > self._heap * 5 // 4:
                gen = 2
        self.collect(gen)
        if gen == 1:
            self._middle += 1
        elif gen == 2:
            self._middle = 0
            self._heap = self.heap()
        return gen
