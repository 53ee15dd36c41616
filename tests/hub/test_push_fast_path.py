"""The push routes' plain-ASGI path (hub/pushpath.py) answers as FastAPI's stack did; node
credentials come from memory yet a revocation or a new credential counts from the next push;
the ingest worker hands back results and errors."""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gpufleet import compact
from gpufleet.hub import ingestworker
from gpufleet.hub.app import create_app
from gpufleet.hub.ingestworker import IngestWorker
from gpufleet.hub.service import Hub, HubOptions, IngestError
from gpufleet.hub.state import HubState
from gpufleet.snapshot import to_json
from sample_snapshot import sample_snapshot

PUSH = "/api/v1/push"
IGNORED = {"date", "server"}  # set by the server, not the app


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(HubOptions(data=tmp_path / "data", max_sample_age=1e10))
    yield h
    h.close()


@pytest.fixture
def clients(hub: Hub) -> Iterator[tuple[TestClient, TestClient]]:
    """(through hub/pushpath.py, through FastAPI's stack as before) on one app and one hub."""
    app = create_app(hub, background=False)

    async def stack(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    kw: dict[str, Any] = {"base_url": "http://127.0.0.1", "raise_server_exceptions": False}
    with TestClient(app, **kw) as fast, TestClient(stack, **kw) as slow:
        yield fast, slow


def _cred(hub: Hub, node: str = "n1") -> str:
    return hub.state.register(node, {}, None, token=hub.state.create_token())


def _body(*stamps: float, node: str = "n1") -> bytes:
    snaps = []
    for ts in stamps:
        s = sample_snapshot(node)
        s.timestamp = ts
        snaps.append(to_json(s))
    return b'{"snapshots":[' + b",".join(snaps) + b"]}"


def _same(fast: TestClient, slow: TestClient, path: str, body: bytes, headers: dict[str, str]) -> Any:
    """Send one request through each path; assert the answers match; return the fast one."""
    a = fast.post(path, content=body, headers=headers)
    b = slow.post(path, content=body, headers=headers)
    assert (a.status_code, a.content) == (b.status_code, b.content), (a.text, b.text)
    ha = {k: v for k, v in a.headers.items() if k not in IGNORED}
    hb = {k: v for k, v in b.headers.items() if k not in IGNORED}
    assert ha == hb
    return a


def test_answers_match_fastapis(hub: Hub, clients: tuple[TestClient, TestClient]) -> None:
    fast, slow = clients
    cred = _cred(hub)
    auth = {"Authorization": f"Bearer {cred}"}
    rejected = hub.counters.rejected
    for path in (PUSH, compact.PATH):
        assert _same(fast, slow, path, b"{}", {}).status_code == 401  # no credential
        assert _same(fast, slow, path, b"{}", {"Authorization": f"Basic {cred}"}).status_code == 401
        r = _same(fast, slow, path, b"{}", {"Authorization": "Bearer gfn_forged"})
        assert r.status_code == 401 and "unknown or revoked node credential" in r.json()["detail"]
        r = _same(fast, slow, path, b"not gzip", {**auth, "Content-Encoding": "gzip"})
        assert r.status_code == 400 and "not valid gzip" in r.json()["detail"]
        r = _same(fast, slow, path, b"{}", {**auth, "Content-Encoding": "br"})
        assert r.status_code == 400 and "'br' is not supported" in r.json()["detail"]
        r = _same(fast, slow, path, b"{not json", auth)
        assert r.status_code in (400, 409)
        r = _same(fast, slow, path, b"{}", {**auth, "Host": "evil.example"})
        assert r.status_code == 421 and "--allowed-host" in r.text
    assert hub.counters.rejected == rejected + 4  # the forged credential, counted on both paths

    a = fast.post(PUSH, content=_body(1000.0), headers=auth)
    b = slow.post(PUSH, content=_body(1001.0), headers=auth)
    assert a.content == b.content == b'{"accepted":1,"duplicates":0}'
    assert {k: v for k, v in a.headers.items() if k not in IGNORED} == {
        k: v for k, v in b.headers.items() if k not in IGNORED}
    r = _same(fast, slow, PUSH, gzip.compress(_body(1001.0)), {**auth, "Content-Encoding": "gzip"})
    assert r.json() == {"accepted": 0, "duplicates": 1}
    assert r.headers["content-type"] == "application/json" and r.headers["cache-control"] == "no-store"
    assert r.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in r.headers["content-security-policy"]

    hub.opts.max_push_bytes = 100
    r = _same(fast, slow, PUSH, _body(1002.0), auth)
    assert r.status_code == 413 and "exceeds the limit of 100" in r.json()["detail"]
    r = _same(fast, slow, PUSH, gzip.compress(b" " * 5000), {**auth, "Content-Encoding": "gzip"})
    assert r.status_code == 413 and "decompressed push body" in r.json()["detail"]
    hub.opts.max_push_bytes = 1 << 20

    r = _same(fast, slow, PUSH, _body(time.time() + 3600), auth)  # the agent's clock an hour ahead
    assert r.status_code == 400 and "--max-clock-ahead" in r.json()["detail"]


def test_refusals_with_retry_after_match(hub: Hub, clients: tuple[TestClient, TestClient],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = clients
    auth = {"Authorization": f"Bearer {_cred(hub)}"}
    hub.store_broken = "test: damaged"
    r = _same(fast, slow, PUSH, _body(1000.0), auth)
    assert r.status_code == 503 and r.headers["retry-after"] == "30"
    hub.store_broken = None

    def locked(*args: Any) -> tuple[int, int]:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(hub, "ingest_push", locked)
    errors = hub.counters.store_errors
    r = _same(fast, slow, PUSH, _body(1000.0), auth)
    assert r.status_code == 503 and "database is locked" in r.json()["detail"] and r.headers["retry-after"] == "30"
    assert hub.counters.store_errors == errors + 2

    def broken(*args: Any) -> tuple[int, int]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(hub, "ingest_push", broken)
    a, b = (client.post(PUSH, content=_body(1000.0), headers=auth) for client in clients)
    assert (a.status_code, a.text) == (b.status_code, b.text) == (500, "Internal Server Error")
    # Starlette's 500 came from outside AccessMiddleware, without its headers; this path's has them
    # (which also shows the two clients took different paths).
    assert a.headers["x-frame-options"] == "DENY" and "x-frame-options" not in b.headers


def test_other_methods_and_paths_still_reach_fastapi(hub: Hub, clients: tuple[TestClient, TestClient]) -> None:
    fast, _ = clients
    assert fast.get(PUSH).status_code == 405
    doc = fast.get("/openapi.json").json()
    assert doc["paths"][PUSH]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PushRequest"}
    assert compact.PATH in doc["paths"]


def test_revocation_elsewhere_counts_from_the_next_push(hub: Hub, clients: tuple[TestClient, TestClient]) -> None:
    fast, _ = clients
    cred = _cred(hub)
    auth = {"Authorization": f"Bearer {cred}"}
    assert fast.post(PUSH, content=_body(1000.0), headers=auth).status_code == 200
    assert hub.state.known_node(cred) == "n1"  # from memory from now on
    cli = HubState(hub.opts.data / "hub.db")  # what `gpufleet node revoke n1` opens, beside the hub
    try:
        assert cli.revoke_node("n1")
    finally:
        cli.close()
    r = fast.post(PUSH, content=_body(1001.0), headers=auth)
    assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]


def test_credentials_from_memory_until_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = HubState(tmp_path / "hub.db")
    cli = HubState(tmp_path / "hub.db")
    try:
        token = state.create_token()
        old = state.register("n1", {}, None, token=token)
        other = state.register("n2", {}, None, token=token)
        assert state.node_for_credential(old) == "n1"
        assert state.node_for_credential(other) == "n2"
        reads: list[str] = []
        real_read = state._read
        monkeypatch.setattr(state, "_read", lambda sql, args=(): reads.append(sql) or real_read(sql, args))
        assert state.node_for_credential(old) == "n1" and not reads  # no file access for a known node
        # A new credential through this hub: the old one stops at once, the other node's stays.
        new = state.register("n1", {}, None, credential=old)
        assert state.node_for_credential(old) is None
        assert state.node_for_credential(new) == "n1"
        reads.clear()
        assert state.node_for_credential(other) == "n2" and not reads
        # Another connection's commit (a CLI command): read from the file again, at once.
        cli.revoke_node("n2")
        assert state.node_for_credential(other) is None and reads
        # While a long write holds the writer connection, the file decides.
        assert state.node_for_credential(new) == "n1"
        with state._lock:
            cli.forget_node("n1")
            assert state.node_for_credential(new) is None
        state.forget_node("n1")
        assert state.known_node(new) is None
    finally:
        cli.close()
        state.close()


def test_worker_returns_results_and_errors_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingestworker, "IDLE_S", 0.05)
    worker = IngestWorker()
    threads: set[str] = set()

    def job(i: int) -> int:
        threads.add(threading.current_thread().name)
        if i == 3:
            raise IngestError(400, "three")
        return i * 10

    async def main() -> list[Any]:
        return await asyncio.gather(*(worker.run(job, i) for i in range(6)), return_exceptions=True)

    out = asyncio.run(main())
    assert out[:3] == [0, 10, 20] and out[4:] == [40, 50]
    assert isinstance(out[3], IngestError) and str(out[3]) == "three"
    assert threads == {"gpufleet-ingest"}
    deadline = time.monotonic() + 5
    while worker._thread is not None and time.monotonic() < deadline:  # idle: the thread ends
        time.sleep(0.01)
    assert worker._thread is None
    assert asyncio.run(main())[5] == 50  # and a new one starts on the next job


def test_worker_stop_runs_what_is_queued_first() -> None:
    worker = IngestWorker()
    gate = threading.Event()
    done: list[int] = []

    def job(i: int) -> int:
        gate.wait(5)  # the first job holds the thread while the others queue behind it
        done.append(i)
        return i

    async def main() -> list[int]:
        tasks = [asyncio.ensure_future(worker.run(job, i)) for i in range(5)]
        await asyncio.sleep(0)  # all five queued
        stopper = threading.Thread(target=worker.stop, args=(10.0,))
        stopper.start()
        gate.set()
        results = await asyncio.gather(*tasks)
        stopper.join(10)
        assert not stopper.is_alive()
        return results

    assert asyncio.run(main()) == [0, 1, 2, 3, 4] and done == [0, 1, 2, 3, 4]
    assert worker._thread is None
    assert asyncio.run(main()) == [0, 1, 2, 3, 4]  # usable again (an app started a second time)
