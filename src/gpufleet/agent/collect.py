"""Run the collector table once and assemble a NodeSnapshot, timing each collector."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from .. import __version__, clock
from ..collectors.base import Collector
from ..snapshot import CollectorStatus, NodeSnapshot

log = logging.getLogger("gpufleet.agent")


class Collection:
    """Owns the collectors and their error counters across rounds."""

    def __init__(self, node: str, collectors: Sequence[Collector], *, labels: dict[str, str] | None = None,
                 backend: str = "") -> None:
        self.node = node
        self.collectors = list(collectors)
        self.labels = dict(labels or {})
        self.backend = backend
        self.rounds = 0
        self._errors: dict[str, int] = {c.name: 0 for c in self.collectors}
        self._last_error: dict[str, str] = {}

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
        for c in self.collectors:
            t0 = time.perf_counter()
            error = ""
            try:
                c.collect(snap)
            except Exception as e:  # one failing collector never fails the collection
                error = f"{type(e).__name__}: {e}"
                self._errors[c.name] += 1
                if self._last_error.get(c.name) != error:
                    log.warning("collector %s failed: %s", c.name, error)
                    self._last_error[c.name] = error
            else:
                self._last_error.pop(c.name, None)
            statuses.append(CollectorStatus(
                collector=c.name, success=not error, duration=time.perf_counter() - t0,
                error=error, errors_total=self._errors[c.name],
            ))
        self.rounds += 1
        snap.collectors = statuses
        snap.agent = {
            "collections_total": float(self.rounds),
            "last_collection_timestamp_seconds": snap.timestamp,
            "collection_duration_seconds": time.perf_counter() - wall0,
            "collection_cpu_seconds": time.thread_time() - cpu0,
        }
        return snap
