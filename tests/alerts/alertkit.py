"""Shared pieces of the alert tests: simulated nodes on a fake clock, a hub, local receivers.

A module, not a conftest.py: tests/conftest.py is the one `conftest` tests import from."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gpufleet.agent.collect import Collection
from gpufleet.backends.sim import SimBackend
from gpufleet.collectors import SIMULATED_NODE, build
from gpufleet.collectors.base import CollectContext
from gpufleet.hub.service import Hub, HubOptions

from conftest import FakeClock


class SimNode:
    """One simulated node whose hardware time is the test's clock."""

    def __init__(self, name: str, clock: FakeClock, profile: str = "8xH100", labels: dict[str, str] | None = None) -> None:
        self.backend = SimBackend(profile, node=name, clock=clock)
        ctx = CollectContext(backend=self.backend, options={"node": name})
        self.collection = Collection(name, build(ctx, SIMULATED_NODE), labels=labels or {"cluster": "lab"},
                                     backend="sim")
        self.clock = clock
        self.name = name

    def push(self, hub: Hub) -> None:
        hub.ingest([self.collection.run(now=self.clock.t)], now=self.clock.t)


def make_hub(data: Path, alerts_yaml: str | None = None, notify_yaml: str | None = None) -> Hub:
    data.mkdir(parents=True, exist_ok=True)
    if alerts_yaml is not None:
        (data / "alerts.yaml").write_text(alerts_yaml)
    if notify_yaml is not None:
        (data / "notify.yaml").write_text(notify_yaml)
    hub = Hub(HubOptions(data=data))
    from gpufleet.hub.alerts import AlertsExtension

    hub.extensions.append(AlertsExtension(hub))  # what create_app does with the extensions it is given
    return hub


def alerts_ext(hub: Hub) -> Any:
    from gpufleet.hub.alerts import AlertsExtension

    return next(e for e in hub.extensions if isinstance(e, AlertsExtension))


class Receiver:
    """A local webhook endpoint: records JSON bodies; can fail the first N requests or stall."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0) -> None:
        self.bodies: list[Any] = []
        self.requests = 0
        self.fail_first = fail_first
        self.delay = delay
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests += 1
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.requests <= outer.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                outer.bodies.append(json.loads(body or b"null"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def firing(ext: Any, alertname: str) -> list[Any]:
    return [a for a in ext.engine.alerts.values() if a.alertname == alertname and a.state == "firing"]


def by_name(ext: Any, alertname: str) -> list[Any]:
    return [a for a in ext.engine.alerts.values() if a.alertname == alertname]
