"""The usage extension (listed in hub/extensions.py): the occupancy record, its settle loop and routes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .db import open_db, open_reader
from .record import OccupancyRecord
from .report import Prices
from .settle import drop_old_hours, settle_all

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..service import Hub

log = logging.getLogger("gpufleet.hub.usage")

SETTLE_EVERY_S = 30.0
SETTLE_BUDGET_S = 0.5  # per step; a backlog carries on at the next step (round robin over nodes)
JOB = "usage"


class UsageExtension:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.db = open_db(hub.opts.data)
        # Reports read through a second connection (WAL: readers never wait for the writer), so a
        # long report never holds up the ingest hook's write of a change.
        self.reader = open_reader(hub.opts.data)
        self.read_lock = threading.Lock()
        self.record = OccupancyRecord(self.db, gap_s=hub.opts.down_after, last_seen=self._last_seen(),
                                      heard=self._heard)
        self.prices = Prices(hub.opts.price_gpu_hour, hub.opts.price_kwh)
        self._next = 0
        self._dropped_at = 0.0
        hub.jobs.add(JOB)
        hub.observers.append(self.record.observe)  # the one ingest hook: a compare per GPU

    def _last_seen(self) -> dict[str, float]:
        """Each node's newest snapshot stored before this start: its open holds ran until then.

        The store has every acknowledged push (its WAL survives kill -9); the fleet's saved
        latest snapshots (hub.db, every minute and at exit) stand in when the history is remote.
        """
        seen = {name: v.snapshot.timestamp for name, v in self.hub.fleet.nodes.items() if v.snapshot is not None}
        store = self.hub.store
        if store is not None:
            for (node,) in self.db.execute("SELECT DISTINCT node FROM holds WHERE end IS NULL").fetchall():
                latest = store.latest(node)
                if latest is not None:
                    seen[node] = max(seen.get(node, 0.0), latest[0])
        return seen

    def _heard(self, node: str) -> float | None:
        v = self.hub.fleet.nodes.get(node)
        return v.last_seen if v is not None else None

    def mount(self, app: FastAPI) -> None:
        from .api import mount

        app.state.usage = self
        mount(app, self)

    def _query(self, metric: str, matchers: Any, start: float, end: float, step: float, agg: str) -> Any:
        return self.hub.query_range(metric, matchers, start, end, step, agg, background=True)

    def settle(self, now: float | None = None, budget_s: float | None = None) -> int:
        """One step: close silent nodes' holds, then settle figures up to each node's newest data."""
        now = time.time() if now is None else now
        self.record.close_silent(now)
        # With --history there is no store: the remote may lag behind what this hub has seen.
        done, self._next = settle_all(self.db, self.record.lock, self._query, self.record.horizon,
                                      budget_s, self._next, remote=self.hub.store is None, now=now)
        if now - self._dropped_at > 3600:
            self._dropped_at = now
            drop_old_hours(self.db, self.record.lock, now)
        return done

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.hub.jobs.run(JOB, self.settle, None, SETTLE_BUDGET_S, thread=True)
            try:
                await asyncio.wait_for(stop.wait(), timeout=SETTLE_EVERY_S)
            except asyncio.TimeoutError:
                pass

    def close(self) -> None:
        try:
            self.hub.observers.remove(self.record.observe)
        except ValueError:
            pass
        with self.read_lock:
            self.reader.close()
        with self.record.lock:
            self.db.close()

    def compat_lines(self, modes: tuple[str, ...], out: list[str]) -> None:
        """--compat ds01: the last 24 h's events as DS01's ds01_events_24h_total."""
        if "ds01" in modes:
            from ...compat.ds01 import render_events_24h

            render_events_24h(self.record.counts_24h(time.time()), out)

    def values(self) -> dict[str, float]:
        counts = self.record.counts_24h(time.time())
        return {"gpus_taken_24h": counts["gpu_taken"], "gpus_released_24h": counts["gpu_released"],
                "jobs_started_24h": counts["job_started"], "jobs_ended_24h": counts["job_ended"],
                "usage_errors_total": self.record.errors}
