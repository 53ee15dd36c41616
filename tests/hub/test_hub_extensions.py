"""The hub's features plug in through the app builder: a bare Hub runs none of them, and the
hub's /metrics comes from each part's values() hook (core, remote write, extensions)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from access import authed_client
from gpufleet.hub.alerts import AlertsExtension
from gpufleet.hub.extensions import Extension, load_extensions
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.hub.ui import UiExtension
from realparts import serving
from sample_snapshot import sample_snapshot


def _metrics(client: TestClient) -> dict[str, float]:
    out = {}
    for line in client.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_a_bare_hub_starts_no_feature(tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    hub = Hub(HubOptions(data=tmp_path / "d"))
    try:
        assert hub.extensions == []
        assert {t.ident for t in threading.enumerate()} == before  # no notifier, no alert loop
        with authed_client(hub, background=False) as c:
            assert c.get("/api/v1/alerts").status_code == 404
            m = _metrics(c)
            assert m["gpufleet_hub_nodes_up"] == 0 and "gpufleet_hub_alerts_firing" not in m
    finally:
        hub.close()


def test_the_app_builder_attaches_typed_extensions(tmp_path: Path) -> None:
    hub = Hub(HubOptions(data=tmp_path / "d"))
    try:
        exts = load_extensions(hub)
        kinds = [type(e) for e in exts]
        assert all(isinstance(e, Extension) for e in exts)  # the protocol, checked at load
        assert AlertsExtension in kinds and kinds[-1] is UiExtension  # the UI's catch-all routes last
        with authed_client(hub, exts, background=False) as c:
            assert hub.extensions == exts  # the hub closes them
            assert c.get("/api/v1/alerts").status_code == 200
            hub.ingest([sample_snapshot("n1")])
            m = _metrics(c)
            assert m["gpufleet_hub_alerts_firing"] == 0 and m["gpufleet_hub_alerts_evaluation_errors_total"] == 0
            assert m["gpufleet_hub_ingest_snapshots_total"] == 1
    finally:
        hub.close()


@pytest.fixture
def refusing_receiver() -> Iterator[str]:
    """A remote-write receiver that answers 400, as one does to samples it will never take."""

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b"out of order sample")

        def log_message(self, *args: object) -> None:
            pass

    with serving(H) as url:
        yield f"{url}/api/v1/write"


def test_remote_write_failures_reach_metrics(tmp_path: Path, refusing_receiver: str) -> None:
    hub = Hub(HubOptions(data=tmp_path / "d", remote_write=refusing_receiver))
    try:
        with authed_client(hub, background=False) as c:
            hub.ingest([sample_snapshot("n1")])
            assert hub.remote.flush(timeout=10)
            m = _metrics(c)
            sent = m["gpufleet_hub_ingest_samples_total"]
            assert sent > 0
            assert m["gpufleet_hub_remote_write_samples_total"] == 0
            assert m["gpufleet_hub_remote_write_failed_samples_total"] == sent
            assert m["gpufleet_hub_remote_write_dropped_total"] == sent  # refused: never delivered
            assert m["gpufleet_hub_remote_write_requests_total"] == 1
            assert m["gpufleet_hub_remote_write_retries_total"] == 0  # a 4xx is not retried
            assert abs(m["gpufleet_hub_remote_write_last_error_timestamp_seconds"] - time.time()) < 60
            assert m["gpufleet_hub_remote_write_last_success_timestamp_seconds"] == 0
    finally:
        hub.close()
