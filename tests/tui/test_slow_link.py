"""A hub that stops answering promptly (a slow SSH link): the view says how old its rows are, keeps
its keys, and goes back to live when the answer comes. The stand-in server holds its answers."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gpufleet.tui.app import TopApp
from gpufleet.tui.source import Source
from realparts import json_reply

RELEASE = threading.Event()
SEEN = {"snapshots": 0}
SNAPS = {"snapshots": [{"node": "n1", "timestamp": 1.0, "values": {}, "gpus": [
    {"index": 0, "model": "X", "values": {"up": 1.0, "utilization_ratio": 0.5}}]}]}


class SlowHub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/api/v1/snapshots"):
            SEEN["snapshots"] += 1
            if SEEN["snapshots"] > 1:
                RELEASE.wait(30)  # every read after the first hangs until the test lets it go
            body = SNAPS
        elif self.path.startswith("/api/v1/nodes"):
            body = {"nodes": [{"name": "n1", "status": "up"}]}
        else:
            body = {"alerts": []}
        json_reply(self, body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_slow_hub_is_shown_as_slow_then_live() -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), SlowHub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    async def go() -> None:
        app = TopApp(Source(f"http://127.0.0.1:{srv.server_address[1]}", "hub"), interval=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            conn = app.query_one("#conn")

            async def until(cond, what: str) -> None:
                for _ in range(300):
                    if cond():
                        return
                    await pilot.pause(0.05)
                raise AssertionError(f"timed out waiting for {what}")

            await until(lambda: app.fleet is not None, "the first answer")
            await until(lambda: "waiting for" in str(conn.content) and conn.display, "the slow-link line")
            assert "showing data from" in str(conn.content)
            await pilot.press("s")  # keys still answer while the read hangs
            assert app.how.sort_name == "util"
            RELEASE.set()
            await until(lambda: not conn.display, "the view to go live again")
            await pilot.press("q")

    try:
        asyncio.run(go())
    finally:
        RELEASE.set()
        srv.shutdown()
        srv.server_close()
