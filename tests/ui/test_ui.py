"""The web UI in Debian's headless Chromium (Playwright), against a real hub process with a
simulated fleet: pages load clean, show the API's numbers, update live, draw charts, and
reconnect by themselves after the hub restarts."""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from access import bearer, make_api_key, make_user
from browser import chromium
from conftest import eventually
from realparts import Proc, free_port, gpufleet, join_token
from sample_snapshot import sample_snapshot


pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes

NODE = "hgx-h100-01"  # first of the demo fleet: 8 GPUs with jobs on them


class Hub:
    """`gpufleet up --simulate 8` as a process that can be stopped and started on the same port."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port, self.proc = tmp, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.data = tmp / "data"
        self.password = make_user(self.data, "ui-admin", "admin")  # the browser logs in as this user
        self.headers = bearer(make_api_key(self.data, "viewer"))  # the test's own reads

    def start(self) -> None:
        self.starts += 1
        data = self.tmp / "data"
        data.mkdir(exist_ok=True)
        # a rule that fires at once, so the alerts page has something to show and act on
        (data / "alerts.yaml").write_text(
            "rules:\n  - alert: UiTestAlwaysFiring\n    expr: gpufleet_node_memory_total_bytes > 0\n"
            "    severity: info\n    annotations: {summary: 'memory on {{ $labels.node }}'}\n")
        args = gpufleet("up", "--simulate", "8", "--interval", "1", "--no-agent", "--data", str(self.tmp / "data"),
                        "--listen", f"127.0.0.1:{self.port}")
        self.proc = Proc(args, self.tmp / f"hub{self.starts}.log")
        self.proc.wait_http(f"{self.url}/healthz")
        # >= 8: a test adds a pushing node of its own
        eventually(lambda: len(httpx.get(f"{self.url}/api/v1/snapshots", headers=self.headers).json()["snapshots"]) >= 8,
                   timeout=15, what="the first collections of every simulated node")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def api(self, path: str) -> Any:
        return httpx.get(f"{self.url}{path}", headers=self.headers, timeout=10).json()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = Hub(tmp_path_factory.mktemp("ui"))
    h.start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def log_in(page: Any, name: str, password: str) -> None:
    """Through the real login page, as a person would."""
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("form.login-form button[type=submit]")


@pytest.fixture(scope="module")
def session(hub: Hub, browser: Any) -> dict[str, Any]:
    """The browser state after logging in once through the login page (its session cookie)."""
    ctx = browser.new_context()
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{hub.url}/users")  # a page needs a login: the hub sends the browser to /login
    page.wait_for_selector("body[data-page='login'][data-ready='1']")
    assert "/login?next=/users" in page.url
    log_in(page, "ui-admin", "not the password")
    page.wait_for_selector("#login-error")
    assert "Wrong name or password" in page.inner_text("#login-error")
    log_in(page, "ui-admin", hub.password)
    page.wait_for_selector("body[data-page='users'][data-ready='1']")  # back where it started
    cookie = next(c for c in ctx.cookies() if c["name"] == "gpufleet_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    state = ctx.storage_state()
    ctx.close()
    assert errors == []
    return state


STATE: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _logged_in(session: dict[str, Any]) -> None:
    STATE["storage"] = session


@contextlib.contextmanager
def open_page(browser: Any, url: str, theme: str = "light", width: int = 1440) -> Iterator[tuple[Any, list[str]]]:
    ctx = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=theme,
                              storage_state=STATE.get("storage"))
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=10000)
    try:
        yield page, errors
    finally:
        ctx.close()


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"ui-{name}.png"), full_page=True)


def card_gpu(page: Any, node: str, gpu: int) -> dict[str, Any]:
    return page.evaluate(
        """([node, gpu]) => {
            const card = document.querySelector(`.card[data-node="${node}"]`);
            const row = card.querySelector(`.gpu[data-gpu="${gpu}"]`);
            return {ts: parseFloat(card.dataset.ts), util: row.dataset.util, temp: row.dataset.temp,
                    power: row.dataset.power, status: card.dataset.status};
        }""", [node, gpu])


def wait_charts(page: Any, minimum: int) -> None:
    """Every chart has a canvas of non-zero size and holds data points."""
    page.wait_for_function(
        """(n) => { const cs = [...document.querySelectorAll('.chart')];
            return cs.length >= n && cs.every(c => { const cv = c.querySelector('canvas');
              return cv && cv.width > 0 && cv.height > 0; })
            && cs.some(c => +c.querySelector('.plot').dataset.points > 0); }""", arg=minimum, timeout=15000)


def test_pages_show_api_values_live_with_charts(hub: Hub, browser: Any, artifacts: Path) -> None:
    # ---- overview: one card per node, the GPU numbers equal the API's at the same snapshot ----
    with open_page(browser, f"{hub.url}/") as (page, errors):
        names = [n["name"] for n in hub.api("/api/v1/nodes")["nodes"]]
        assert sorted(page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.node)")) == sorted(names)
        for attempt in range(50):
            seen = card_gpu(page, NODE, 4)
            snap = hub.api(f"/api/v1/nodes/{NODE}/snapshot")
            if abs(snap["timestamp"] - seen["ts"]) < 0.01:
                g = next(g for g in snap["gpus"] if g["index"] == 4)
                assert int(seen["util"]) == round(g["values"]["utilization_ratio"] * 100)
                assert int(seen["temp"]) == round(g["values"]["temperature_celsius"])
                assert int(seen["power"]) == round(g["values"]["power_watts"])
                break
            time.sleep(0.1)
        else:
            pytest.fail("the card never showed the snapshot the API served")
        # fleet totals add up to the cards (read in one go: both change on the same frame)
        cards, totals = page.evaluate("""() => [['busy','idle','free'].map(s => document.querySelectorAll(`.gpu[data-state=${s}]`).length),
                                               ['busy','idle','free'].map(s => +document.getElementById(`t-${s}`).textContent)]""")
        assert cards == totals
        # live: the card changes without a reload
        before = card_gpu(page, NODE, 4)["ts"]
        page.wait_for_function(f"() => parseFloat(document.querySelector('.card[data-node=\"{NODE}\"]').dataset.ts) > {before}",
                               timeout=5000)
        shot(page, artifacts, "overview-light")
        page.click("#view button[data-view='heatmap']")
        page.wait_for_selector(".tile")
        assert "view=heatmap" in page.url
        shot(page, artifacts, "overview-heatmap")
        page.click("#view button[data-view='cards']")
        page.fill("#q", "hgx-h100")
        page.wait_for_function("() => document.querySelectorAll('.card').length === 2")
        assert errors == []

    with open_page(browser, f"{hub.url}/", theme="dark") as (page, errors):
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        shot(page, artifacts, "overview-dark")
        assert errors == []

    # ---- node page: host panels, GPU cards, charts, process table with GPU processes marked ----
    with open_page(browser, f"{hub.url}/nodes/{NODE}") as (page, errors):
        assert page.locator(".gcard").count() == 8
        assert page.locator("#n-procs tbody tr").count() > 0
        assert page.locator("#n-procs tr.gpuproc").count() > 0
        wait_charts(page, 5)
        points = page.eval_on_selector(".chart[data-chart='util'] .plot", "p => +p.dataset.points")
        page.wait_for_function(
            "(n) => +document.querySelector(\".chart[data-chart='util'] .plot\").dataset.points > n", arg=points,
            timeout=8000)  # the chart extends live
        page.click("th[data-key='pid'] button")
        assert page.get_attribute("th[data-key='pid']", "aria-sort") in ("ascending", "descending")
        shot(page, artifacts, "node")
        assert errors == []

    # ---- GPU page: every field, processes, six charts; the numbers match the API ----
    with open_page(browser, f"{hub.url}/nodes/{NODE}/gpus/4", theme="dark") as (page, errors):
        wait_charts(page, 6)
        for attempt in range(50):  # compare with the API at the same snapshot
            seen = page.evaluate("""() => ({ts: +document.getElementById('g-stats').dataset.ts,
                util: document.querySelector('#g-stats [data-util]').dataset.util,
                fields: [...document.querySelectorAll('#g-fields tr[data-field]')].map(r => r.dataset.field),
                pids: [...document.querySelectorAll('#g-procs tr[data-pid]')].map(r => +r.dataset.pid)})""")
            snap = hub.api(f"/api/v1/nodes/{NODE}/snapshot")
            if abs(snap["timestamp"] - seen["ts"]) < 0.001:
                g = next(g for g in snap["gpus"] if g["index"] == 4)
                assert set(seen["fields"]) == set(g["values"])
                assert int(seen["util"]) == round(g["values"]["utilization_ratio"] * 100)
                assert sorted(seen["pids"]) == sorted(p["pid"] for p in g.get("processes", []))
                break
            time.sleep(0.1)
        else:
            pytest.fail("the GPU page never showed the snapshot the API served")
        shot(page, artifacts, "gpu-dark")
        assert errors == []

    # ---- users: the table, one user's page with history ----
    with open_page(browser, f"{hub.url}/users") as (page, errors):
        users = page.eval_on_selector_all("#u-table tbody tr[data-user]", "rs => rs.map(r => r.dataset.user)")
        assert users
        shot(page, artifacts, "users")
        assert errors == []
    with open_page(browser, f"{hub.url}/users/{users[0]}") as (page, errors):
        assert int(page.get_attribute("#u-stats [data-gpus]", "data-gpus")) > 0
        wait_charts(page, 4)
        shot(page, artifacts, "user")
        assert errors == []

    with open_page(browser, f"{hub.url}/nodes/no-such-node") as (page, errors):
        assert "no node named" in page.text_content("main")


def test_page_reconnects_after_hub_restart(hub: Hub, browser: Any, artifacts: Path) -> None:
    with open_page(browser, f"{hub.url}/") as (page, _errors):
        page.wait_for_selector("#conn[data-state='live']")
        hub.stop()
        page.wait_for_selector("#conn[data-state='reconnecting']", timeout=35000)
        stopped_at = card_gpu(page, NODE, 0)["ts"]
        hub.start()
        # Same page, no reload: live data again (a newer snapshot than before the restart).
        page.wait_for_function(
            f"() => parseFloat(document.querySelector('.card[data-node=\"{NODE}\"]').dataset.ts) > {stopped_at}",
            timeout=30000)
        page.wait_for_selector("#conn[data-state='live']")
        shot(page, artifacts, "overview-after-restart")


def test_alerts_page_lists_and_acks(hub: Hub, browser: Any, artifacts: Path) -> None:
    eventually(lambda: len([a for a in hub.api("/api/v1/alerts")["alerts"]
                            if a["alertname"] == "UiTestAlwaysFiring" and a["state"] == "firing"]) == 8,
               timeout=30, what="the test rule to fire on all 8 nodes")
    with open_page(browser, f"{hub.url}/alerts") as (page, errors):
        rows = page.locator('#a-list tr[data-state="firing"]')
        assert rows.count() >= 8
        assert "memory on" in page.inner_text("#a-list")
        fp = rows.first.get_attribute("data-fp")
        page.locator(f'#a-list tr[data-fp="{fp}"] button[data-act="ack"]').click()
        page.wait_for_function("fp => document.querySelector(`#a-list tr[data-fp=\"${fp}\"]`)?.innerText.includes('acked by ui-admin')", arg=fp, timeout=10000)
        shot(page, artifacts, "alerts")
        assert not errors, errors
    acked = [a for a in hub.api("/api/v1/alerts")["alerts"] if a["fingerprint"] == fp]
    assert acked[0]["ack"]["by"] == "ui-admin"  # the logged-in account, not a typed name


def test_charts_span_the_picked_range_and_tick_bytes_in_binary(hub: Hub, browser: Any, artifacts: Path) -> None:
    def spans(page: Any) -> dict[str, int]:
        return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.chart')].map(
            c => [c.dataset.chart, +c.querySelector('.plot').dataset.span]))""")

    with open_page(browser, f"{hub.url}/nodes/{NODE}?range=24h") as (page, errors):
        wait_charts(page, 5)
        # The hub has minutes of data; the axis still spans the 24 hours asked for (history loads async).
        page.wait_for_function("() => [...document.querySelectorAll('.chart .plot')].every(p => +p.dataset.span === 86400)",
                               timeout=10000)
        page.click("#range button[data-range='6h']")
        page.wait_for_function("() => [...document.querySelectorAll('.chart .plot')].every(p => +p.dataset.span === 21600)")
        ticks = [float(t) for t in page.get_attribute(".chart[data-chart='mem'] .plot", "data-yticks").split(",")]
        assert len(ticks) >= 2 and ticks[0] == 0
        step = ticks[1] - ticks[0]
        assert step > 0 and step == 2 ** round(math.log2(step)), ticks  # a power of two bytes
        assert errors == []
    # A user with no history: the charts have no data, and their axis shows the range, not years.
    with open_page(browser, f"{hub.url}/users/nobody-here") as (page, errors):
        page.wait_for_function("() => document.querySelectorAll('.chart.nodata').length === 4")
        page.wait_for_function("() => [...document.querySelectorAll('.chart .plot')].every(p => +p.dataset.span === 3600)",
                               timeout=10000)
        assert errors == []


def test_phone_width_and_heatmap_colours(hub: Hub, browser: Any, artifacts: Path) -> None:
    user = hub.api("/api/v1/snapshots")["snapshots"]
    who = next(p["user"] for s in user for g in s.get("gpus", []) for p in g.get("processes", []) if p.get("user"))
    for path in ("/", "/?view=heatmap", f"/nodes/{NODE}", f"/nodes/{NODE}/gpus/0", "/users", f"/users/{who}",
                 "/alerts"):
        with open_page(browser, f"{hub.url}{path}", width=390) as (page, errors):
            wide = page.evaluate("() => document.documentElement.scrollWidth")
            shot(page, artifacts, "phone" + path.replace("/", "-").replace("?", "-").replace("=", "-"))
            assert wide <= 390, f"{path} is {wide} px wide at 390 px: clipped"
            assert errors == []
    with open_page(browser, f"{hub.url}/?view=heatmap") as (page, errors):
        page.wait_for_selector(".tile")
        # The busiest cell is the deepest blue, not the alarm red of hot temperatures.
        rgb = page.evaluate("""() => {
            const cells = [...document.querySelectorAll('.tile .cells i')];
            const best = cells.map(i => [parseFloat(i.dataset.util || -1), getComputedStyle(i).backgroundColor])
              .sort((a, b) => b[0] - a[0])[0];
            return best; }""")
        util, colour = rgb
        assert util >= 60, rgb
        r, g, b = [float(x) for x in re.findall(r"[\d.]+", colour)[:3]]  # rgb(...) or color(srgb ...)
        assert b > r, f"a busy GPU ({util}%) is drawn {colour}: reads as an alarm"
        assert errors == []


def push_node(hub: Hub, snap: Any) -> None:
    """Joins `snap.node` to the hub as a real agent would (a join token, then a push), stamped now."""
    
    from gpufleet.snapshot import to_json

    token = join_token(hub.data)
    r = httpx.post(f"{hub.url}/api/v1/register", json={"node": snap.node}, headers=bearer(token), timeout=10)
    cred = r.json()["credential"]
    snap.timestamp = time.time()
    body = b'{"snapshots":[' + to_json(snap) + b"]}"
    assert httpx.post(f"{hub.url}/api/v1/push", content=body, headers=bearer(cred), timeout=10).status_code == 200


def test_gpu_needing_drain_or_reset_is_flagged(hub: Hub, browser: Any, artifacts: Path) -> None:
    """Issue 15: the node page flags a GPU to drain or reset; the GPU page shows why, its health
    counters and its NVLink links, and leaves out what the device does not report."""
    from gpufleet.snapshot import GpuLink

    snap = sample_snapshot("sick-node")
    bad, pending = snap.gpus
    bad.values.update(remapped_rows_failure=1.0, remapped_rows_uncorrectable_total=3.0, pcie_replays_total=17.0)
    bad.links = [GpuLink(link=0, values={"up": 1.0, "speed_bytes_per_second": 25e9, "transmit_bytes_total": 2e9,
                                         "crc_data_errors_total": 4.0, "replay_errors_total": 1.0}),
                 GpuLink(link=1, values={"up": 0.0})]
    pending.values.update(retired_pages_pending=1.0)
    push_node(hub, snap)
    with open_page(browser, f"{hub.url}/nodes/sick-node") as (page, errors):
        page.wait_for_selector(".gcard[data-gpu='0'] .badge.health")
        flags = page.evaluate("""() => [...document.querySelectorAll('.gcard')].map(c => {
            const b = c.querySelector('.badge.health'); return [c.dataset.gpu, b ? b.dataset.health : null]; })""")
        assert flags == [["0", "drain"], ["1", "reset"]]
        assert "no spare memory rows" in page.get_attribute(".gcard[data-gpu='0'] .badge.health", "title")
        shot(page, artifacts, "node-health")
        assert errors == []
    with open_page(browser, f"{hub.url}/nodes/sick-node/gpus/0") as (page, errors):
        page.wait_for_selector("#g-health:not([hidden])")
        assert page.get_attribute("#g-health", "data-health") == "drain"
        assert "Drain this GPU" in page.inner_text("#g-health")
        counters = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#g-counters tr[data-counter]')]
            .map(r => [r.dataset.counter, +r.dataset.value]))""")
        # only what the device reported, in the health table's order
        assert counters == {"remapped_rows_failure": 1, "remapped_rows_uncorrectable_total": 3, "pcie_replays_total": 17}
        links = page.evaluate("""() => [...document.querySelectorAll('#g-linktable tbody tr')].map(r =>
            [r.dataset.link, r.cells[1].innerText, r.querySelector('[data-errors]').dataset.errors])""")
        assert links == [["0", "up", "5"], ["1", "down", ""]]
        assert page.inner_text("#g-lcount") == "(1 of 2 up)"
        shot(page, artifacts, "gpu-health")
        assert errors == []
    with open_page(browser, f"{hub.url}/nodes/sick-node/gpus/1") as (page, errors):
        page.wait_for_selector("#g-health:not([hidden])")
        assert page.get_attribute("#g-health", "data-health") == "reset"
        assert "no NVLink" in page.inner_text("#g-links")
        assert errors == []


def test_markup_in_a_command_line_does_not_break_pages(hub: Hub, browser: Any) -> None:
    """Issue 9: a process named `<!--<script>` emptied the node and GPU pages (their embedded JSON)."""
    import msgspec

    evil = '<!--<script>alert(1)</script><script>document.title="x"</script> & "quotes"'
    snap = sample_snapshot("evil-node")
    snap.gpus[0].processes[0].command = evil
    push_node(hub, snap)
    for path in ("/nodes/evil-node", "/nodes/evil-node/gpus/0"):
        with open_page(browser, f"{hub.url}{path}") as (page, errors):
            # the embedded state parses, and the page shows the command line as text
            data = page.evaluate("() => JSON.parse(document.getElementById('initial').textContent)")
            embedded = msgspec.json.decode(msgspec.json.encode(data["snapshotJson"]))
            assert embedded["gpus"][0]["processes"][0]["command"] == evil
            page.wait_for_selector("td.cmd")
            assert evil in page.inner_text("main")
            assert errors == [] and page.title() != "x"


def test_logout_and_logout_everywhere(hub: Hub, browser: Any) -> None:
    ctx = browser.new_context()
    other = browser.new_context()  # a second device of the same user
    try:
        for c in (ctx, other):
            page = c.new_page()
            page.goto(f"{hub.url}/login")
            log_in(page, "ui-admin", hub.password)
            page.wait_for_selector("body[data-page='fleet'][data-ready='1']")
        page = ctx.pages[0]
        page.click("form.logout[action='/logout/everywhere'] button")
        page.wait_for_selector("body[data-page='login']")
        assert "logged out on every device" in page.inner_text("main")
        second = other.pages[0]
        second.goto(f"{hub.url}/")
        second.wait_for_selector("body[data-page='login']")  # its session ended too
    finally:
        ctx.close()
        other.close()
