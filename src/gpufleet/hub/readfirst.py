"""Reads of the history go before pushes waiting to be ingested.

A hub taking 1,000 nodes' pushes keeps a core busy with ingest threads; a history query among
them shares the GIL and the store lock with each. While a read runs, pushes that have not begun
wait at the gate (a short while at most: a stream of reads must not stop ingest); pushes already
past it finish. The agents do not notice: their answer comes a few milliseconds later.
(Making pushes take turns one at a time was tried too: it cost ~12 % more CPU per push in thread
hand-offs.)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

MAX_WAIT_S = 0.25  # a push waits at most this long for reads, however many follow each other
# While a read runs, a thread waiting for the GIL asks for it after this long, not 5 ms: the read
# hops between the event loop and its worker thread, and each hop waited up to a whole interval
# behind a push finishing or a background job between its yields. Only while reads run: all the
# time it cost the hub ~10 % more CPU (tried in an earlier session).
READ_SWITCH_S = 0.0005

_switch_lock = threading.Lock()
_switch_reads = 0  # reads running in this process, of every hub in it (the interval is the process's)
_switch_saved = 0.005


def _switch_fast(on: bool) -> None:
    global _switch_reads, _switch_saved
    with _switch_lock:
        if on:
            _switch_reads += 1
            if _switch_reads == 1:
                _switch_saved = sys.getswitchinterval()
                sys.setswitchinterval(READ_SWITCH_S)
        else:
            _switch_reads -= 1
            if not _switch_reads:
                sys.setswitchinterval(_switch_saved)


@contextmanager
def fast_switch() -> Iterator[None]:
    """READ_SWITCH_S while inside: for a read from the moment the app sees its request, before it
    is authenticated and may hold pushes (HubApp): its first hops between the event loop and
    the threads (middleware, the credential check, the route) waited up to 5 ms each."""
    _switch_fast(True)
    try:
        yield
    finally:
        _switch_fast(False)


class ReadFirst:
    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._reads = 0

    @contextmanager
    def reading(self, first: bool = True) -> Iterator[None]:
        """A read; with `first=False` (background work) it goes after the reads running now and
        does not hold pushes either."""
        if not first:
            self.wait()
            yield
            return
        with self._cv:
            self._reads += 1
        try:
            with fast_switch():
                yield
        finally:
            with self._cv:
                self._reads -= 1
                if not self._reads:
                    self._cv.notify_all()

    def busy(self) -> bool:
        """A read that goes first is running (or waiting for the store): work in slices ends its slice."""
        return self._reads > 0

    def wait(self) -> None:
        """Called by a push before its work: returns at once unless a read is running."""
        if self._reads:  # read without the lock: the common case costs nothing
            with self._cv:
                self._cv.wait_for(lambda: not self._reads, MAX_WAIT_S)
