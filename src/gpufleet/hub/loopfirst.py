"""The event loop goes before the ingest thread's next step.

The hub's event loop parses every request (1,000 nodes' pushes, the API's reads) and the ingest
thread runs the pushes' work, alert evaluations and the save: both Python, sharing one GIL. Each
time the loop made a system call (a socket read or write, its own wait for events) the ingest
thread took the GIL, and the loop got it back only when the interpreter forced a switch, 5 ms
later: a loop step of 0.3 ms of CPU took 5-30 ms, a pass over a few ready sockets 30-50 ms, and
a history query arriving then waited for all of it (bench_hub, traced: the week query's p99).

So the loop says when it is awake (woken by a socket, a timer or a thread handing it a result)
and when it goes back to waiting for events; the ingest thread, between pushes and between the
steps of its long jobs, waits while a loop is awake. Waiting releases the GIL at once, where a
thread that merely runs keeps it until forced. The wait is MAX_WAIT_S at most, and once one has
run out, none again until the loop has slept: a loop kept busy (say, by fleet pages asked for
over and over) then shares the GIL with ingest as before instead of holding it up. A thread that
wakes the loop (`woke`) counts it awake right away: the loop itself can say so only once it
holds the GIL again. (A 1 ms switch interval on top, so that the loop's first wait after waking
is shorter, was tried: the week query's p99 no lower, the hub's CPU 53 -> 63 % of a core.)

Only loops made by `new_event_loop` take part; with none running (tests, in-process use) the
wait returns at once.
"""

from __future__ import annotations

import asyncio
import selectors
import threading

MAX_WAIT_S = 0.05

_cv = threading.Condition(threading.Lock())
_awake: set[int] = set()  # ids of the gated loops awake now
_waiting = 0
_sleeps = 0  # times a gated loop went to sleep
_gave_up = -1  # _sleeps when a wait last ran out
_loop_threads: set[int] = set()  # the threads running gated loops: they never wait for themselves


def awake() -> bool:
    """A gated loop is running callbacks (or was just woken to)."""
    return bool(_awake)


def wait() -> None:
    """Called by the ingest thread between steps: returns once no gated loop is awake (at once in
    the common case), or after MAX_WAIT_S (then at once until a loop has slept)."""
    global _waiting, _gave_up
    if not _awake or _sleeps == _gave_up:  # read without the lock: the common case costs nothing
        return
    if threading.get_ident() in _loop_threads:  # a push stored right on the loop (none in the served hub)
        return
    with _cv:
        _waiting += 1
        try:
            if not _cv.wait_for(lambda: not _awake, MAX_WAIT_S):
                _gave_up = _sleeps
        finally:
            _waiting -= 1


def woke(loop: asyncio.AbstractEventLoop) -> None:
    """`loop` was just handed work from another thread (call_soon_threadsafe): it is awake from
    now on, for the caller's next `wait()`, though it has not run yet."""
    if isinstance(loop, GatedLoop) and not loop.is_closed():
        _awake.add(id(loop))


class _GatedSelector(selectors.DefaultSelector):
    """The loop's selector, marking the loop asleep while it blocks for events."""

    def __init__(self) -> None:
        super().__init__()
        self.loop_id = 0
        self.thread_id: int | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:  # nothing ready to run: the loop is going to sleep
            self.thread_id = threading.get_ident()
            _loop_threads.add(self.thread_id)
            _asleep(self.loop_id)
        try:
            return super().select(timeout)
        finally:
            _awake.add(self.loop_id)


def _asleep(loop_id: int) -> None:
    global _sleeps
    _sleeps += 1
    _awake.discard(loop_id)
    if _waiting and not _awake:
        with _cv:
            _cv.notify_all()


class GatedLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._gated = _GatedSelector()
        super().__init__(self._gated)
        self._gated.loop_id = id(self)

    def close(self) -> None:
        _asleep(id(self))
        if self._gated.thread_id is not None:
            _loop_threads.discard(self._gated.thread_id)
        super().close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    return GatedLoop()
