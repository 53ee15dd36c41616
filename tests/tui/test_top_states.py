"""`gpufleet top` when a node dies (real hub, real agents, one killed) and against one agent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from access import make_api_key
from conftest import pilot_until
from realparts import Proc, free_port, gpufleet, hub_proc, join_token
from gpufleet.tui.app import TopApp
from gpufleet.tui.fleetview import FleetView
from gpufleet.tui.screens import GpuScreen
from gpufleet.tui.source import Source

pytestmark = pytest.mark.realparts  # starts real gpufleet processes


def _agent(tmp: Path, hub_url: str, node: str, token: str) -> tuple[Proc, str]:
    port = free_port()
    p = Proc(gpufleet("agent", "--hub", hub_url, "--token", token, "--node", node, "--simulate", "2xRTX4090",
                      "--listen", f"127.0.0.1:{port}", "--interval", "0.5"), tmp / f"agent-{node}.log",
             env={"XDG_STATE_HOME": str(tmp / "state")})
    p.wait_http(f"http://127.0.0.1:{port}/healthz")
    return p, f"http://127.0.0.1:{port}"




def _screen(view: FleetView) -> list[str]:
    return [view.render_line(y).text for y in range(view.size.height)]


def test_a_killed_node_goes_stale_then_down_and_its_gpus_are_not_free(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "d"
    hub = hub_proc(tmp_path, data, port, "--down-after", "4s")
    agents: list[Proc] = []
    try:
        key = make_api_key(data, "viewer")
        token = join_token(data)
        live, live_url = _agent(tmp_path, url, "live-node", token)
        dying, _ = _agent(tmp_path, url, "dying-node", token)
        agents += [live, dying]

        async def go() -> None:
            app = TopApp(Source(url, "hub", api_key=key), interval=0.5)
            async with app.run_test(size=(100, 20)) as pilot:
                view = app.query_one(FleetView)
                await pilot_until(pilot, lambda: sum(1 for ln in view.lines if ln.gpu) == 4, "both nodes' GPUs")
                dying.stop()
                # STALE comes first unless the hub's status pass (every few seconds) finds it already down.
                await pilot_until(pilot, lambda: any("dying-node" in t and ("STALE" in t or "DOWN" in t)
                                               for t in _screen(view)), "dying-node shown STALE or DOWN")
                await pilot_until(pilot, lambda: any("dying-node" in t and "DOWN" in t for t in _screen(view)),
                            "dying-node shown DOWN: " + "\n".join(_screen(view)))
                assert "1 down" in str(app.query_one("#summary").content)
                live_line = next(t for t in _screen(view) if t.startswith("live-node"))
                assert " up " in live_line and "DOWN" not in live_line
                await pilot.press("f")  # free view: nothing of a down node
                assert all(ln.node.name == "live-node" for ln in view.lines)
                await pilot.press("q")

        asyncio.run(go())

        async def agent_view() -> None:  # --agent: one node, no history to draw
            app = TopApp(Source(live_url, "agent"), interval=0.5)
            async with app.run_test(size=(80, 24)) as pilot:
                view = app.query_one(FleetView)
                await pilot_until(pilot, lambda: len(view.lines) == 3, "the agent's node and 2 GPUs")
                assert view.lines[0].node.name == "live-node"
                await pilot.press("down", "enter")
                assert isinstance(app.screen, GpuScreen)
                await pilot_until(pilot, lambda: "no history" in str(app.screen.query_one("#spark").content),
                            "the agent's no-history line")
                await pilot.press("escape", "q")

        asyncio.run(agent_view())
    finally:
        for a in agents:
            a.stop()
        hub.stop()
