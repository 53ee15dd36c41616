"""The hub's web UI: server-rendered pages, vanilla JS modules, live updates over SSE.

Listed in hub/extensions.py; mounted after the APIs. Pages: / (fleet), /nodes/NAME,
/nodes/NAME/gpus/INDEX, /users, /users/NAME, and /alerts once an alerts API exists.
Live stream: GET /api/v1/events (see events.py). docs/ui.md describes it all.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .assets import MISSING_HINT, uplot_dir
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
        self.uplot = uplot_dir()
        if self.uplot is None:
            log.warning("web UI charts are disabled: %s", MISSING_HINT)

    def mount(self, app: FastAPI) -> None:
        from .routes import mount

        mount(app, self)

    async def run(self, stop: asyncio.Event) -> None:
        restore = self._end_streams_on_exit_signal()
        try:
            await self._loop(stop)
        finally:
            restore()

    def _end_streams_on_exit_signal(self) -> Callable[[], None]:
        """Close open event streams as soon as the server is told to exit.

        uvicorn waits for running responses before it shuts the app down (up to its graceful
        timeout, then cancels them with a traceback), and an event stream never ends by itself.
        So we chain onto the exit signals' handlers (uvicorn's) and end the streams first.
        """
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # signals only reach the main thread; an embedded hub stops otherwise
        loop = asyncio.get_running_loop()
        installed: dict[int, Any] = {}

        def make(prev: Any) -> Callable[[int, Any], None]:
            def handler(sig: int, frame: Any) -> None:
                loop.call_soon_threadsafe(self.broker.close_all)
                if callable(prev):
                    prev(sig, frame)
                elif prev == signal.SIG_DFL:
                    signal.default_int_handler(sig, frame) if sig == signal.SIGINT else signal.raise_signal(sig)
            return handler

        for sig in (signal.SIGINT, signal.SIGTERM):
            prev = signal.getsignal(sig)
            h = make(prev)
            signal.signal(sig, h)
            installed[sig] = (prev, h)

        def restore() -> None:
            for sig, (prev, h) in installed.items():
                if signal.getsignal(sig) is h:  # unless someone else has replaced it since
                    signal.signal(sig, prev)
        return restore

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # A bad snapshot must not end live updates for every open page: supervised.
            await self.hub.jobs.run("ui", self.broker.tick)
            try:
                await asyncio.wait_for(stop.wait(), timeout=TICK)
            except asyncio.TimeoutError:
                pass
        self.broker.close_all()

    def close(self) -> None:
        self.broker.close_all()

    def values(self) -> dict[str, float]:
        return {}
