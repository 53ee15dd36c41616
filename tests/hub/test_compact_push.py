"""The compact push (gpufleet/compact.py): the same data as a JSON push, clear refusals, and a real
agent pusher against a real hub process (spool replay, shape change, hub restart)."""

from __future__ import annotations

import logging
import struct
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from access import bearer, make_api_key
from conftest import eventually
from gpufleet import compact
from gpufleet.agent.collect import Collection
from gpufleet.agent.credentials import CredentialStore
from gpufleet.agent.push import Pusher
from gpufleet.agent.spool import Spool
from gpufleet.backends.sim import SimBackend
from gpufleet.collectors import SIMULATED_NODE, build
from gpufleet.collectors.base import CollectContext
from gpufleet.hub.service import Hub, HubOptions, IngestError
from gpufleet.snapshot import NodeSnapshot, from_json, to_json
from realparts import free_port, hub_proc, join_token

FAST = dict(backoff_base=0.02, backoff_cap=0.1, idle_wait=0.05, timeout=5.0)


def sim_snapshots(n: int, node: str = "n1", profile: str = "2xRTX4090") -> list[NodeSnapshot]:
    """Whole simulated snapshots (CPUs, disks, GPUs, processes, users), one a minute, ending now."""
    clock = [time.time() - 60.0 * (n + 1)]
    backend = SimBackend(profile, seed=1, node=node, clock=lambda: clock[0])
    c = Collection(node, build(CollectContext(backend=backend, options={"node": node}), SIMULATED_NODE),
                   labels={"rack": "r1"}, backend="sim")
    c.run(clock[0])
    out = []
    for _ in range(n):
        clock[0] += 60.0
        out.append(from_json(to_json(c.run(clock[0]))))
    return out


def frame(snap: NodeSnapshot, with_shape: bool = True) -> tuple[bytes, str]:
    rest = from_json(to_json(snap))
    shape, values = compact.split(rest)
    sid = compact.shape_id(shape)
    return compact.encode_frame(sid, rest, values, shape if with_shape else None), sid


def reshaped(snap: NodeSnapshot) -> NodeSnapshot:
    """The same node with one disk fewer: another series shape."""
    return msgspec.structs.replace(snap, disks=snap.disks[1:])


def stored(hub: Hub, node: str, metric: str, now: float) -> list[tuple[float, float]]:
    from gpufleet.syntax import parse_matcher

    res = hub.query_range(metric, [parse_matcher(f'node="{node}"')], now - 3600, now + 60, 1, "last")
    return [(t, v) for r in res for t, v in zip(r.timestamps, r.values)]


# ---- in-process: the same result as JSON, and the refusals ------------------------------------


def test_compact_push_stores_what_the_json_push_stores(tmp_path: Path) -> None:
    snaps = sim_snapshots(4, profile="8xH100")  # with NVLink links: live-only values travel packed too
    snaps[2] = reshaped(snaps[2])  # a shape change in the middle, then back
    by_json = Hub(HubOptions(data=tmp_path / "json"))
    by_compact = Hub(HubOptions(data=tmp_path / "compact"))
    try:
        sent: set[str] = set()
        for s in snaps:
            by_json.ingest_push(b'{"snapshots":[' + to_json(s) + b"]}", "n1", f"{s.timestamp + 2:.3f}")
            body, sid = frame(s, with_shape=True)
            if sid in sent:  # known shapes travel without their description, as the agent sends them
                body, _ = frame(s, with_shape=False)
            sent.add(sid)
            assert by_compact.ingest_compact(compact.MAGIC + body, "n1", f"{s.timestamp + 2:.3f}") == (1, 0)
        assert len(sent) == 2
        a = by_json.fleet.snapshot(by_json.fleet.nodes["n1"])  # the whole latest snapshot
        b = by_compact.fleet.snapshot(by_compact.fleet.nodes["n1"])
        assert a is not None and b is not None
        # the clock skew is the hub's measure at each push (stored below; the JSON push serves the
        # snapshot as pushed, the compact one as the hub put it together, the skew included)
        a.agent.pop("clock_skew_seconds", None)
        assert b.agent.pop("clock_skew_seconds") is not None
        assert a == b  # the live snapshot: values put back where they were
        assert a.gpus[0].values and a.cpus[0].values and a.gpus[0].links[0].values
        assert by_json.store is not None and by_compact.store is not None
        assert by_json.store.stats()["series"] == by_compact.store.stats()["series"]
        now = time.time()
        for metric in ("gpufleet_gpu_utilization_ratio", "gpufleet_cpu_utilization_ratio",
                       "gpufleet_disk_used_bytes"):
            got = stored(by_compact, "n1", metric, now)
            assert got and got == stored(by_json, "n1", metric, now), metric
        skews = stored(by_compact, "n1", "gpufleet_agent_clock_skew_seconds", now)
        json_skews = stored(by_json, "n1", "gpufleet_agent_clock_skew_seconds", now)
        assert len(skews) == len(json_skews) == len(snaps) - 1  # measured from the node's second push on
        assert all(abs(v - w) < 5 for (_, v), (_, w) in zip(skews, json_skews))
        assert by_compact.counters.samples == by_json.counters.samples
    finally:
        by_json.close()
        by_compact.close()


@pytest.fixture
def hub(tmp_path: Path):  # type: ignore[no-untyped-def]
    h = Hub(HubOptions(data=tmp_path / "data"))
    yield h
    h.close()


def refused(hub: Hub, body: bytes, node: str = "n1") -> tuple[int, str]:
    with pytest.raises(IngestError) as e:
        hub.ingest_compact(body, node)
    return e.value.status, str(e.value)


def test_bad_compact_bodies_get_a_clear_400_and_store_nothing(hub: Hub) -> None:
    s1, s2 = sim_snapshots(2)
    good, sid = frame(s1)
    n_values = struct.unpack_from("<I", good, 4 + struct.unpack_from("<I", good)[0])[0]
    cases = {
        b'{"snapshots": []}': "starts with GFC1",
        compact.MAGIC: "holds no frame",
        compact.MAGIC + good[:-12]: "cut short",
        compact.MAGIC + good[:3]: "cut short",
        compact.MAGIC + struct.pack("<I", 5) + b"{not}" + struct.pack("<I", 0): "frames[0] is not valid JSON",
        compact.MAGIC + good[:-8]
        + struct.pack("<d", float("nan")): "values must be finite",
        compact.MAGIC + frame(msgspec.structs.replace(s1, node="other"))[0]: "frames[0].node is 'other'",
        compact.MAGIC + frame(msgspec.structs.replace(s1, timestamp=time.time() + 3600))[0]: "--max-clock-ahead",
        compact.MAGIC + frame(msgspec.structs.replace(s1, labels={"bad label": "x"}))[0]: "frames[0].labels",
        # a good frame, then a bad one: the batch is refused whole
        compact.MAGIC + good + frame(msgspec.structs.replace(s2, node="other"))[0]: "frames[1].node",
    }
    for body, message in cases.items():
        status, text = refused(hub, body)
        assert status == 400 and message in text, (message, text)
    assert hub.counters.snapshots == 0 and hub.fleet.nodes.get("n1") is None or \
        hub.fleet.nodes["n1"].snapshot is None
    # values that do not fit the shape, and a snapshot whose records differ from its shape
    head_len = struct.unpack_from("<I", good)[0]
    short = good[:4 + head_len] + struct.pack("<I", n_values - 1) + good[8 + head_len:-8]
    status, text = refused(hub, compact.MAGIC + short)
    assert status == 400 and f"has {n_values - 1} values but its shape" in text
    rest = from_json(to_json(s2))
    shape, values = compact.split(rest)
    rest.cpus = rest.cpus[1:]
    status, text = refused(hub, compact.MAGIC + compact.encode_frame(sid, rest, values, shape))
    assert status == 400 and "cpu records do not match its shape" in text
    # a shape whose records are not listed scope by scope in the agent's order (the hub finds
    # a record's values by its place in that order)
    rest = from_json(to_json(s2))
    shape, values = compact.split(rest)
    swapped = shape[-1:] + shape[:-1]
    status, text = refused(hub, compact.MAGIC + compact.encode_frame(sid, rest, values, swapped))
    assert status == 400 and f"scope {shape[0][0]!r} comes after {shape[-1][0]!r}" in text, text
    assert hub.counters.snapshots == 0


def test_unknown_shape_is_409_and_the_shape_sent_again_is_stored(hub: Hub) -> None:
    s1, s2 = sim_snapshots(2)
    bare, sid = frame(s1, with_shape=False)
    status, text = refused(hub, compact.MAGIC + bare)
    assert status == 409 and text.startswith(compact.UNKNOWN_SHAPE) and sid in text
    assert hub.ingest_compact(compact.MAGIC + frame(s1)[0], "n1") == (1, 0)
    assert hub.ingest_compact(compact.MAGIC + frame(s2, with_shape=False)[0], "n1") == (1, 0)
    assert hub.ingest_compact(compact.MAGIC + frame(s2, with_shape=False)[0], "n1") == (0, 1)  # resent
    # shapes are per node: another node naming this one's shape is not taken for it
    other = msgspec.structs.replace(s2, node="n2")
    assert refused(hub, compact.MAGIC + frame(other, with_shape=False)[0], node="n2")[0] == 409


# ---- a real agent pusher against a real hub process --------------------------------------------


@pytest.mark.realparts
def test_agent_pushes_compact_to_a_real_hub(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gpufleet.agent.push")
    data, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, data, port)
    token = join_token(data)
    h = bearer(make_api_key(data, "viewer"))
    spool_dir = tmp_path / "spool"
    pusher = Pusher(url, "n1", Spool(spool_dir), CredentialStore(spool_dir / "credential.json"), token=token,
                    labels={"rack": "r1"}, **FAST)  # type: ignore[arg-type]
    snaps = sim_snapshots(6)
    snaps[3] = reshaped(snaps[3])

    def hub_has(ts: float) -> bool:
        r = httpx.get(f"{url}/api/v1/nodes/n1/snapshot", headers=h, timeout=5)
        return r.status_code == 200 and r.json()["timestamp"] == ts

    def points() -> list[float]:
        r = httpx.get(f"{url}/api/v1/query_range", headers=h, timeout=5, params={
            "metric": "gpufleet_gpu_utilization_ratio", "match": ['node="n1"', 'gpu="0"'],
            "start": snaps[0].timestamp - 1, "end": time.time() + 1, "step": 1, "agg": "last"})
        return list(r.json()["series"][0]["timestamps"]) if r.json()["series"] else []

    try:
        # spooled before the pusher runs: one compact batch of three frames, one shape
        for s in snaps[:3]:
            pusher.enqueue(s)
        pusher.start()
        eventually(lambda: hub_has(snaps[2].timestamp), timeout=20, what="the spooled snapshots stored")
        assert points() == [s.timestamp for s in snaps[:3]]
        assert pusher.pushed == 3 and len(pusher._shapes_sent) == 1
        served = from_json(httpx.get(f"{url}/api/v1/nodes/n1/snapshot", headers=h, timeout=5).content)
        assert served.gpus[0].values == snaps[2].gpus[0].values and served.cpus == snaps[2].cpus

        pusher.enqueue(snaps[3])  # a new shape: described once
        eventually(lambda: hub_has(snaps[3].timestamp), timeout=20, what="the reshaped snapshot stored")
        assert len(pusher._shapes_sent) == 2

        # the hub restarts and forgets shapes: 409, the agent sends them again, nothing is lost
        assert hub.stop() is not None
        hub = hub_proc(tmp_path, data, port, name="hub2")
        pusher.enqueue(snaps[4])
        pusher.enqueue(snaps[5])
        eventually(lambda: hub_has(snaps[5].timestamp), timeout=30, what="pushes stored after the restart")
        assert points() == [s.timestamp for s in snaps]
        assert "does not know this node's series shape" in caplog.text
        assert pusher.rejected == 0 and pusher._compact_off_until == 0.0  # compact all along, nothing dropped
        assert "starts with GFC1" not in hub.log()
    finally:
        pusher.stop(timeout=0.5)
        hub.stop()
