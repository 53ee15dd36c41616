"""Firing alerts above the list, and the connection line, in the headless app (data handed in)."""

from __future__ import annotations

import asyncio

from gpufleet.tui.app import TopApp
from gpufleet.tui.model import build
from gpufleet.tui.source import Source


def _alert(i: int, severity: str = "warning") -> dict:
    return {"alertname": f"GpufleetTest{i}", "severity": severity, "state": "firing",
            "labels": {"node": "n1", "gpu": str(i)}, "annotations": {"summary": f"GPU {i} on n1 is too hot"}}


def test_alerts_and_reconnecting_line() -> None:
    async def go() -> None:
        app = TopApp(Source("http://127.0.0.1:9", "hub"), interval=3600)  # nothing listens on port 9
        async with app.run_test(size=(80, 24)) as pilot:
            conn = app.query_one("#conn")
            for _ in range(200):
                if "reconnecting" in str(conn.content):
                    break
                await pilot.pause(0.05)
            assert "reconnecting: cannot read http://127.0.0.1:9" in str(conn.content) and conn.display

            snap = {"node": "n1", "timestamp": 1.0, "values": {}, "gpus": []}
            app.show(build([snap], {"n1": {"status": "up"}}, [_alert(0, "critical"), _alert(1)], 1.0))
            await pilot.pause()
            alerts = app.query_one("#alerts")
            text = str(alerts.content)
            assert alerts.display and "critical GpufleetTest0: GPU 0 on n1 is too hot" in text
            assert "GpufleetTest1" in text
            assert not conn.display  # data came: the reconnecting line goes

            app.show(build([snap], {"n1": {"status": "up"}}, [_alert(i) for i in range(5)], 2.0))
            await pilot.pause()
            text = str(alerts.content)
            assert "GpufleetTest1" in text and "GpufleetTest2" not in text and "3 more alerts firing" in text
            assert alerts.region.height == 3  # at most three lines, the list keeps the rest

            app.show(build([snap], {"n1": {"status": "up"}}, [], 3.0))
            await pilot.pause()
            assert not alerts.display
            await pilot.press("q")

    asyncio.run(go())
