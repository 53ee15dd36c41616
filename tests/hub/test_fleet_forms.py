"""The fleet keeps one full copy of each node's latest snapshot (its JSON) and a lean decoded one:
every form the hub serves must read as it did when it kept three (decoded, JSON, summary JSON)."""

from __future__ import annotations

import gzip
import sqlite3
import time
import zlib
from pathlib import Path

import msgspec
import pytest
from fastapi.testclient import TestClient

from access import authed_client
from gpufleet.hub.alerts.engine import Engine, NodeInput
from gpufleet.hub.alerts.rules import load_rules_text
from gpufleet.hub.cmdlines import without_commands
from gpufleet.hub.fleet import Fleet
from gpufleet.hub.service import LATEST_SAVE_S, Hub, HubOptions
from gpufleet.snapshot import CpuCore, GpuLink, NodeSnapshot, Process, from_json, to_json
from sample_snapshot import sample_snapshot

replace = msgspec.structs.replace


def big(node: str = "n1", ts: float = 1000.0) -> NodeSnapshot:
    """A snapshot with every part the lean form leaves out: CPU cores, host processes, links."""
    s = sample_snapshot(node)
    s.timestamp = ts
    s.cpus = [CpuCore(cpu=i, values={"utilization_ratio": i / 100}) for i in range(64)]
    s.processes = [Process(pid=7, user="bob", name="python", command="python secret-args.py")]
    s.gpus[0].links = [GpuLink(link=i, values={"crc_flit_errors_total": float(i)}) for i in range(4)]
    s.gpus[0].values["processes"] = 1.0  # a GPU's "processes" value: not the host's process table
    return from_json(to_json(s))  # as it arrives: sample_snapshot writes a few floats as ints


@pytest.fixture
def hub(tmp_path: Path):
    h = Hub(HubOptions(data=tmp_path / "data", max_sample_age=1e10))
    yield h
    h.close()


def _client(hub: Hub, role: str) -> TestClient:
    return authed_client(hub, role=role, background=False)  # type: ignore[no-any-return]


def test_fleet_keeps_lean_snapshot_and_one_json() -> None:
    f = Fleet()
    s = big()
    raw = to_json(s)
    f.update(s, 1000.0, raw)
    v = f.nodes["n1"]
    assert v.json is raw
    lean = v.snapshot
    assert lean is not None and lean is not s
    assert lean.cpus == [] and lean.processes == [] and all(g.links == [] for g in lean.gpus)
    # What overview readers use is all there.
    assert lean.gpus[0].processes[0].user == "alice" and lean.values == s.values and lean.usage == s.usage
    whole = f.snapshot(v)
    assert whole == from_json(raw) and len(whole.cpus) == 64 and len(whole.gpus[0].links) == 4
    assert f.snapshot(v) is whole, "decoded once per snapshot"
    f.update(big(ts=1005.0), 1005.0)  # no JSON given (a compact push): encoded once here
    assert v.seq == 2 and v.json is not None and from_json(v.json).timestamp == 1005.0
    assert f.snapshot(v) is not whole


def test_snapshots_api_reads_as_before(hub: Hub) -> None:
    """Default: each snapshot without its host process table, byte for byte what the old
    summary JSON was; ?processes=true the pushed JSON; a viewer's copy has no command lines."""
    older = big("n1", 1000.0)
    hub.ingest([older], None, [to_json(older)])
    plain = from_json(to_json(sample_snapshot("n2")))  # no host process table: served as pushed
    hub.ingest([plain], None, [to_json(plain)])
    with _client(hub, "admin") as admin:
        got = admin.get("/api/v1/snapshots").content
        want = b'{"snapshots":[' + to_json(replace(older, processes=[])) + b"," + to_json(plain) + b"]}"
        assert got == want
        full = admin.get("/api/v1/snapshots", params={"processes": "true"}).json()["snapshots"]
        assert full[0]["processes"][0]["command"] == "python secret-args.py"
        assert full[0] == msgspec.json.decode(to_json(older))
    with _client(hub, "viewer") as viewer:
        got = viewer.get("/api/v1/snapshots").content
        bare = without_commands(older)
        assert got == b'{"snapshots":[' + to_json(replace(bare, processes=[])) + b"," + to_json(without_commands(plain)) + b"]}"
        one = viewer.get("/api/v1/nodes/n1/snapshot").json()
        assert one == msgspec.json.decode(to_json(bare)) and "command" not in one["processes"][0]


def test_snapshots_lean_form_and_gzip(hub: Hub) -> None:
    for i in range(40):  # enough for the answer to pass the gzip threshold
        s = big(f"n{i:02d}", 1000.0 + i)
        hub.ingest([s], None, [to_json(s)])
    with _client(hub, "admin") as c:
        whole = c.get("/api/v1/snapshots", headers={"Accept-Encoding": "identity"})
        lean = c.get("/api/v1/snapshots", params={"lean": "true"}, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in lean.headers
        snaps = lean.json()["snapshots"]
        assert [s["node"] for s in snaps] == [f"n{i:02d}" for i in range(40)]
        first = snaps[0]
        assert "cpus" not in first and "processes" not in first and all("links" not in g for g in first["gpus"])
        assert first["gpus"][0]["processes"][0]["command"] == "python train.py"  # who is on a GPU stays
        assert first["values"] == big().values and first["timestamp"] == 1000.0
        assert len(lean.content) < len(whole.content) / 2
        # Asked for gzip, it comes gzip-encoded (httpx would undo it: read the raw bytes).
        with c.stream("GET", "/api/v1/snapshots", headers={"Accept-Encoding": "gzip"}) as r:
            body = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
        assert gzip.decompress(body) == whole.content and len(body) < len(whole.content) / 5


def test_restart_restores_latest_saved_compact_and_plain(tmp_path: Path) -> None:
    h = Hub(HubOptions(data=tmp_path / "d", max_sample_age=1e10))
    for n in ("n1", "n2"):
        h.register(h.state.create_token(), n, {}, None)
    s1 = big("n1")
    h.ingest([s1], None, [to_json(s1)])
    h.ingest([big("n2")])
    h.close()
    db = sqlite3.connect(tmp_path / "d" / "hub.db")
    blob = db.execute("SELECT snapshot FROM latest WHERE node='n1'").fetchone()[0]
    assert zlib.decompress(blob) == to_json(s1) and len(blob) < len(to_json(s1)) / 2
    # A hub.db from before kept it plain: still restored.
    db.execute("UPDATE latest SET snapshot=? WHERE node='n2'", (to_json(big("n2", 1001.0)),))
    db.commit()
    db.close()
    h2 = Hub(HubOptions(data=tmp_path / "d", max_sample_age=1e10))
    try:
        v1, v2 = h2.fleet.nodes["n1"], h2.fleet.nodes["n2"]
        assert v1.json == to_json(s1) and h2.fleet.snapshot(v1) == s1
        assert v1.snapshot is not None and v1.snapshot.cpus == [] and v1.snapshot.gpus[0].values == s1.gpus[0].values
        assert v2.snapshot is not None and v2.snapshot.timestamp == 1001.0
    finally:
        h2.close()


def test_latest_snapshots_saved_once_a_minute_statuses_at_once(hub: Hub) -> None:
    writes: list[tuple[int, int]] = []
    real = hub.state.save_nodes

    def counting(statuses: list[tuple[str, str, float, float | None]], latest: list[tuple[str, float, bytes]]) -> None:
        writes.append((len(statuses), len(latest)))
        real(statuses, latest)

    hub.state.save_nodes = counting  # type: ignore[method-assign]
    hub.register(hub.state.create_token(), "n1", {}, None)
    hub.ingest([big("n1", 1000.0)])
    hub.save_latest()
    assert writes[-1] == (1, 1), "the first round saves at once"
    hub.ingest([big("n1", 1005.0)])
    hub.save_latest()
    assert writes[-1] == (0, 0), "a new snapshot within LATEST_SAVE_S waits"
    hub.fleet.nodes["n1"].status = "down"
    hub._status_dirty.add("n1")
    hub.save_latest()
    assert writes[-1] == (1, 0), "a status change is saved at once, without the snapshot"
    hub._saved_at["n1"] -= LATEST_SAVE_S
    hub.save_latest()
    assert writes[-1] == (1, 1)
    assert hub.state.load_latest()[0][1] == 1005.0


def test_latest_snapshots_are_saved_a_share_of_the_fleet_a_round(hub: Hub) -> None:
    """1,000 compact-pushed nodes' JSON made in one round held the GIL ~1.5 s: spread over rounds,
    longest unsaved first, each node still every LATEST_SAVE_S; at exit every changed one."""
    saved: list[list[str]] = []
    real = hub.state.save_nodes

    def counting(statuses: list[tuple[str, str, float, float | None]], latest: list[tuple[str, float, bytes]]) -> None:
        saved.append([n for n, _, _ in latest])
        real(statuses, latest)

    hub.state.save_nodes = counting  # type: ignore[method-assign]
    names = [f"n{i:03d}" for i in range(120)]  # a round saves at most max(50, 120 / 6) nodes
    def snap(name: str, ts: float) -> NodeSnapshot:
        s = sample_snapshot(name)
        s.timestamp = ts
        return s

    for name in names:
        hub.ingest([snap(name, 1000.0)])
    for _ in range(4):
        hub.save_latest()
    assert [len(x) for x in saved] == [50, 50, 20, 0]
    assert sorted(sum(saved, [])) == names, "each node once"
    for name in names:
        hub.ingest([snap(name, 1005.0)])
    hub.save_latest()
    assert saved[-1] == [], "none saved within LATEST_SAVE_S"
    first = set(saved[0])
    for name in saved[0] + saved[1]:
        hub._saved_at[name] -= LATEST_SAVE_S + (10 if name in first else 0)
    hub.save_latest()
    assert set(saved[-1]) == first, "the longest unsaved first"
    hub.save_latest(force=True)  # at exit: every changed node, whatever the share
    assert sorted(saved[-1]) == sorted(set(names) - first)
    assert {n: t for n, t, _ in hub.state.load_latest()} == dict.fromkeys(names, 1005.0)


def test_alert_rule_on_cpu_cores_reads_the_whole_snapshot() -> None:
    """Lean snapshots have no CPU cores or links: a rule on them decodes the whole one."""
    rs = load_rules_text("rules:\n  - alert: HotCore\n    expr: gpufleet_cpu_utilization_ratio > 0.6\n"
                         "    for: 0s\n    severity: warning\n")
    assert not rs.errors, rs.errors
    f = Fleet()
    f.update(big("n1", 1000.0), 1000.0)
    v = f.nodes["n1"]
    engine = Engine(rs.rules, grace=0)
    node = NodeInput(v.name, {}, v.snapshot, v.status, v.since, lambda: f.snapshot(v))
    engine.evaluate([node], {}, 1001.0)
    firing = sorted(a.labels["cpu"] for a in engine.alerts.values() if a.rule_id.startswith("HotCore"))
    assert firing == [str(i) for i in range(61, 64)]


def test_rules_on_cpu_cores_make_the_fleet_keep_them(hub: Hub, tmp_path: Path) -> None:
    """With such a rule the lean snapshots keep CPU cores (no whole decode per evaluation); a
    snapshot made before the rule is read whole once."""
    from gpufleet.hub.alerts.service import AlertsExtension

    hub.ingest([big("n1", time.time() - 10)])
    before = hub.fleet.nodes["n1"]
    assert before.snapshot is not None and before.snapshot.cpus == [] and hub.fleet.keep == frozenset()
    rules = tmp_path / "alerts.yaml"
    rules.write_text("rules:\n  - alert: HotCore\n    expr: gpufleet_cpu_utilization_ratio > 0.6\n"
                     "    for: 0s\n    severity: warning\n")
    ext = AlertsExtension(hub, rules, interval=60)
    try:
        assert hub.fleet.keep == frozenset({"cpu"})
        (node,) = ext.nodes()
        assert node.whole is not None, "made before the rule: read whole"
        fired = {a.labels["cpu"] for a in ext.evaluate() if a.labels.get("alertname") == "HotCore"}
        assert fired == {str(i) for i in range(61, 64)}
        hub.ingest([big("n1", time.time() - 5)])
        v = hub.fleet.nodes["n1"]
        assert v.snapshot is not None and len(v.snapshot.cpus) == 64 and v.snapshot.gpus[0].links == []
        assert v.snapshot.processes == []
        (node,) = ext.nodes()
        assert node.whole is None, "the lean snapshot has what the rule reads"
    finally:
        ext.close()


def test_summary_of_a_snapshot_without_a_host_process_table_is_its_json_as_is() -> None:
    # GPUs' own process lists are not the host table: the summary must not scan every node's
    # text to find that out (it made /api/v1/snapshots 0.6 s at 1,000 nodes).
    fleet = Fleet()
    snap = msgspec.structs.replace(big("g"), processes=[])
    assert any(g.processes for g in snap.gpus)
    raw = to_json(snap)
    fleet.update(snap, time.time(), raw)
    assert fleet.summary_json(fleet.nodes["g"]) is raw
    fleet.update(big("h", ts=2000.0), time.time())
    whole = fleet.nodes["h"].json
    assert whole is not None and from_json(whole).processes
    summary = fleet.summary_json(fleet.nodes["h"])
    assert summary is not None and from_json(summary) == msgspec.structs.replace(from_json(whole), processes=[])
