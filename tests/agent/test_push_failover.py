"""An agent pushing to any of several hubs: a spread start, failover on outage, nothing lost or doubled."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpufleet.agent.credentials import CredentialStore
from gpufleet.agent.hubs import HubChoice, parse_hubs, preferred_index
from gpufleet.agent.push import Pusher, attach_pusher, default_spool_dir
from gpufleet.agent.spool import Spool
from gpufleet.config import AgentConfig, load_agent_config
from gpufleet.errors import UserError
from conftest import eventually
from test_push import FAST, TOKEN, FakeHub, snap


@pytest.fixture
def hubs() -> Iterator[list[FakeHub]]:
    made = [FakeHub().start(), FakeHub().start()]
    yield made
    for h in made:
        h.stop()


def node_preferring(index: int, count: int = 2) -> str:
    return next(n for n in (f"node-{i}" for i in range(100)) if preferred_index(n, count) == index)


def make(hubs: list[FakeHub], spool_dir: Path, node: str) -> Pusher:
    return Pusher([h.url for h in hubs], node, Spool(spool_dir), CredentialStore(spool_dir / "credential.json"),
                  token=TOKEN, **FAST)  # type: ignore[arg-type]


def test_parse_hubs_keeps_order_drops_repeats_and_refuses_junk() -> None:
    assert parse_hubs("http://A:8080/, http://b:8080,,http://a:8080") == ["http://a:8080", "http://b:8080"]
    for bad in (" , ", "http://a:8080,hub:9400"):
        with pytest.raises(UserError):
            parse_hubs(bad)


def test_nodes_spread_over_hubs_by_name() -> None:
    picks = [preferred_index(f"gpu-{i:04d}", 3) for i in range(3000)]
    assert all(900 < picks.count(k) < 1100 for k in range(3))
    assert preferred_index("gpu-0001", 3) == preferred_index("gpu-0001", 3)  # stable across restarts
    assert preferred_index("anything", 1) == 0


def test_choice_backs_off_only_after_every_hub_failed() -> None:
    c = HubChoice(["http://a", "http://b", "http://c"], node_preferring(0, 3))
    assert c.current == "http://a"
    assert c.fail_over() and c.current == "http://b"
    assert c.fail_over() and c.current == "http://c"
    assert not c.fail_over() and c.current == "http://a"  # a whole round failed: back off, then go on
    c.succeeded()
    assert c.fail_over() and c.current == "http://b"


def test_failover_and_back_loses_and_doubles_nothing(hubs: list[FakeHub], tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    a, b = hubs
    node = node_preferring(0)
    p = make(hubs, tmp_path / "sp", node)
    p.start()
    try:
        for i in range(5):
            p.enqueue(snap(float(i), node))
        eventually(lambda: len(a.timestamps(node)) == 5)
        assert b.timestamps(node) == [] and p.hub == a.url
        a.stop()  # connection refused: move to b at once, register there with the same join token
        with caplog.at_level(logging.INFO, "gpufleet.agent.push"):
            for i in range(5, 40):
                p.enqueue(snap(float(i), node))
            eventually(lambda: len(b.timestamps(node)) == 35)
        assert p.hub == b.url and p.failovers == 1 and p.stats()["registrations"] == 2
        b.status = 503  # b overloaded; a is back (same port): the agent goes to a again
        a.start()
        for i in range(40, 60):
            p.enqueue(snap(float(i), node))
        eventually(lambda: len(a.timestamps(node)) == 25)
        assert p.stats()["registrations"] == 2  # a still knows this node's credential
    finally:
        p.stop(timeout=0.2)
    got = sorted(a.timestamps(node) + b.timestamps(node))
    assert got == [float(i) for i in range(60)]  # every snapshot once, on one hub or the other
    assert p.stats()["backlog"] == 0
    # each hub issued its own credential; both are kept, keyed by hub
    store = CredentialStore(tmp_path / "sp" / "credential.json")
    assert store.load(a.url, node) in a.credentials and store.load(b.url, node) in b.credentials
    msgs = [r.getMessage() for r in caplog.records]
    assert any(f"pushing to hub {b.url}" in m for m in msgs)
    assert all(TOKEN not in m for m in msgs)


def test_all_hubs_down_spools_then_drains_in_order(hubs: list[FakeHub], tmp_path: Path) -> None:
    a, b = hubs
    node = node_preferring(1)
    p = make(hubs, tmp_path / "sp", node)
    p.start()
    try:
        p.enqueue(snap(0.0, node))
        eventually(lambda: b.timestamps(node) == [0.0])
        a.status = b.status = 503
        for i in range(1, 80):
            p.enqueue(snap(float(i), node))
        eventually(lambda: p.stats()["failed"] >= 6)
        assert p.stats()["backlog"] == 79 and p.stats()["hub_up"] == 0.0
        a.status = None
        eventually(lambda: p.stats()["backlog"] == 0)
    finally:
        p.stop(timeout=0.2)
    assert sorted(a.timestamps(node) + b.timestamps(node)) == [float(i) for i in range(80)]
    assert a.timestamps(node) == [float(i) for i in range(1, 80)]  # oldest first, no reordering


def test_attach_pusher_several_hubs_one_spool(hubs: list[FakeHub], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    a, b = hubs
    service = SimpleNamespace(listeners=[])
    cfg = AgentConfig(node="n1", hub=f"{a.url},{b.url}", token=TOKEN, listen=("127.0.0.1", 0))
    p = attach_pusher(service, cfg, **FAST)  # type: ignore[arg-type]
    assert p is not None
    try:
        assert p.spool.path == default_spool_dir(a.url, "n1")  # the first hub's, as with --hub a alone
    finally:
        p.stop()


def test_config_accepts_repeated_and_listed_hubs(tmp_path: Path) -> None:
    cfg = load_agent_config({"hub": "http://a:1,http://b:2"}, {})
    assert cfg.hub == "http://a:1,http://b:2"
    f = tmp_path / "agent.yaml"
    f.write_text("hub: [http://a:1, http://b:2]\n")
    assert load_agent_config({}, {}, f).hub == "http://a:1,http://b:2"
    assert load_agent_config({}, {"GPUFLEET_HUB": "http://a:1"}).hub == "http://a:1"
    with pytest.raises(UserError, match="one --hub only"):
        load_agent_config({"hub": "http://a:1,http://b:2", "allow_commands": ["nvidia-smi *"]}, {})
