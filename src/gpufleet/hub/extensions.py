"""Features that plug into the hub: one table, each entry a class built with the Hub.

An extension adds routes (`mount(app)`), runs its own background loop (`async run(stop)`,
returning when `stop` is set), reports its own hub metrics (`values()`, names from the
catalogue's "hub" scope) and releases what it holds (`close()`). Keeping them apart lets
the core hub (ingest, store, API) stay small, and a feature that fails to load is logged
and left out rather than taking the hub down.

The Hub does not load them itself: whoever builds the app (hub/run.py's serve, or a test)
calls `load_extensions(hub)`, or builds the ones it wants, and passes them to `create_app`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .service import Hub

log = logging.getLogger("gpufleet.hub")

# module:class, in mount order (the UI last: its catch-all page routes come after the APIs).
EXTENSIONS: tuple[str, ...] = (
    "gpufleet.hub.capacity:CapacityExtension",  # before alerts: its fleet figures feed the rules
    "gpufleet.hub.alerts:AlertsExtension",
    "gpufleet.hub.commands.extension:CommandsExtension",
    "gpufleet.hub.usage.extension:UsageExtension",
    "gpufleet.hub.ui:UiExtension",
)


@runtime_checkable
class Extension(Protocol):
    def mount(self, app: FastAPI) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    def close(self) -> None: ...

    def values(self) -> dict[str, float]: ...


def load_extensions(hub: Hub, names: tuple[str, ...] = EXTENSIONS) -> list[Extension]:
    """The extensions named in `names` (default: all of this build's), built for `hub`."""
    loaded: list[Extension] = []
    for spec in names:
        module_name, _, cls_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue  # not part of this build
            log.exception("hub extension %s failed to import", spec)
            continue
        try:
            ext = getattr(module, cls_name)(hub)
            if not isinstance(ext, Extension):  # a missing method would fail later, at /metrics or exit
                log.error("hub extension %s lacks mount/run/close/values; the hub runs without it", spec)
                continue
            loaded.append(ext)
        except Exception:
            log.exception("hub extension %s failed to start; the hub runs without it", spec)
    return loaded
