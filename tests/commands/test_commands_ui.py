"""The commands and audit pages in Debian's headless Chromium, against a real hub and real agents:
tick nodes, run a command, watch each result arrive, cancel a long one, find both in the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from access import bearer, make_api_key, make_user
from browser import chromium
from conftest import eventually
from realparts import Proc, free_port, gpufleet, join_token


pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


LOGIN: dict[str, str] = {}  # the admin's password and an operator's API key, made by the hub fixture


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("cmdui")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs = [Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(tmp / "hub")), tmp / "hub.log")]
    try:
        procs[0].wait_http(f"{url}/healthz")
        LOGIN["password"] = make_user(tmp / "hub", "ops", "admin")  # the audit page is for admins
        LOGIN["key"] = make_api_key(tmp / "hub", "operator")
        LOGIN["data"] = str(tmp / "hub")
        
        token = join_token(tmp / "hub")
        for node, extra in (("ui-a", ["--allow-commands", "echo *", "--allow-commands", "sleep *",
                                      "--command-user", "nobody"]), ("ui-plain", [])):
            procs.append(Proc(gpufleet("agent", "--simulate", "cpu-only", "--node", node, "--listen",
                                       f"127.0.0.1:{free_port()}", "--hub", url, "--token", token,
                                       "--spool", str(tmp / f"spool-{node}"), *extra), tmp / f"{node}.log"))
        def ready() -> bool:
            nodes = httpx.get(f"{url}/api/v1/commands/targets", headers=bearer(LOGIN["key"]), timeout=5).json()["nodes"]
            return len(nodes) == 2 and any(n["fetching"] for n in nodes)

        eventually(ready, timeout=60, interval=0.2, what="both agents to register and poll for commands")
        yield url
    finally:
        for p in reversed(procs):
            p.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _page(browser: Any, url: str) -> tuple[Any, Any, list[str]]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)  # the hub sends the browser to its login page first, and back after
    page.wait_for_selector("body[data-page='login'][data-ready='1']", timeout=10000)
    page.fill("input[name=name]", "ops")
    page.fill("input[name=password]", LOGIN["password"])
    page.click("form.login-form button[type=submit]")
    page.wait_for_selector("body[data-ready='1']:not([data-page='login'])", timeout=10000)
    return ctx, page, errors


def test_run_watch_and_cancel_from_the_page_then_audit(hub: str, browser: Any, artifacts: Path) -> None:
    ctx, page, errors = _page(browser, f"{hub}/commands")
    try:
        assert page.is_disabled("input[name=node][value='ui-plain']")  # not accepting commands
        assert page.is_checked("input[name=node][value='ui-a']")
        page.fill("#c-cmd", "echo 'hello from' the page")
        assert page.text_content("#c-argv") == '["echo","hello from","the","page"]'
        page.click("#c-run")
        row = page.wait_for_selector("#c-results tr[data-node='ui-a']", timeout=15000)
        assert row.get_attribute("data-status") == "ok"
        assert row.query_selector("pre").text_content().strip() == "hello from the page"
        page.wait_for_selector("body[data-run-done]", timeout=10000)
        assert "done: 1 ok" in page.text_content("#c-summary")
        page.screenshot(path=str(artifacts / "ui-commands.png"), full_page=True)

        page.fill("#c-cmd", "sleep 120")
        page.click("#c-run")
        page.wait_for_function("() => !document.querySelector('#c-cancel').disabled", timeout=10000)
        page.click("#c-cancel")  # running or not yet fetched: either way the node's result is "cancelled"
        row = page.wait_for_selector("#c-results tr[data-node='ui-a'][data-status='cancelled']", timeout=15000)
        assert errors == []
    finally:
        ctx.close()

    ctx, page, errors = _page(browser, f"{hub}/audit")
    try:
        text = page.text_content("#a-runs")
        assert "echo 'hello from' the page" in text and "sleep 120" in text
        assert "cancelled by" in text
        page.screenshot(path=str(artifacts / "ui-audit.png"), full_page=True)
        assert errors == []
    finally:
        ctx.close()


def test_pages_and_links_follow_the_role(hub: str) -> None:
    page = httpx.get(f"{hub}/commands", headers=bearer(LOGIN["key"]), timeout=10)  # an operator
    assert page.status_code == 200
    assert 'href="/commands"' in page.text and 'href="/audit"' not in page.text
    assert httpx.get(f"{hub}/audit", headers=bearer(LOGIN["key"]), timeout=10).status_code == 403
    assert httpx.get(f"{hub}/api/v1/audit", headers=bearer(LOGIN["key"]), timeout=10).status_code == 403
    viewer = make_api_key(Path(LOGIN["data"]), "viewer")
    assert httpx.get(f"{hub}/commands", headers=bearer(viewer), timeout=10).status_code == 403
    r = httpx.post(f"{hub}/api/v1/commands", headers=bearer(viewer), json={"argv": ["true"], "nodes": "*"}, timeout=10)
    assert r.status_code == 403
