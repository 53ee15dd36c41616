"""The cyclic GC's passes on a clock, between pushes, never while an API read runs.

Every push replaces its node's kept snapshot, ~50 tracked lists (the decoded records' list
fields), and alert evaluation replaces its state every few seconds. CPython starts a young pass
when allocations minus frees pass a threshold, and such churn leaves that count near zero: at
1,000 nodes its passes came every ~5 s, each over the whole fleet's latest snapshots (70-240 ms
holding the GIL, and a history query arriving meanwhile waited: the week query's p99); each
middle pass (every ~55 s) walked them again, with whatever a join had just made (80-310 ms).

Here a young pass runs every YOUNG_EVERY_S and scans what that time left (a ms or so); what
survives it is frozen (gc.freeze: moved out of the collector's sight, no walk), so no later young
or middle pass walks it again. Frozen objects are freed by their reference counts as ever; only
cycles among them wait, for a full pass: every OLD_CHECK_S, once `threshold[2]` checks have gone
by and the heap (sys.getallocatedblocks) has grown by a quarter since the last one, everything is
unfrozen, collected and frozen again (CPython's rule for full passes is the same quarter, of
objects moved into the oldest generation, which Python cannot read). The usage report's own
freeze/unfreeze (usage/report.py) leaves things in the oldest generation: equally out of sight.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable

# Every 50 ms, not 250: a pass over what an alert evaluation or a round of new series shapes left
# took 20-50 ms, and a request arriving meanwhile waited for all of it (bench_hub steady, two runs
# each: the week query's p99 62 / 70 ms -> 51 / 29 ms; passes over 3 ms 25-27 -> 20-21).
YOUNG_EVERY_S = 0.05
OLD_CHECK_S = 60.0


class GcPace:
    def __init__(self, busy: Callable[[], bool], clock: Callable[[], float] = time.monotonic,
                 collect: Callable[[int], int] = gc.collect, freeze: Callable[[], None] = gc.freeze,
                 unfreeze: Callable[[], None] = gc.unfreeze,
                 heap: Callable[[], int] = sys.getallocatedblocks) -> None:
        self.busy = busy  # an API read is running: no pass starts now
        self.clock = clock
        self.collect = collect
        self.freeze = freeze
        self.unfreeze = unfreeze
        self.heap = heap
        self._next = clock() + YOUNG_EVERY_S
        self._check_at = clock() + OLD_CHECK_S
        self._checks = 0  # since the last full pass
        self._heap = heap()  # after the last full pass (or at start)

    def maybe(self) -> int | None:
        """Called between pushes: the generation collected now, or None (not due, or a read runs)."""
        now = self.clock()
        if now < self._next or not gc.isenabled() or self.busy():
            return None
        self._next = now + YOUNG_EVERY_S
        gen = 0
        if now >= self._check_at:
            self._check_at = now + OLD_CHECK_S
            self._checks += 1
            if self._checks >= gc.get_threshold()[2] and self.heap() > self._heap * 5 // 4:
                gen = 2
                self._checks = 0
                self.unfreeze()
        self.collect(gen)
        self.freeze()
        if gen == 2:
            self._heap = self.heap()
        return gen
