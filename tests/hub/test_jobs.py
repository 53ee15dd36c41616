"""Every background job of the hub survives any exception, is counted, and shows in /healthz."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from access import authed_client
from gpufleet.hub.extensions import load_extensions
from gpufleet.hub.jobs import Jobs
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.snapshot import to_json
from conftest import eventually
from sample_snapshot import sample_snapshot


def errors_of(client: TestClient, job: str) -> float:
    text = client.get("/metrics").text
    m = re.search(rf'^gpufleet_hub_background_errors_total{{job="{job}"}} (\S+)$', text, re.M)
    assert m, f"no error counter for job {job} in /metrics"
    return float(m.group(1))


def test_disk_full_in_save_latest_does_not_stop_node_status(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The finding: SQLite "disk is full" in save_latest ended the background loop; a dead node stayed up."""
    hub = Hub(HubOptions(data=tmp_path / "data", down_after=1.5))
    full = {"on": True}
    real_save = hub.state.save_nodes

    def save(statuses: list[tuple[str, str, float, float | None]], items: list[tuple[str, float, bytes]]) -> None:
        if full["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        real_save(statuses, items)

    hub.state.save_nodes = save  # type: ignore[method-assign]
    hub.register(hub.state.create_token(), "n1", {}, None)
    snap = sample_snapshot("n1")
    snap.timestamp = time.time()
    hub.ingest([snap])
    assert hub.fleet.nodes["n1"].status == "up"
    caplog.set_level(logging.INFO, logger="gpufleet.hub")
    try:
        with authed_client(hub) as client:
            # The node stops sending: status must still move on although every save fails.
            eventually(lambda: hub.fleet.nodes["n1"].status == "down", timeout=20, what="the silent node to be down")
            eventually(lambda: client.get("/healthz").status_code == 503, timeout=20, what="healthz 503")
            body = client.get("/healthz").json()
            assert body["status"] == "failing" and "save" in body["failing"]
            assert "disk is full" in body["failing"]["save"]
            eventually(lambda: errors_of(client, "save") >= 2, timeout=20, what="a second counted error")
            assert errors_of(client, "status") == 0
            logged = [r for r in caplog.records if "background job save failed" in r.getMessage()]
            assert len(logged) == 1, "each distinct error is logged once"
            # Space returns: the job recovers by itself and saves what it kept.
            full["on"] = False
            t0 = time.monotonic()
            eventually(lambda: client.get("/healthz").status_code == 200, timeout=40, what="recovery")
            took = time.monotonic() - t0
            print(f"\nsave job recovered {took:.1f} s after space returned")
            assert any("background job save recovered" in r.getMessage() for r in caplog.records)
        rec = {r.name: r for r in hub.state.nodes()}
        assert rec["n1"].status == "down", "the status kept during the failure was saved after it"
    finally:
        hub.close()


@pytest.mark.parametrize("job, attr", [("flush", "_flush_store"), ("store_upkeep", "maintain"),
                                       ("status", "tick")])
def test_core_job_exception_is_survived(tmp_path: Path, job: str, attr: str) -> None:
    hub = Hub(HubOptions(data=tmp_path / "data"))
    real = getattr(hub, attr)
    broken = {"on": True}

    def step(*a: object, **kw: object) -> None:
        if broken["on"]:
            raise RuntimeError(f"{job} exploded")
        real(*a, **kw)

    setattr(hub, attr, step)
    try:
        with authed_client(hub) as client:
            eventually(lambda: client.get("/healthz").status_code == 503, timeout=20, what=f"{job} failing in healthz")
            assert client.get("/healthz").json()["failing"] == {job: f"RuntimeError: {job} exploded"}
            assert errors_of(client, job) >= 1
            broken["on"] = False
            eventually(lambda: client.get("/healthz").status_code == 200, timeout=40, what=f"{job} recovery")
    finally:
        hub.close()


def test_alerts_and_ui_loops_are_supervised(tmp_path: Path) -> None:
    hub = Hub(HubOptions(data=tmp_path / "data"))
    extensions = load_extensions(hub)
    alerts = next(e for e in extensions if type(e).__name__ == "AlertsExtension")
    alerts.interval = 0.05
    broken = {"on": True}
    real_eval = alerts.evaluate

    def evaluate(*a: object, **kw: object) -> object:
        if broken["on"]:
            raise ValueError("rule blew up")
        return real_eval(*a, **kw)

    alerts.evaluate = evaluate
    try:
        with authed_client(hub, extensions) as client:
            eventually(lambda: "alerts" in client.get("/healthz").json().get("failing", {}), timeout=20, what="alerts failing")
            broken["on"] = False
            eventually(lambda: client.get("/healthz").status_code == 200, timeout=40, what="alerts recovery")
            assert errors_of(client, "alerts") >= 1
            assert errors_of(client, "ui") == 0
    finally:
        hub.close()


def test_backoff_and_distinct_errors() -> None:
    t = [0.0]
    jobs = Jobs(clock=lambda: t[0])
    calls = []

    def fail() -> None:
        calls.append(t[0])
        raise OSError(28, "No space left on device")

    assert not jobs.call("flush", fail)
    assert not jobs.call("flush", fail)  # backing off: not called again at once
    assert len(calls) == 1
    for _ in range(10):
        t[0] += 100.0
        jobs.call("flush", fail)
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert len(calls) == 11 and all(g == 100.0 for g in gaps)
    st = jobs.jobs["flush"]
    assert st.retry_at - t[0] == 30.0, "backoff is capped"
    assert st.seen == {"OSError: [Errno 28] No space left on device": 11}
    assert jobs.failing() == {"flush": "OSError: [Errno 28] No space left on device"}
    t[0] += 30.0
    assert jobs.call("flush", lambda: None)
    assert jobs.failing() == {} and jobs.errors_total() == {"flush": 11}


def test_metrics_while_ingest_threads_append_lags(tmp_path: Path) -> None:
    """Found by the 1,000-agent load test: /metrics raised "deque mutated during iteration"."""
    import threading

    hub = Hub(HubOptions(data=tmp_path / "data"))
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            hub._lags.append((time.time(), 0.1))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for th in threads:
        th.start()
    try:
        for _ in range(3000):
            hub.lag_max(time.time())
    finally:
        stop.set()
        for th in threads:
            th.join()
        hub.close()


def test_alert_evaluation_and_the_snapshot_save_run_on_the_ingest_thread(tmp_path: Path) -> None:
    """Python-work steps run between pushes on the one ingest thread, not on threads of their own
    that took turns for the GIL with it and the event loop (the week query's p99, issue 14)."""
    import threading

    hub = Hub(HubOptions(data=tmp_path / "data"))
    extensions = load_extensions(hub)
    alerts = next(e for e in extensions if type(e).__name__ == "AlertsExtension")
    alerts.interval = 0.05
    threads: dict[str, set[str]] = {"alerts": set(), "save": set(), "push": set()}

    def spy(kind: str, fn: object) -> object:
        def wrapped(*a: object, **kw: object) -> object:
            threads[kind].add(threading.current_thread().name)
            return fn(*a, **kw)  # type: ignore[operator]
        return wrapped

    alerts.evaluate = spy("alerts", alerts.evaluate)
    hub.save_latest = spy("save", hub.save_latest)  # type: ignore[method-assign]
    hub.ingest_push = spy("push", hub.ingest_push)  # type: ignore[method-assign]
    try:
        with authed_client(hub, extensions) as client:
            r = client.post("/api/v1/register", json={"node": "n1", "labels": {}},
                            headers={"Authorization": f"Bearer {hub.state.create_token()}"})
            assert r.status_code == 200, r.text
            snap = sample_snapshot("n1")
            snap.timestamp = time.time()
            r = client.post("/api/v1/push", content=b'{"snapshots":[' + to_json(snap) + b"]}",
                            headers={"Authorization": f"Bearer {r.json()['credential']}"})
            assert r.status_code == 200, r.text
            eventually(lambda: threads["alerts"] and threads["save"], timeout=20, what="alerts and save ran")
            seen = {kind: set(names) for kind, names in threads.items()}  # not the save at exit
    finally:
        hub.close()
    assert seen == {"alerts": {"gpufleet-ingest"}, "save": {"gpufleet-ingest"}, "push": {"gpufleet-ingest"}}
