"""The hub's background jobs under one supervisor: no exception ends a job.

Each job (node status, flush, store upkeep, retention, alerts, remote write, pulls...) runs
its step through `Jobs`. A step that raises is counted (`gpufleet_hub_background_errors_total
{job=...}`), logged once per distinct error (later repeats only counted), and retried with a
capped exponential backoff; while it keeps failing `/healthz` answers 503 naming it. The
first success after failures logs the recovery with how many errors were seen.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..catalogue import name_of

log = logging.getLogger("gpufleet.hub")

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


@dataclass(slots=True)
class JobState:
    errors_total: int = 0
    failing_since: float | None = None  # wall clock of the first failure of the current run
    consecutive: int = 0
    last_error: str = ""
    retry_at: float = 0.0  # monotonic: no attempt before this
    seen: dict[str, int] = field(default_factory=dict)  # distinct error -> count, this failing run


class Paused(Exception):
    """A job that cannot work for a known reason (disk full): its message says it all."""


# Errors of the machine, not of the code: the message names them, a traceback would add nothing.
ENVIRONMENT = (OSError, sqlite3.OperationalError, Paused)


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Jobs:
    """Thread-safe: the event loop, worker threads and the remote-write thread report here."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.jobs: dict[str, JobState] = {}
        # Runs a step on the thread that ingests pushes (the app's IngestWorker.run), between them.
        self.worker: Callable[..., Awaitable[Any]] | None = None

    def _state(self, job: str) -> JobState:
        st = self.jobs.get(job)
        if st is None:
            st = self.jobs[job] = JobState()
        return st

    def add(self, job: str) -> None:
        """Know a job before it first runs, so its error counter is exported at 0."""
        with self._lock:
            self._state(job)

    # ---- reporting ------------------------------------------------------------------------------

    def ok(self, job: str) -> None:
        with self._lock:
            st = self._state(job)
            if st.failing_since is None:
                return
            total = sum(st.seen.values())
            down = time.time() - st.failing_since
            st.failing_since, st.consecutive, st.retry_at, st.last_error = None, 0, 0.0, ""
            st.seen = {}
        log.warning("background job %s recovered after %d error(s) over %.1f s", job, total, down)

    def failed(self, job: str, exc: BaseException, trace: bool = True) -> None:
        text = describe(exc)
        with self._lock:
            st = self._state(job)
            st.errors_total += 1
            st.consecutive += 1
            st.last_error = text
            if st.failing_since is None:
                st.failing_since = time.time()
            first = text not in st.seen
            st.seen[text] = st.seen.get(text, 0) + 1
            delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(st.consecutive - 1, 16))
            st.retry_at = self._clock() + delay
        if first:  # each distinct error once (a bug's with its traceback); repeats are counted only
            log.error("background job %s failed: %s (retrying with backoff; repeats are counted in %s)",
                      job, text, name_of("hub", "background_errors_total"),
                      exc_info=exc if trace and not isinstance(exc, ENVIRONMENT) else None)

    # ---- running ------------------------------------------------------------------------------

    def due(self, job: str) -> bool:
        st = self.jobs.get(job)
        return st is None or st.retry_at <= self._clock()

    def call(self, job: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Run one step now (in this thread) if it is not backing off. True when it succeeded."""
        if not self.due(job):
            return False
        try:
            fn(*args)
        except Exception as e:
            self.failed(job, e)
            return False
        self.ok(job)
        return True

    async def run(self, job: str, fn: Callable[..., Any], *args: Any, thread: bool = False,
                  with_pushes: bool = False) -> bool:
        """Run one step (a coroutine function, or a plain one; `thread` moves it off the loop).

        `with_pushes`: on the ingest worker, between pushes, where there is one (else a thread).
        For steps that are Python work: on a thread of their own they took turns for the GIL with
        the ingest thread and the event loop, and every request the loop read meanwhile waited
        for several of those turns (the week query's p99 at 1,000 nodes: 100-150 ms, 20 ms
        without the alert evaluation and the snapshot save beside ingest).
        """
        if not self.due(job):
            return False
        try:
            if with_pushes and self.worker is not None:
                await self.worker(fn, *args)
            elif thread or with_pushes:
                await asyncio.to_thread(fn, *args)
            else:
                result = fn(*args)
                if inspect.isawaitable(result):
                    await result
        except Exception as e:
            self.failed(job, e)
            return False
        self.ok(job)
        return True

    # ---- reading ------------------------------------------------------------------------------

    def failing(self) -> dict[str, str]:
        """Jobs failing now -> their last error."""
        with self._lock:
            return {name: st.last_error for name, st in sorted(self.jobs.items()) if st.failing_since is not None}

    def errors_total(self) -> dict[str, int]:
        with self._lock:
            return {name: st.errors_total for name, st in sorted(self.jobs.items())}
