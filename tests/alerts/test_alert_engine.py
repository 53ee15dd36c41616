"""Simulated nodes driven hot, idle and down through a real Hub; state across restarts; the API."""

from __future__ import annotations

import time
from pathlib import Path


from access import authed_client
from alertkit import Receiver, SimNode, alerts_ext, by_name, firing, make_hub, receiver  # noqa: F401 - a fixture
from conftest import FakeClock as Clock, eventually
from gpufleet.hub.alerts.rules import load_rules

NOTIFY = """\
receivers:
  ops:
    webhook: ["{url}"]
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 0s
  group_interval: 0s
retry: {{attempts: 3, backoff: 50ms}}
"""


def test_hot_gpu_goes_pending_then_firing_then_resolves(tmp_path: Path, receiver: Receiver) -> None:
    clock = Clock(time.time())
    hub = make_hub(tmp_path / "data", notify_yaml=NOTIFY.format(url=receiver.url))
    ext = alerts_ext(hub)
    node = SimNode("gpu-01", clock)
    node.backend.force(3, temperature=92.0)
    try:
        t0 = clock.t
        for step in range(0, 7):  # every 30 s for 3 minutes
            clock.t = t0 + 30 * step
            node.push(hub)
            ext.evaluate(now=clock.t)
            crit = by_name(ext, "GpufleetGpuOverheating")
            assert len(crit) == 1 and crit[0].labels["gpu"] == "3" and crit[0].labels["cluster"] == "lab"
            assert crit[0].state == ("firing" if clock.t - t0 >= 120 else "pending"), step
        a = crit[0]
        assert a.annotations["summary"] == "GPU 3 on gpu-01 is at 92 C"
        assert a.labels["severity"] == "critical" and a.fired_at == t0 + 120
        msg = eventually(lambda: [b for b in receiver.bodies if b["status"] == "firing"
                                and b["groupLabels"] == {"alertname": "GpufleetGpuOverheating"}], what="webhook")
        assert msg[0]["alerts"][0]["labels"]["node"] == "gpu-01"
        # cool down: resolves, and the resolution is sent
        node.backend.force(3, temperature=60.0)
        clock.t += 30
        node.push(hub)
        ext.evaluate(now=clock.t)
        assert a.state == "resolved" and a.resolved_at == clock.t
        eventually(lambda: any(b["status"] == "resolved" for b in receiver.bodies), what="resolved webhook")
    finally:
        hub.close()


def test_idle_allocated_gpu_is_waste_after_30_minutes(tmp_path: Path) -> None:
    clock = Clock(time.time())
    hub = make_hub(tmp_path / "data")
    ext = alerts_ext(hub)
    node = SimNode("gpu-02", clock)
    try:
        t0 = clock.t
        node.push(hub)
        # a GPU whose job outlives the test, forced idle: allocated but doing nothing
        job = next(j for j in node.backend.jobs() if j["end"] > t0 + 40 * 60 and len(j["gpus"]) == 1)
        gpu = job["gpus"][0]
        node.backend.force(gpu, utilization=0.01)
        for minute in range(0, 32):
            clock.t = t0 + 60 * minute
            node.push(hub)
            ext.evaluate(now=clock.t)
        waste = [a for a in by_name(ext, "GpufleetGpuAllocatedIdle") if a.labels["gpu"] == str(gpu)]
        assert len(waste) == 1 and waste[0].state == "firing"
        assert waste[0].fired_at == t0 + 60 * 30 + 0 or waste[0].fired_at >= t0 + 60 * 30
        assert "allocated but idle" in waste[0].annotations["summary"]
    finally:
        hub.close()


def test_node_that_stops_pushing_alerts_down_and_state_survives_restart(tmp_path: Path) -> None:
    clock = Clock(time.time())
    data = tmp_path / "data"
    receiver = Receiver()
    hub = make_hub(data, notify_yaml=NOTIFY.format(url=receiver.url))
    ext = alerts_ext(hub)
    nodes = [SimNode(f"rack1-{i:02d}", clock, labels={"cluster": "lab", "rack": "r1"}) for i in range(5)]
    try:
        t0 = clock.t
        for n in nodes:
            n.push(hub)
        ext.evaluate(now=t0)
        # the rack loses power: no more pushes
        for dt in (60, 125, 180, 245, 300):
            clock.t = t0 + dt
            hub.tick(now=clock.t)
            ext.evaluate(now=clock.t)
        down = firing(ext, "GpufleetNodeDown")
        assert sorted(a.labels["node"] for a in down) == [n.name for n in nodes]
        assert all(a.active_at == t0 + 120 for a in down)  # from when it went down, not when we looked
        # one dead rack is one message, not five
        msgs = eventually(lambda: [b for b in receiver.bodies if b["groupLabels"].get("alertname") == "GpufleetNodeDown"],
                        what="node-down message")
        assert len(msgs) == 1 and len(msgs[0]["alerts"]) == 5
        fps = {a.fingerprint for a in down}
    finally:
        hub.close()
    sent_before = len(receiver.bodies)
    hub2 = make_hub(data)
    try:
        ext2 = alerts_ext(hub2)
        assert {a.fingerprint for a in firing(ext2, "GpufleetNodeDown")} == fps
        clock.t += 30
        hub2.tick(now=clock.t)
        ext2.evaluate(now=clock.t)  # still down; within the repeat interval: no re-notify storm
        assert {a.fingerprint for a in firing(ext2, "GpufleetNodeDown")} == fps
        eventually(ext2.notifier.idle, what="the notifier to finish")
        assert len(receiver.bodies) == sent_before
    finally:
        hub2.close()
        receiver.close()


def test_api_lists_alerts_silences_and_acks(tmp_path: Path, receiver: Receiver) -> None:
    clock = Clock(time.time())
    hub = make_hub(tmp_path / "data", alerts_yaml="builtin:\n  gpu_temperature_critical: {for: 0s}\n",
                   notify_yaml=NOTIFY.format(url=receiver.url))
    ext = alerts_ext(hub)
    node = SimNode("gpu-03", clock)
    node.backend.force(0, temperature=95.0)
    try:
        with authed_client(hub, role="operator", background=False) as c:
            node.push(hub)
            ext.evaluate(now=clock.t)
            body = c.get("/api/v1/alerts", params={"state": "firing"}).json()
            crit = [a for a in body["alerts"] if a["alertname"] == "GpufleetGpuOverheating"]
            assert len(crit) == 1 and crit[0]["labels"]["node"] == "gpu-03" and crit[0]["value"] == 95.0
            assert body["evaluation"]["rules"] == len(load_rules(None).rules)
            assert c.get("/api/v1/alerts", params={"state": "bogus"}).status_code == 400
            fp = crit[0]["fingerprint"]
            r = c.post(f"/api/v1/alerts/{fp}/ack", json={"by": "alice", "comment": "on it"})
            # the caller's account is recorded: a name in the body cannot speak for someone else
            assert r.status_code == 200 and r.json()["ack"]["by"] == "test-operator"
            assert c.post("/api/v1/alerts/nope/ack", json={"by": "alice"}).status_code == 404
            r = c.post("/api/v1/silences", json={"matchers": {"node": "gpu-03"}, "duration": "2h", "author": "bob",
                                                 "comment": "maintenance"})
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            assert r.json()["status"] == "active" and r.json()["ends_at"] > time.time() + 7000
            assert r.json()["author"] == "test-operator"
            a = c.get("/api/v1/alerts").json()["alerts"]
            assert all(x["silenced"] for x in a if x["labels"].get("node") == "gpu-03")
            assert c.post("/api/v1/silences", json={"matchers": {}, "duration": "1h", "author": "b"}).status_code == 400
            assert c.post("/api/v1/silences", json={"matchers": {"node": "x"}, "duration": "soon",
                                                    "author": "b"}).status_code == 400
            assert c.delete(f"/api/v1/silences/{sid}").status_code == 200
            assert c.delete(f"/api/v1/silences/{sid}").status_code == 404
            assert c.get("/api/v1/silences").json()["silences"][0]["status"] == "expired"
            rules = c.get("/api/v1/alerts/rules").json()
            assert not rules["errors"] and len(rules["rules"]) == len(load_rules(None).rules)
            r = c.post("/api/v1/notifications/test", json={})
            assert r.status_code == 200 and r.json()["ok"], r.text
            eventually(lambda: any(b["groupLabels"].get("alertname") == "GpufleetTestNotification"
                                 for b in receiver.bodies), what="test notification")
            stats = c.get("/api/v1/notifications").json()
            assert stats["targets"][0]["kind"] == "webhook" and "/hook" not in stats["targets"][0]["name"]
    finally:
        hub.close()


def test_silenced_alert_is_not_sent(tmp_path: Path, receiver: Receiver) -> None:
    clock = Clock(time.time())
    hub = make_hub(tmp_path / "data", alerts_yaml="builtin:\n  gpu_temperature_critical: {for: 0s}\n",
                   notify_yaml=NOTIFY.format(url=receiver.url))
    ext = alerts_ext(hub)
    from gpufleet.hub.alerts.expr import parse_matchers

    ext.add_silence(parse_matchers({"alertname": "GpufleetGpuOverheating"}), time.time() - 1, time.time() + 3600,
                    "bob", "")
    node = SimNode("gpu-04", clock)
    node.backend.force(0, temperature=95.0)
    try:
        node.push(hub)
        ext.evaluate(now=clock.t)
        assert firing(ext, "GpufleetGpuOverheating")
        eventually(ext.notifier.idle, what="the notifier to finish")
        assert not [b for b in receiver.bodies if b["groupLabels"].get("alertname") == "GpufleetGpuOverheating"]
    finally:
        hub.close()
