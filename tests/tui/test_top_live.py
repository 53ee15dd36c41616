"""`gpufleet top`, `ls` and `free` against a real hub with a simulated fleet (`gpufleet up --simulate`).

Keys and screens through Textual's headless pilot; the one-shot lists as processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from access import bearer, make_api_key
from conftest import eventually, pilot_until
from realparts import Proc, free_port, gpufleet
from gpufleet.tui.app import TopApp
from gpufleet.tui.fleetview import FleetView
from gpufleet.tui.screens import GpuScreen, HelpScreen, NodeScreen
from gpufleet.tui.source import Source

pytestmark = pytest.mark.realparts  # starts real gpufleet processes

SIM = 4
KEY: dict[str, str] = {}  # made by the hub fixture


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("tophub")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    p = Proc(gpufleet("up", "--simulate", str(SIM), "--listen", f"127.0.0.1:{port}", "--data", str(tmp / "d"),
                      "--interval", "1"), tmp / "up.log")
    try:
        p.wait_http(f"{url}/healthz")
        # an admin's key (command lines are shown to admins), for this file's reads and commands
        key = make_api_key(tmp / "d", "admin")
        saved = os.environ.get("GPUFLEET_API_KEY")
        os.environ["GPUFLEET_API_KEY"] = KEY["key"] = key
        eventually(lambda: len(httpx.get(f"{url}/api/v1/snapshots", headers=bearer(key)).json()["snapshots"]) == SIM + 1,
                   timeout=30, what="this machine and the simulated nodes")
        yield url
    finally:
        p.stop()
        if "key" in KEY:
            if saved is None:
                os.environ.pop("GPUFLEET_API_KEY", None)
            else:
                os.environ["GPUFLEET_API_KEY"] = saved




def _summary(app: TopApp) -> str:
    return str(app.query_one("#summary").content)


def test_keys_and_screens_at_80x24(hub: str) -> None:
    async def go() -> None:
        app = TopApp(Source(hub, "hub", api_key=KEY["key"]), interval=1.0)
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one(FleetView)
            await pilot_until(pilot, lambda: len(view.lines) > SIM, "the fleet's lines")
            assert f"{SIM + 1} nodes" in _summary(app) and "sort name" in _summary(app)
            names = [ln.node.name for ln in view.lines if ln.gpu is None]
            assert names == sorted(names)

            await pilot.press("s")  # sort by utilisation: busiest node first
            assert "sort util" in _summary(app)

            users = sorted({p.user for ln in view.lines if ln.gpu for p in ln.gpu.procs})
            assert users, "the simulated fleet runs jobs"
            await pilot.press("slash", *f"user:{users[0]}", "enter")
            gpus = [ln.gpu for ln in view.lines if ln.gpu]
            assert gpus and all(users[0] in g.users for g in gpus)
            assert f"filter: user:{users[0]}" in _summary(app)
            await pilot.press("escape")  # clears the filter
            assert "filter" not in _summary(app)
            await pilot.press("slash", *"no-such-thing")
            assert not view.lines and "nothing matches the filter 'no-such-thing'" in view.render_line(0).text
            await pilot.press("escape")
            assert view.lines

            await pilot.press("f")  # free GPUs only
            assert "FREE GPUs" in _summary(app)
            free = [ln.gpu for ln in view.lines if ln.gpu]
            assert free and all(not g.procs for g in free) and len(free) == len(app.fleet.free_gpus())
            await pilot.press("f")

            # Drill down: a node, then (back, down one line) one of its GPUs, with the last hour.
            await pilot.press("home", "enter")
            assert isinstance(app.screen, NodeScreen)
            await pilot_until(pilot, lambda: "last hour" in str(app.screen.query_one("#spark").content), "node history")
            await pilot.press("escape", "down", "enter")
            assert isinstance(app.screen, GpuScreen)
            await pilot_until(pilot, lambda: "last hour" in str(app.screen.query_one("#spark").content), "GPU history")
            spark = str(app.screen.query_one("#spark").content)
            assert any(c in spark for c in "▁▂▃▄▅▆▇█"), spark
            assert "util" in spark and "power" in spark
            await pilot.press("s", "f")  # list keys do nothing over a detail screen
            assert isinstance(app.screen, GpuScreen) and app.how.sort_name == "util" and not app.how.free_only
            await pilot.press("escape", "question_mark")
            assert isinstance(app.screen, HelpScreen)
            box = app.screen.query_one("#helpbox").region
            assert box.right <= 80 and box.bottom <= 24  # the whole help fits an 80x24 terminal
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("end")  # scrolling: the cursor's line stays on screen
            assert view.cursor == len(view.lines) - 1 and view.scroll_offset.y > 0
            await pilot.press("home")
            assert view.cursor == 0 and view.scroll_offset.y == 0
            await pilot.press("q")
        assert app.return_code in (0, None)

    asyncio.run(go())


def test_ls_and_free_json(hub: str) -> None:
    r = subprocess.run(gpufleet("ls", "--hub", hub, "--json"), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    ls = json.loads(r.stdout)
    assert len(ls["nodes"]) == SIM + 1
    gpus = [g for n in ls["nodes"] for g in n["gpus"]]
    assert gpus and all({"index", "uuid", "utilization_ratio", "memory_total_bytes", "temperature_celsius",
                         "power_watts", "processes", "free"} <= set(g) for g in gpus)
    assert any(p["user"] and p["command"] for g in gpus for p in g["processes"])
    r = subprocess.run(gpufleet("free", hub, "--json"), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    free = json.loads(r.stdout)
    assert free["count"] == len(free["gpus"]) > 0
    assert all(g["processes"] == [] and g["up"] for g in free["gpus"])
    text = subprocess.run(gpufleet("ls", hub), capture_output=True, text=True, timeout=30)
    assert text.returncode == 0 and text.stdout.startswith("NODE") and len(text.stdout.splitlines()) > len(gpus)


def test_bad_targets_are_one_line_usage_errors(hub: str) -> None:
    for args in (("ls", "http://127.0.0.1:9"), ("free", "--json", "--hub", "http://127.0.0.1:9"),
                 ("top", hub, "--hub", hub)):
        r = subprocess.run(gpufleet(*args), capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 3, r.stderr
    r = subprocess.run(gpufleet("top", "--hub", hub), capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "needs a terminal" in r.stderr


def test_snapshots_come_gzipped_to_clients_that_ask(hub: str) -> None:
    """What `top` reads every interval over a slow link: compressed when asked, identical decoded."""
    with httpx.Client(headers=bearer(KEY["key"])) as c:
        plain = c.get(f"{hub}/api/v1/snapshots", headers={"Accept-Encoding": "identity"})
        packed = c.get(f"{hub}/api/v1/snapshots", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers and packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) * 4 < len(plain.content)
    assert {s["node"] for s in packed.json()["snapshots"]} == {s["node"] for s in plain.json()["snapshots"]}
    assert "Accept-Encoding" in packed.headers["vary"]
