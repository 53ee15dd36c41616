"""/docs in a real browser: Swagger UI from the hub's own files, with no other origin (Chromium here
has no network) and under the hub's strict Content-Security-Policy (no inline script)."""

from __future__ import annotations

from pathlib import Path

import pytest

from browser import chromium
from realparts import Proc, free_port, gpufleet

pytestmark = pytest.mark.realparts  # a real hub and Debian's Chromium


def test_docs_render_offline_under_csp(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "d")), tmp_path / "hub.log")
    try:
        hub.wait_http(f"{url}/healthz", timeout=90)  # a loaded CI machine starts a hub slowly
        with chromium() as b:
            page = b.new_page()
            console: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{url}/docs")
            page.wait_for_selector('.opblock-summary-path[data-path="/api/v1/push"]', timeout=20_000)
            assert page.locator(".opblock").count() > 10  # the whole API, read from /openapi.json
            assert [r for r in requests if not r.startswith(url + "/")] == []
            assert not [c for c in console if c.startswith("error")], console  # a CSP violation is one
    finally:
        hub.stop()
