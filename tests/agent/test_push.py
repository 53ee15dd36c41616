"""The agent's pusher against a small fake hub that speaks the hub's push contract."""

from __future__ import annotations

import gzip
import json
import logging
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gpufleet.agent.credentials import CredentialStore
from gpufleet.agent.push import (
    MISSING_TOKEN, Pusher, agent_url_for, attach_pusher, default_spool_dir, normalize_hub_url,
)
from gpufleet.agent.spool import Spool
from gpufleet.config import AgentConfig
from gpufleet.errors import UserError
from gpufleet.snapshot import NodeSnapshot, from_json
from conftest import eventually
from realparts import json_reply

TOKEN = "join-token-s3cret"
FAST = dict(backoff_base=0.02, backoff_cap=0.1, idle_wait=0.05, timeout=2.0)


# ---- a fake hub ------------------------------------------------------------------------------


class FakeHub:
    """Implements POST /api/v1/register and /api/v1/push as the contract says; knobs for failures."""

    def __init__(self) -> None:
        self.tokens = {TOKEN}
        self.credentials: dict[str, str] = {}  # credential -> node
        self.stored: list[tuple[str, float]] = []  # (node, timestamp), in arrival order
        self.seen: set[tuple[str, float]] = set()
        self.registrations: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self.status: int | None = None  # force this status on every request (e.g. 503)
        self.bad_timestamps: set[float] = set()  # a batch holding one of these gets 400
        self.max_batch: int | None = None  # larger batches get 413
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hub.lock:
                    hub.requests.append((self.path, dict(self.headers)))
                    code, doc = hub.handle(self.path, self.headers, raw)
                json_reply(self, doc, code)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Gone entirely: connections are refused until start() again on the same port."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def handle(self, path: str, headers: Any, raw: bytes) -> tuple[int, dict[str, Any]]:
        if self.status is not None:
            return self.status, {"detail": "forced"}
        auth = headers.get("Authorization", "")
        secret = auth.removeprefix("Bearer ")
        if path == "/api/v1/register":
            if secret not in self.tokens:
                return 401, {"detail": "unknown or revoked join token"}
            body = json.loads(raw)
            self.registrations.append(body)
            credential = secrets.token_hex(16)
            self.credentials[credential] = body["node"]
            return 200, {"node": body["node"], "credential": credential}
        if path == "/api/v1/push":
            if secret not in self.credentials:
                return 401, {"detail": "unknown or revoked node credential"}
            assert headers.get("Content-Type") == "application/json"
            if headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            snaps = [from_json(json.dumps(s)) for s in json.loads(raw)["snapshots"]]
            if self.max_batch is not None and len(snaps) > self.max_batch:
                return 413, {"detail": "body too large"}
            if any(s.timestamp in self.bad_timestamps for s in snaps):
                return 400, {"detail": "snapshots[0].gpus: expected an array"}
            accepted = duplicates = 0
            for s in snaps:
                key = (s.node, s.timestamp)
                if key in self.seen:
                    duplicates += 1
                else:
                    self.seen.add(key)
                    self.stored.append(key)
                    accepted += 1
            return 200, {"accepted": accepted, "duplicates": duplicates}
        return 404, {"detail": "not found"}

    def timestamps(self, node: str = "n1") -> list[float]:
        with self.lock:
            return [t for n, t in self.stored if n == node]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    h = FakeHub().start()
    yield h
    h.stop()


def snap(ts: float, node: str = "n1") -> NodeSnapshot:
    return NodeSnapshot(node=node, timestamp=ts, labels={"cluster": "c1"}, values={"load1": ts})


def make_pusher(hub: FakeHub, spool_dir: Path, *, node: str = "n1", token: str | None = TOKEN,
                **kw: Any) -> Pusher:
    spool = Spool(spool_dir)
    creds = CredentialStore(spool_dir / "credential.json")
    return Pusher(hub.url, node, spool, creds, token=token, labels={"cluster": "c1"},
                  agent_url="http://127.0.0.1:9401", **{**FAST, **kw})


@pytest.fixture
def pushers() -> Iterator[list[Pusher]]:
    made: list[Pusher] = []
    yield made
    for p in made:
        p.stop(timeout=0.2)


# ---- the tests -----------------------------------------------------------------------------


def test_register_then_push(hub: FakeHub, tmp_path: Path, pushers: list[Pusher]) -> None:
    p = make_pusher(hub, tmp_path / "sp")
    pushers.append(p)
    p.start()
    for i in range(3):
        p.enqueue(snap(float(i)))
    eventually(lambda: len(hub.timestamps()) == 3)
    assert hub.timestamps() == [0.0, 1.0, 2.0]
    assert hub.registrations == [{"node": "n1", "labels": {"cluster": "c1"}, "agent_url": "http://127.0.0.1:9401"}]
    # the push carries the node credential, never the join token; nothing secret in any URL
    pushes = [h for path, h in hub.requests if path == "/api/v1/push"]
    assert pushes and all(TOKEN not in h["Authorization"] for h in pushes)
    assert all("?" not in path for path, _ in hub.requests)
    eventually(lambda: p.stats()["backlog"] == 0)
    st = p.stats()
    assert st["pushed"] == 3 and st["hub_up"] == 1.0 and st["registrations"] == 1 and st["failed"] == 0


def test_hub_503_then_back_backfills_in_order(hub: FakeHub, tmp_path: Path, pushers: list[Pusher],
                                              caplog: pytest.LogCaptureFixture) -> None:
    p = make_pusher(hub, tmp_path / "sp")
    pushers.append(p)
    p.start()
    p.enqueue(snap(0.0))
    eventually(lambda: len(hub.timestamps()) == 1)
    hub.status = 503
    with caplog.at_level(logging.INFO, "gpufleet.agent.push"):
        for i in range(1, 121):
            p.enqueue(snap(float(i)))
        eventually(lambda: p.stats()["failed"] >= 4)
        assert p.stats()["hub_up"] == 0.0 and p.stats()["backlog"] > 100
        hub.status = None
        for i in range(121, 126):
            p.enqueue(snap(float(i)))
        eventually(lambda: len(hub.timestamps()) == 126)
    assert hub.timestamps() == [float(i) for i in range(126)]  # no gap, no reordering
    batches = [h for path, h in hub.requests if path == "/api/v1/push"]
    assert len(batches) < 20  # backfilled in batches, not one request per snapshot
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in msgs) == 1  # said once, not on every retry
    assert any("is back" in m for m in msgs)
    assert all(TOKEN not in m for m in msgs)


def test_hub_gone_then_restarted_on_same_port(hub: FakeHub, tmp_path: Path, pushers: list[Pusher]) -> None:
    p = make_pusher(hub, tmp_path / "sp")
    pushers.append(p)
    p.start()
    p.enqueue(snap(0.0))
    eventually(lambda: len(hub.timestamps()) == 1)
    hub.stop()  # connection refused from now on
    for i in range(1, 30):
        p.enqueue(snap(float(i)))
    eventually(lambda: p.stats()["failed"] >= 3)
    hub.start()
    eventually(lambda: len(hub.timestamps()) == 30)
    assert hub.timestamps() == [float(i) for i in range(30)]
    assert p.stats()["registrations"] == 1  # the credential is still good after the outage


def test_401_on_push_registers_again(hub: FakeHub, tmp_path: Path, pushers: list[Pusher]) -> None:
    p = make_pusher(hub, tmp_path / "sp")
    pushers.append(p)
    p.start()
    p.enqueue(snap(0.0))
    eventually(lambda: len(hub.timestamps()) == 1)
    old = dict(hub.credentials)
    hub.credentials.clear()  # the admin revoked the node
    p.enqueue(snap(1.0))
    eventually(lambda: len(hub.timestamps()) == 2)
    assert p.stats()["registrations"] == 2
    stored = CredentialStore(tmp_path / "sp" / "credential.json").load(hub.url, "n1")
    assert stored in hub.credentials and stored not in old  # the new credential replaced the old on disk
    # the first registration had no credential to show; the second shows the one the hub refused,
    # so a hub that still knows it gives the node its name back (a join token alone would not)
    assert "credential" not in hub.registrations[0]
    assert hub.registrations[1]["credential"] in old


def test_401_without_token_keeps_spooling(hub: FakeHub, tmp_path: Path, pushers: list[Pusher],
                                          caplog: pytest.LogCaptureFixture) -> None:
    CredentialStore(tmp_path / "sp" / "credential.json").save(hub.url, "n1", "revoked-cred")
    p = make_pusher(hub, tmp_path / "sp", token=None)
    pushers.append(p)
    with caplog.at_level(logging.ERROR, "gpufleet.agent.push"):
        p.start()
        for i in range(5):
            p.enqueue(snap(float(i)))
        eventually(lambda: p.stats()["failed"] >= 3)
    assert hub.timestamps() == []
    assert p.stats()["backlog"] == 5  # nothing lost: still spooled
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "--token" in errors[0]
    assert "revoked-cred" not in errors[0]


def test_malformed_snapshot_dropped_others_delivered(hub: FakeHub, tmp_path: Path, pushers: list[Pusher],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    hub.bad_timestamps = {3.0}
    p = make_pusher(hub, tmp_path / "sp")
    pushers.append(p)
    for i in range(10):  # all queued before the pusher runs: one batch holds the bad one
        p.enqueue(snap(float(i)))
    with caplog.at_level(logging.ERROR, "gpufleet.agent.push"):
        p.start()
        eventually(lambda: p.stats()["backlog"] == 0)
        p.enqueue(snap(10.0))
        eventually(lambda: len(hub.timestamps()) == 10)
    assert hub.timestamps() == [0.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert p.stats()["rejected"] == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "malformed" in errors[0] and "expected an array" in errors[0]


def test_hub_rejecting_everything_does_not_loop_forever(hub: FakeHub, tmp_path: Path,
                                                        pushers: list[Pusher]) -> None:
    p = make_pusher(hub, tmp_path / "sp")
    pushers.append(p)
    p.start()
    p.enqueue(snap(0.0))
    eventually(lambda: len(hub.timestamps()) == 1)  # registered and pushing
    hub.status = 400
    for i in range(1, 9):
        p.enqueue(snap(float(i)))
    eventually(lambda: p.stats()["backlog"] == 0)
    assert p.stats()["rejected"] == 8


def test_oversized_batch_is_split(hub: FakeHub, tmp_path: Path, pushers: list[Pusher]) -> None:
    hub.max_batch = 4
    p = make_pusher(hub, tmp_path / "sp")
    pushers.append(p)
    for i in range(30):
        p.enqueue(snap(float(i)))
    p.start()
    eventually(lambda: len(hub.timestamps()) == 30)
    assert hub.timestamps() == [float(i) for i in range(30)]
    assert p.stats()["rejected"] == 0


def test_credential_file_private_and_reused_after_restart(hub: FakeHub, tmp_path: Path) -> None:
    p = make_pusher(hub, tmp_path / "sp")
    p.start()
    p.enqueue(snap(0.0))
    eventually(lambda: len(hub.timestamps()) == 1)
    p.stop()
    path = tmp_path / "sp" / "credential.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TOKEN not in path.read_text()  # the join token itself is not kept
    hub.tokens.clear()  # the join token was revoked after enrolment: the credential must suffice
    p2 = make_pusher(hub, tmp_path / "sp", token=None)
    try:
        p2.start()
        p2.enqueue(snap(1.0))
        eventually(lambda: len(hub.timestamps()) == 2)
        assert p2.stats()["registrations"] == 0
        assert len(hub.registrations) == 1
    finally:
        p2.stop()


def test_loose_credential_file_is_tightened(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credential.json")
    store.save("http://h:1", "n1", "c")
    store.path.chmod(0o644)
    assert store.load("http://h:1", "n1") == "c"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load("http://other:1", "n1") is None  # keyed by hub: never handed to another hub


def test_stop_flushes_queued_snapshots(hub: FakeHub, tmp_path: Path) -> None:
    p = make_pusher(hub, tmp_path / "sp", batch_size=5)
    p.start()
    p.enqueue(snap(0.0))
    eventually(lambda: len(hub.timestamps()) == 1)
    for i in range(1, 200):
        p.enqueue(snap(float(i)))
    p.stop()  # the loop ends at once; the final flush sends the rest within the second
    assert hub.timestamps() == [float(i) for i in range(200)]
    assert p.stats()["backlog"] == 0


def test_stop_with_hub_down_is_quick_and_keeps_spool(hub: FakeHub, tmp_path: Path) -> None:
    hub.stop()
    p = make_pusher(hub, tmp_path / "sp")
    p.start()
    for i in range(3):
        p.enqueue(snap(float(i)))
    eventually(lambda: p.stats()["failed"] >= 1, what="a push to fail (the hub is down)")
    t0 = time.monotonic()
    p.stop()
    assert time.monotonic() - t0 < 1.6
    assert len(Spool(tmp_path / "sp")) == 3  # still there for the next start


def test_hub_without_compact_push_gets_json_for_an_hour(hub: FakeHub, tmp_path: Path, pushers: list[Pusher],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """This fake hub is an older hub: /api/v1/push/compact is 404, so the agent pushes JSON."""
    caplog.set_level(logging.INFO, logger="gpufleet.agent.push")
    p = make_pusher(hub, tmp_path / "sp")
    pushers.append(p)
    p.start()
    for i in range(3):
        p.enqueue(snap(float(i)))
        eventually(lambda: len(hub.timestamps()) == i + 1)
    paths = [path for path, _ in hub.requests if path != "/api/v1/register"]
    assert paths == ["/api/v1/push/compact", "/api/v1/push", "/api/v1/push", "/api/v1/push"]
    assert "has no compact push (HTTP 404): pushing JSON for the next 60 minutes" in caplog.text
    assert p.stats()["rejected"] == 0 and hub.timestamps() == [0.0, 1.0, 2.0]


def test_large_batches_are_gzipped(hub: FakeHub, tmp_path: Path, pushers: list[Pusher]) -> None:
    p = make_pusher(hub, tmp_path / "sp")
    pushers.append(p)
    for i in range(20):
        p.enqueue(snap(float(i)))
    p.start()
    eventually(lambda: len(hub.timestamps()) == 20)
    pushes = [h for path, h in hub.requests if path == "/api/v1/push"]
    assert pushes[0].get("Content-Encoding") == "gzip"


def _cfg(hub: FakeHub, node: str, **kw: Any) -> AgentConfig:
    return AgentConfig(node=node, hub=hub.url, listen=("127.0.0.1", 0), **kw)


def test_attach_pusher_wires_listener_and_default_spools(hub: FakeHub, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    a, b = SimpleNamespace(listeners=[]), SimpleNamespace(listeners=[])
    pa = attach_pusher(a, _cfg(hub, "node-a", token=TOKEN), **FAST)  # type: ignore[arg-type]
    pb = attach_pusher(b, _cfg(hub, "node-b", token=TOKEN), **FAST)  # type: ignore[arg-type]
    assert pa is not None and pb is not None
    try:
        assert pa.spool.path != pb.spool.path  # two agents on one machine never share a spool
        assert pa.spool.path == default_spool_dir(hub.url, "node-a")
        assert pa.spool.path.parent == tmp_path / "state" / "gpufleet" / "spool"
        a.listeners[0](snap(1.0, "node-a"))
        b.listeners[0](snap(1.0, "node-b"))
        eventually(lambda: hub.timestamps("node-a") == [1.0] and hub.timestamps("node-b") == [1.0])
        assert [r["agent_url"] for r in hub.registrations] == [None, None]  # port 0: not known yet
    finally:
        pa.stop()
        pb.stop()


def test_default_spool_differs_per_hub_and_node() -> None:
    dirs = {default_spool_dir(h, n) for h in ("http://h1:9400", "http://h2:9400") for n in ("a", "b")}
    assert len(dirs) == 4
    assert default_spool_dir("http://H1:9400/", "a") == default_spool_dir("http://h1:9400", "a")
    assert default_spool_dir("http://h:1", "../../etc").name.startswith(".._.._etc-")


def test_attach_pusher_needs_token_or_stored_credential(hub: FakeHub, tmp_path: Path) -> None:
    service = SimpleNamespace(listeners=[])
    assert attach_pusher(service, AgentConfig(node="n1")) is None  # type: ignore[arg-type]
    with pytest.raises(UserError) as err:
        attach_pusher(service, _cfg(hub, "n1", spool=tmp_path / "sp"))  # type: ignore[arg-type]
    assert str(err.value) == MISSING_TOKEN
    assert service.listeners == []
    CredentialStore(tmp_path / "sp" / "credential.json").save(normalize_hub_url(hub.url), "n1", "c")
    p = attach_pusher(service, _cfg(hub, "n1", spool=tmp_path / "sp"), **FAST)  # type: ignore[arg-type]
    assert p is not None and len(service.listeners) == 1
    p.stop()


@pytest.mark.parametrize("bad", ["hub:9400", "ftp://h", "http://h:9400/?token=x", ""])
def test_bad_hub_url_is_a_user_error(bad: str) -> None:
    with pytest.raises(UserError):
        normalize_hub_url(bad)


def test_hub_url_userinfo_never_logged(hub: FakeHub, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hub.stop()
    url = hub.url.replace("://", "://admin:pw123@")
    spool = Spool(tmp_path / "sp")
    p = Pusher(url, "n1", spool, CredentialStore(tmp_path / "sp" / "credential.json"), token=TOKEN, **FAST)
    with caplog.at_level(logging.DEBUG, "gpufleet"):
        p.start()
        p.enqueue(snap(0.0))
        eventually(lambda: p.stats()["failed"] >= 2)
        p.stop()
    assert caplog.records and all("pw123" not in r.getMessage() for r in caplog.records)


def test_agent_url_for() -> None:
    assert agent_url_for(("127.0.0.1", 9401)) == "http://127.0.0.1:9401"
    assert agent_url_for(("::1", 9401)) == "http://[::1]:9401"
    assert agent_url_for(("127.0.0.1", 0)) is None
    assert not agent_url_for(("0.0.0.0", 9401)).startswith("http://0.0.0.0")  # type: ignore[union-attr]
