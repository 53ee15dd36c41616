"""Nodes heard by another hub: "moved" rather than "down".

Several hubs can share one history (``--history`` on a Prometheus-compatible TSDB that each of
them remote-writes to), with agents given ``--hub A --hub B``: a node moves to another hub when
its hub is out or failing. The hub it left hears nothing more from it; without this, that hub
listed the node as down and fired GpufleetNodeDown for it.

So a hub with ``--history`` asks the shared history, every QUERY_EVERY_S while some node is
silent on it, for the newest sample of each such node (one instant query for all of them). A
sample newer than the last snapshot this hub received came through another hub: Fleet.sweep
then calls the node "moved" for as long as that sample is fresher than ``--down-after``.
The query runs in a thread and never holds up the status tick or ingest; when the history does
not answer, the last answer is kept, and ages: the nodes it vouched for become down as today.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from .. import catalogue

log = logging.getLogger(__name__)

QUERY_EVERY_S = 10.0
QUERY_TIMEOUT_S = 5.0
# Every snapshot has it, once per node: the cheapest sign that a node was heard.
SIGN_METRIC = catalogue.name_of("node", "memory_total_bytes")
NODE_LABEL = "node"


class Elsewhere:
    """The newest time each silent node was heard anywhere, per the shared history."""

    def __init__(self, newest: Callable[[str, str, list[str], float], dict[str, float]],
                 every: float = QUERY_EVERY_S) -> None:
        self._newest = newest  # PromHistory.newest
        self.every = every
        self.heard: dict[str, float] = {}  # node -> its newest sample's time (node clock), replaced whole
        self.error = ""
        self._next = 0.0
        self._busy = threading.Lock()

    def due(self, now_m: float | None = None) -> bool:
        now_m = time.monotonic() if now_m is None else now_m
        return now_m >= self._next and not self._busy.locked()

    def take_turn(self, now_m: float | None = None) -> bool:
        """True when a refresh is due, and then none is due for `every` (so a refresh not yet
        begun in its thread is not started twice)."""
        now_m = time.monotonic() if now_m is None else now_m
        if not self.due(now_m):
            return False
        self._next = now_m + self.every
        return True

    def refresh(self, nodes: Iterable[str]) -> None:
        """Ask the history about `nodes` (blocking: run it in a thread)."""
        if not self._busy.acquire(blocking=False):
            return
        try:
            self._next = max(self._next, time.monotonic() + self.every)
            names = sorted(set(nodes))
            if not names:
                self.heard = {}
                return
            try:
                heard = self._newest(SIGN_METRIC, NODE_LABEL, names, QUERY_TIMEOUT_S)
            except Exception as e:  # the history down or odd: keep the last answer (it ages out)
                err = str(e)
                if err != self.error:
                    log.warning("cannot ask the shared history which nodes other hubs hear: %s", err)
                self.error = err
                return
            if self.error:
                log.info("the shared history answers again: nodes heard by other hubs are shown as moved")
            self.error = ""
            self.heard = heard
        finally:
            self._busy.release()
