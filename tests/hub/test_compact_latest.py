"""A compact-pushed node's latest snapshot is kept as it arrived (frame JSON + values) and made whole
only when asked for: every form of it must read as a JSON push of the same snapshot gives, with or
without alert rules on the records the hot path leaves without values (CPU cores, GPU links)."""

from __future__ import annotations

import json
import re
import sqlite3
import struct
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from access import authed_client
from gpufleet import compact
from gpufleet.hub.compact_push import Packed, Shapes, decode
from gpufleet.hub.fleet import LEAN_LACKS
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.hub.ui import UiExtension
from gpufleet.snapshot import NodeSnapshot, Process, from_json, to_json
from test_compact_push import frame, sim_snapshots

replace = msgspec.structs.replace


def _snaps(n: int) -> list[NodeSnapshot]:
    """8 GPUs with NVLink links, a host with CPU cores, and a host process table with a secret."""
    out = []
    for s in sim_snapshots(n, profile="8xH100"):
        s.processes = [Process(pid=7, user="bob", name="python", command="python train.py --key hunter2"),
                       *s.processes]
        out.append(s)
    assert out[0].cpus and out[0].gpus[0].links
    return out


def _pair(tmp_path: Path, keep: frozenset[str] = frozenset()) -> tuple[Hub, Hub]:
    hubs = []
    for name in ("json", "compact"):
        h = Hub(HubOptions(data=tmp_path / name))
        h.register(h.state.create_token(), "n1", {"rack": "r1"}, None)
        h.fleet.keep = keep  # as alert rules on those scopes set it (alerts/service.py)
        hubs.append(h)
    return hubs[0], hubs[1]


def _push_both(by_json: Hub, by_compact: Hub, snaps: list[NodeSnapshot]) -> None:
    sent: set[str] = set()
    for s in snaps:
        by_json.ingest_push(b'{"snapshots":[' + to_json(s) + b"]}", "n1")
        sid = frame(s)[1]
        body = frame(s, with_shape=sid not in sent)[0]  # a known shape travels without its description
        sent.add(sid)
        assert by_compact.ingest_compact(compact.MAGIC + body, "n1") == (1, 0)


def plain(data: bytes | None) -> Any:
    """JSON as plain values: the same snapshot whatever order its keys were written in."""
    assert data is not None
    return msgspec.json.decode(data)


def _page_snapshot(html: str) -> Any:
    m = re.search(r'<script[^>]*id="initial"[^>]*>(.*?)</script>', html, re.S)
    assert m is not None
    return json.loads(m.group(1))["snapshotJson"]


@pytest.mark.parametrize("keep", [frozenset(), frozenset({"cpu"}), frozenset({"gpu_link"}), LEAN_LACKS],
                         ids=["no-rules", "rule-on-cpu", "rule-on-gpu_link", "rules-on-both"])
def test_every_form_of_a_compact_pushed_node_reads_as_the_json_push(tmp_path: Path, keep: frozenset[str]) -> None:
    by_json, by_compact = _pair(tmp_path, keep)
    try:
        _push_both(by_json, by_compact, _snaps(2))
        a, b = by_json.fleet.nodes["n1"], by_compact.fleet.nodes["n1"]
        assert isinstance(b.latest, Packed) and b.json is None, "kept as it arrived"
        # the lean snapshot the fleet's readers use (overview, users, capacity, alerts)
        assert a.snapshot == b.snapshot and a.kept == b.kept == keep
        assert b.snapshot is not None and b.snapshot.gpus[0].values and b.snapshot.host.hostname
        if "cpu" in keep:
            assert b.snapshot.cpus and all(c.values for c in b.snapshot.cpus)
        if "gpu_link" in keep:
            assert all(x.values for g in b.snapshot.gpus for x in g.links)
        # the whole snapshot, made on demand, and each JSON form served
        whole = by_compact.fleet.snapshot(b)
        assert whole == by_json.fleet.snapshot(a) and whole is not None
        assert all(c.values for c in whole.cpus) and all(x.values for g in whole.gpus for x in g.links)
        for commands in (True, False):
            assert plain(by_compact.fleet.full_json(b, commands)) == plain(by_json.fleet.full_json(a, commands))
            assert plain(by_compact.fleet.summary_json(b, commands)) == plain(by_json.fleet.summary_json(a, commands))
            assert plain(by_compact.fleet.lean_json(b, commands)) == plain(by_json.fleet.lean_json(a, commands))
        # over HTTP: the API and the node pages, for an admin and for a viewer (no command lines)
        got: list[dict[str, Any]] = []
        for h in (by_json, by_compact):
            answers: dict[str, Any] = {}
            for role in ("admin", "viewer"):
                with authed_client(h, [UiExtension(h)], role=role, background=False) as c:
                    answers[f"{role} one"] = c.get("/api/v1/nodes/n1/snapshot").json()
                    for q in ("", "?processes=true", "?lean=true"):
                        answers[f"{role} all{q}"] = c.get(f"/api/v1/snapshots{q}").json()
                    for page in ("/nodes/n1", "/nodes/n1/gpus/0"):
                        r = c.get(page)
                        assert r.status_code == 200, r.text[:200]
                        answers[f"{role} {page}"] = _page_snapshot(r.text)
            got.append(answers)
        assert got[0] == got[1]
        assert "hunter2" in json.dumps(got[1]["admin one"]) and "hunter2" not in json.dumps(got[1]["viewer one"])
        # the latest saved for a restart
        saved = []
        for h in (by_json, by_compact):
            h.save_latest(force=True)
            db = sqlite3.connect(h.opts.data / "hub.db")
            (blob,) = db.execute("SELECT snapshot FROM latest WHERE node='n1'").fetchone()
            db.close()
            saved.append(plain(zlib.decompress(blob)))
        assert saved[0] == saved[1] and saved[1]["cpus"][0]["values"]
    finally:
        by_json.close()
        by_compact.close()


def test_the_whole_snapshot_is_the_one_the_hub_used_to_keep(tmp_path: Path) -> None:
    """Byte for byte what the hub encoded at each compact push before it kept the push as it came
    (values put back into every record, its clock skew measure in `agent`)."""
    h = Hub(HubOptions(data=tmp_path / "d"))
    h.register(h.state.create_token(), "n1", {}, None)
    try:
        s1, s2 = _snaps(2)
        h.ingest_compact(compact.MAGIC + frame(s1)[0], "n1", f"{s1.timestamp + 3:.3f}")
        body = compact.MAGIC + frame(s2, with_shape=False)[0]
        h.ingest_compact(body, "n1", f"{s2.timestamp + 3:.3f}")
        v = h.fleet.nodes["n1"]
        skew = v.clock_skew
        assert skew is not None
        shapes = Shapes()
        decode(compact.MAGIC + frame(s1)[0], shapes, lambda i, s: None)
        (old,) = decode(body, shapes, lambda i, s: None)  # nothing deferred: everything put back
        old.snapshot.agent["clock_skew_seconds"] = skew
        assert h.fleet.full_json(v) == to_json(old.snapshot)
        assert h.fleet.full_json(v) is h.fleet.full_json(v), "made once per snapshot"
        assert h.fleet.snapshot(v) == old.snapshot
        packed = v.latest
        assert isinstance(packed, Packed)
        # what it holds: its own copy of the values (not the push's body), ~1/3 of the JSON
        assert packed.values.flags.owndata
        assert len(packed.head) + packed.values.nbytes < len(to_json(old.snapshot)) / 2
        # the next push drops the JSON made (memory only while read); the periodic save makes
        # every node's without keeping them
        s3 = replace(s2, timestamp=s2.timestamp + 1)
        h.ingest_compact(compact.MAGIC + frame(s3, with_shape=False)[0], "n1")
        assert v.made is None
        h.save_latest(force=True)
        assert v.made is None and h.state.load_latest()[0][1] == s3.timestamp
        assert plain(h.fleet.full_json(v))["timestamp"] == s3.timestamp
    finally:
        h.close()


def test_observers_see_a_compact_push_as_a_json_push_but_cpu_cores_and_links(tmp_path: Path) -> None:
    by_json, by_compact = _pair(tmp_path)
    seen: dict[str, list[NodeSnapshot]] = {"json": [], "compact": []}
    by_json.observers.append(seen["json"].append)
    by_compact.observers.append(seen["compact"].append)
    try:
        _push_both(by_json, by_compact, _snaps(2))
        for a, b in zip(seen["json"], seen["compact"]):
            assert replace(a, cpus=[], gpus=[replace(g, links=[]) for g in a.gpus]) == \
                replace(b, cpus=[], gpus=[replace(g, links=[]) for g in b.gpus])
            assert a.cpus and b.cpus == []  # the cores are checked against the shape, not decoded
            assert [[x.link for x in g.links] for g in a.gpus] == [[x.link for x in g.links] for g in b.gpus]
    finally:
        by_json.close()
        by_compact.close()


def test_a_rule_added_after_the_push_reads_the_whole_snapshot(tmp_path: Path) -> None:
    """The lean snapshot of a push decoded before a rule on CPU cores came has no values in its
    cores: the fleet must not claim to keep them (the alerts read the whole snapshot then)."""
    h = Hub(HubOptions(data=tmp_path / "d"))
    h.register(h.state.create_token(), "n1", {}, None)
    try:
        (s,) = _snaps(1)
        frames = decode(compact.MAGIC + frame(s)[0], h.shapes.setdefault("n1", Shapes()),
                        lambda i, x: None, LEAN_LACKS)
        h.fleet.keep = frozenset({"cpu"})  # the rule arrives meanwhile
        h.ingest([f.snapshot for f in frames], None, [f.packed(None) for f in frames],
                 [f.series({"node": "n1"}, None) for f in frames], LEAN_LACKS)
        v = h.fleet.nodes["n1"]
        assert v.kept == frozenset() and v.snapshot is not None and v.snapshot.cpus == []
        whole = h.fleet.snapshot(v)
        assert whole is not None and all(c.values for c in whole.cpus)
    finally:
        h.close()


def test_cpu_and_link_records_unlike_the_shape_are_refused_when_deferred(tmp_path: Path) -> None:
    """Deferred records are compared by number: a push whose cores or links differ from its
    shape is still refused, with the same message."""
    from gpufleet.hub.compact_push import CompactError

    (s,) = _snaps(1)
    body, sid = frame(s)
    shapes = Shapes()
    decode(compact.MAGIC + body, shapes, lambda i, x: None, LEAN_LACKS)
    for change, scope in ((lambda r: setattr(r, "cpus", r.cpus[1:] + r.cpus[:1]), "cpu"),
                          (lambda r: setattr(r.gpus[1], "links", r.gpus[1].links[:-1]), "gpu_link")):
        rest = msgspec.json.decode(to_json(s), type=NodeSnapshot)
        shape, values = compact.split(rest)
        change(rest)
        bad = compact.MAGIC + compact.encode_frame(sid, rest, values, None)
        for defer in (frozenset(), LEAN_LACKS):
            with pytest.raises(CompactError) as e:
                decode(bad, shapes, lambda i, x: None, defer)
            assert f"the snapshot's {scope} records do not match its shape" in str(e.value), (defer, str(e.value))
    # Cores that do not decode as cores: the path to the bad field, in the frame
    rest = msgspec.json.decode(to_json(s), type=NodeSnapshot)
    shape, values = compact.split(rest)
    good = compact.encode_frame(sid, rest, values, None)
    head_len = struct.unpack_from("<I", good)[0]
    head = good[4:4 + head_len].replace(b'{"cpu":3}', b'{"cpu":"3"}', 1)
    bad = struct.pack("<I", len(head)) + head + good[4 + head_len:]
    assert len(head) == head_len + 2
    for defer in (frozenset(), LEAN_LACKS):
        with pytest.raises(CompactError) as e:
            decode(compact.MAGIC + bad, shapes, lambda i, x: None, defer)
        assert e.value.status == 400 and "`$.frames[0].snapshot.cpus[3].cpu`" in str(e.value), str(e.value)
    # and the same cores as before, known by their bytes, are not in the snapshot (deferred)
    # or are there with their values (an alert rule reads them)
    (lean,) = decode(compact.MAGIC + good, shapes, lambda i, x: None, LEAN_LACKS)
    (full,) = decode(compact.MAGIC + good, shapes, lambda i, x: None, frozenset())
    assert lean.snapshot.cpus == [] and full.snapshot.cpus == s.cpus


def test_a_frame_with_its_shape_is_kept_without_the_shape(tmp_path: Path) -> None:
    """A node's first push describes its shape (~70 KB more for a big node): the fleet keeps
    the frame without it until the next push (a join of 1,000 nodes held ~70 MB more)."""
    h = Hub(HubOptions(data=tmp_path / "d"))
    h.register(h.state.create_token(), "n1", {}, None)
    try:
        (s,) = _snaps(1)
        described, _ = frame(s)
        bare, _ = frame(s, with_shape=False)
        h.ingest_compact(compact.MAGIC + described, "n1")
        v = h.fleet.nodes["n1"]
        assert isinstance(v.latest, Packed)
        assert len(v.latest.head) < len(described) / 4 and b'"series"' not in v.latest.head
        # the same as the frame that came without it
        (alone,) = decode(compact.MAGIC + bare, h.shapes["n1"], lambda i, x: None)
        assert plain(v.latest.head) == plain(alone.head)
        assert h.fleet.snapshot(v) == from_json(to_json(s))
    finally:
        h.close()


@pytest.mark.parametrize("scope, label", [("cpu", "03"), ("cpu", " 3"), ("cpu", "+3"), ("gpu_link", "03"),
                                          ("gpu_link", "\u0663")])  # ARABIC-INDIC DIGIT THREE
def test_a_shape_whose_numbers_are_written_otherwise_is_refused(scope: str, label: str) -> None:
    """Records are compared by number only where the shape's labels are those numbers written
    out: a shape saying CPU "03" for the snapshot's core 3 is refused as before."""
    from gpufleet.hub.compact_push import CompactError

    assert int(label) == 3
    (s,) = _snaps(1)
    rest = msgspec.json.decode(to_json(s), type=NodeSnapshot)
    shape, values = compact.split(rest)
    j = next(k for k, (sc, ids, _) in enumerate(shape) if sc == scope and ids[-1] == "3")
    sc, ids, names = shape[j]
    shape[j] = (sc, ids[:-1] + (label,), names)
    bad = compact.MAGIC + compact.encode_frame(compact.shape_id(shape), rest, values, shape)
    for defer in (frozenset(), LEAN_LACKS):
        with pytest.raises(CompactError) as e:
            decode(bad, Shapes(), lambda i, x: None, defer)
        assert f"the snapshot's {scope} records do not match its shape" in str(e.value), (defer, str(e.value))


def test_a_shape_naming_a_value_key_twice_is_refused_even_after_good_shapes() -> None:
    """Shapes share their records' key tuples once checked: a tuple with a key twice is never
    taken for one of them."""
    from gpufleet.hub.compact_push import CompactError

    (s,) = _snaps(1)
    good, _ = frame(s)
    decode(compact.MAGIC + good, Shapes(), lambda i, x: None)  # its key tuples now known
    rest = msgspec.json.decode(to_json(s), type=NodeSnapshot)
    shape, values = compact.split(rest)
    j = next(k for k, (sc, _, names) in enumerate(shape) if sc == "cpu" and len(names) >= 2)
    sc, ids, names = shape[j]
    shape[j] = (sc, ids, names[:-1] + names[:1])  # as many keys, the first one twice
    bad = compact.MAGIC + compact.encode_frame(compact.shape_id(shape), rest, values, shape)
    with pytest.raises(CompactError) as e:
        decode(bad, Shapes(), lambda i, x: None, LEAN_LACKS)
    assert e.value.status == 400 and f"frames[0].series[{j}]: a value key appears twice" in str(e.value)
