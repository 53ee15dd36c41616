"""The hub's web UI: server-rendered pages, vanilla JS modules, live updates over SSE.

Listed in hub/extensions.py; mounted after the APIs. Pages: / (fleet), /nodes/NAME,
/nodes/NAME/gpus/INDEX, /users, /users/NAME, and /alerts once an alerts API exists.
Live stream: GET /api/v1/events (see events.py). docs/ui.md describes it all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..exitsignal import on_exit_signal
from .assets import MISSING_HINT, UPLOT_FILES, files
from .events import Broker

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..service import Hub

log = logging.getLogger("gpufleet.hub.ui")

TICK = 0.25  # seconds between change checks: well inside the shortest collection interval


class UiExtension:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.broker = Broker(hub)
        self.uplot = files(UPLOT_FILES)  # URL name -> file, or None when not installed
        if self.uplot is None:
            log.warning("web UI charts are disabled: %s", MISSING_HINT)

    def mount(self, app: FastAPI) -> None:
        from .routes import mount

        mount(app, self)

    async def run(self, stop: asyncio.Event) -> None:
        restore = on_exit_signal(self.broker.close_all)  # open event streams would hold up exit
        try:
            await self._loop(stop)
        finally:
            restore()

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # A bad snapshot must not end live updates for every open page: supervised.
            # With no page open this does nothing (Broker.publish): ~2 % of the hub's CPU at
            # 1,000 nodes went to re-summarising nodes for nobody.
            await self.hub.jobs.run("ui", self.broker.publish)
            try:
                await asyncio.wait_for(stop.wait(), timeout=TICK)
            except asyncio.TimeoutError:
                pass
        self.broker.close_all()

    def close(self) -> None:
        self.broker.close_all()

    def values(self) -> dict[str, float]:
        return {"ui_streams_open": float(len(self.broker.subs))}
