"""The commands feature as a hub extension: the key, the audit log, the dispatcher and its sweep."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .audit import AuditLog
from .runs import Dispatcher
from .signing import HubKey

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..service import Hub

log = logging.getLogger("gpufleet.hub.commands")


class CommandsExtension:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.key = HubKey.load_or_create(hub.opts.data)
        self.audit = AuditLog(hub.opts.data / "hub.db")
        self.dispatcher = Dispatcher(self.key, self.audit)
        hub.command_key = self.key.public_b64

    def mount(self, app: FastAPI) -> None:
        from .api import mount

        mount(app, self)

    async def run(self, stop: asyncio.Event) -> None:
        from ..exitsignal import on_exit_signal

        restore = on_exit_signal(self.dispatcher.close)  # held long polls would hold up exit
        try:
            await self._sweep(stop)
        finally:
            restore()

    async def _sweep(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.dispatcher.sweep()
            except Exception:
                log.exception("command sweep failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
        self.dispatcher.close()

    def values(self) -> dict[str, float]:
        return {}  # no hub metrics of its own yet: the audit log is the record

    def close(self) -> None:
        self.audit.close()
