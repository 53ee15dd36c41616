"""One thread that runs the pushes' ingest, in arrival order, off the event loop.

asyncio.to_thread handed each push to the default executor: a context copy, a work item, a
semaphore and one of several threads per push, which then queued on the store lock and the GIL
anyway (ingest is Python holding the GIL, one push at a time in effect). One long-lived worker
does the same work with less: a C queue in, and results handed back to the event loop in batches,
one wake-up for all the pushes finished since the loop last ran (not a self-pipe write each).
Reads (query_range, pages) run in Starlette's own thread pool, not behind this queue. The hub's
background steps that are Python work (alert evaluation, the latest-snapshot save) run here too,
between pushes (jobs.py, `with_pushes`).

The thread starts on first use and ends after IDLE_S without work, so apps that come and go
(tests) leave no threads behind. `stop()` (the app's shutdown) runs what is queued first, so no
push is still being stored when the hub closes its store after the server stopped.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import loopfirst

T = TypeVar("T")
IDLE_S = 30.0

_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", asyncio.AbstractEventLoop] | None  # None: stop


class IngestWorker:
    def __init__(self, name: str = "gpufleet-ingest") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Finished jobs per loop, and whether that loop has a drain scheduled already.
        self._done: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the worker thread; its result, or its exception raised here."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, fut, loop))
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()
        return await fut

    def stop(self, timeout: float | None = None) -> None:
        """Let the thread run the jobs queued so far, then end; wait for that (at most `timeout` s)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._jobs.put(None)
        if thread is not None:
            thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._thread is not me:  # stopped and replaced meanwhile: the new one works
                        return
                    # run() put its job before looking at _thread: either it is in the queue now,
                    # or run() finds _thread None after this and starts a new thread.
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            if job is None:
                return
            fn, args, fut, loop = job
            try:
                result, ok = fn(*args), True
            except BaseException as e:  # noqa: BLE001 (handed to the awaiting coroutine, raised there)
                result, ok = e, False
            del job, args  # no reference to the push body while waiting for the next one
            self._finish(loop, fut, ok, result)

    def _finish(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], ok: bool, result: Any) -> None:
        with self._lock:
            done = self._done.get(loop)
            if done is not None:  # a drain is scheduled on that loop and has not run yet: it takes this too
                done.append((fut, ok, result))
                return
            self._done[loop] = [(fut, ok, result)]
        try:
            # Counted awake first: marked after, a loop quick enough to have drained and slept
            # meanwhile would be held awake, and this thread's next step wait for nothing.
            loopfirst.woke(loop)  # it runs the drain before this thread's next step (loopfirst.py)
            loop.call_soon_threadsafe(self._drain, loop)
        except RuntimeError:  # the loop closed meanwhile: nobody waits for the result
            with self._lock:
                self._done.pop(loop, None)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            done = self._done.pop(loop, [])
        for fut, ok, result in done:
            if fut.cancelled():
                continue
            if ok:
                fut.set_result(result)
            else:
                fut.set_exception(result)
