"""Run the collector table once and assemble a NodeSnapshot, timing each collector.

A collector that hangs (a stuck NFS mount under /proc, a wedged driver call) must not stop the
others: the round runs on a worker thread, and one collector that takes longer than
`collector_timeout` is reported failed ("timed out") and left behind on that thread while the
round goes on without it on a fresh one. Later rounds skip it (failed, "still hung") until its
call returns. Python cannot stop a thread, so its late writes land in an old snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import __version__, clock
from ..collectors.base import Collector
from ..snapshot import CollectorStatus, NodeSnapshot

log = logging.getLogger("gpufleet.agent")

COLLECTOR_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _Round:
    """What a worker thread shares with the waiting caller for one stretch of a round."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    current: int = -1  # index of the collector running now
    started: float = 0.0  # perf_counter when it started
    abandoned: bool = False  # the caller gave up on this worker: it must not report any more


class Collection:
    """Owns the collectors and their error counters across rounds."""

    def __init__(self, node: str, collectors: Sequence[Collector], *, labels: dict[str, str] | None = None,
                 backend: str = "", collector_timeout: float | None = COLLECTOR_TIMEOUT_S) -> None:
        self.node = node
        self.collectors = list(collectors)
        self.labels = dict(labels or {})
        self.backend = backend
        self.rounds = 0
        self.collector_timeout = collector_timeout
        self._errors: dict[str, int] = {c.name: 0 for c in self.collectors}
        self._last_error: dict[str, str] = {}
        self._hung: dict[str, tuple[threading.Thread, float]] = {}  # collector -> (its stuck thread, since)

    def run(self, now: float | None = None) -> NodeSnapshot:
        wall0 = time.perf_counter()
        cpu0 = time.thread_time()
        snap = NodeSnapshot(
            node=self.node,
            timestamp=clock.now() if now is None else now,
            agent_version=__version__,
            backend=self.backend,
            labels=self.labels,
        )
        statuses: list[CollectorStatus] = []
        if self.collector_timeout is None:
            for c in self.collectors:
                statuses.append(self._collect(c, snap))
        else:
            self._run_watched(snap, statuses, self.collector_timeout)
        self.rounds += 1
        snap.collectors = statuses
        snap.agent = {
            "collections_total": float(self.rounds),
            "last_collection_timestamp_seconds": snap.timestamp,
            "collection_duration_seconds": time.perf_counter() - wall0,
            "collection_cpu_seconds": time.thread_time() - cpu0,
        }
        return snap

    def _collect(self, c: Collector, snap: NodeSnapshot) -> CollectorStatus:
        return self._status(c.name, *self._call(c, snap))

    @staticmethod
    def _call(c: Collector, snap: NodeSnapshot) -> tuple[str, float]:
        """Run one collector: its error text ("" when it worked) and how long it took."""
        t0 = time.perf_counter()
        error = ""
        try:
            c.collect(snap)
        except Exception as e:  # one failing collector never fails the collection
            error = f"{type(e).__name__}: {e}"
        return error, time.perf_counter() - t0

    def _status(self, name: str, error: str, duration: float) -> CollectorStatus:
        if error:
            self._errors[name] += 1
            if self._last_error.get(name) != error:
                log.warning("collector %s failed: %s", name, error)
                self._last_error[name] = error
        else:
            self._last_error.pop(name, None)
        return CollectorStatus(collector=name, success=not error, duration=duration, error=error,
                               errors_total=self._errors[name])

    def _run_watched(self, snap: NodeSnapshot, statuses: list[CollectorStatus], timeout: float) -> None:
        start = 0
        while start < len(self.collectors):
            rnd = _Round()
            worker = threading.Thread(target=self._work, args=(rnd, start, snap, statuses),
                                      name="gpufleet-collect-round", daemon=True)
            worker.start()
            while not rnd.done.is_set():
                with rnd.lock:
                    i, began = rnd.current, rnd.started
                left = timeout - (time.perf_counter() - began) if i >= 0 else timeout
                if rnd.done.wait(max(0.0, left)) or i < 0:
                    continue
                with rnd.lock:
                    if rnd.done.is_set() or rnd.current != i:
                        continue  # it finished, or moved on to the next collector, just now
                    rnd.abandoned = True
                c = self.collectors[i]
                self._hung[c.name] = (worker, time.time())
                statuses.append(self._status(c.name, f"timed out after {timeout:g} s (left running)",
                                             time.perf_counter() - began))
                start = i + 1
                break
            else:
                return

    def _work(self, rnd: _Round, start: int, snap: NodeSnapshot, statuses: list[CollectorStatus]) -> None:
        try:
            for i in range(start, len(self.collectors)):
                c = self.collectors[i]
                hung = self._hung.get(c.name)
                if hung is not None:
                    if hung[0].is_alive():
                        with rnd.lock:
                            if rnd.abandoned:
                                return
                            # One text for the whole hang, so it is logged once, not every round.
                            statuses.append(self._status(
                                c.name, f"still hung (timed out at {time.strftime('%H:%M:%S', time.localtime(hung[1]))})",
                                0.0))
                        continue
                    self._hung.pop(c.name, None)  # its old call returned: try it again
                with rnd.lock:
                    if rnd.abandoned:
                        return
                    rnd.current, rnd.started = i, time.perf_counter()
                error, duration = self._call(c, snap)
                with rnd.lock:
                    if rnd.abandoned:
                        return  # the caller reported this one as timed out and went on without us
                    statuses.append(self._status(c.name, error, duration))
        finally:
            with rnd.lock:
                if not rnd.abandoned:
                    rnd.done.set()
