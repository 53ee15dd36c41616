"""Delivery to real parts on loopback: Debian's Alertmanager, an SMTP sink via apprise mailto://,
a webhook; retries with backoff that never block evaluation; config errors with file and line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from alertkit import Receiver, SimNode, alerts_ext, make_hub
from conftest import FakeClock as Clock, eventually
from gpufleet.hub.alerts.routing import load_notify_text
from realparts import alertmanager, free_port

pytestmark = pytest.mark.realparts

AM_CONFIG = """\
route: {receiver: blackhole, group_wait: 1s}
receivers: [{name: blackhole}]
"""


def test_alerts_reach_a_real_alertmanager_and_resolve(tmp_path: Path) -> None:
    with alertmanager(tmp_path, AM_CONFIG) as (_, am_url):
        hub = make_hub(tmp_path / "data", alerts_yaml="builtin:\n  gpu_temperature_critical: {for: 0s}\n",
                       notify_yaml=f"alertmanager: {{urls: ['{am_url}'], resend: 1m}}\n"
                                   "external_url: http://hub.test:8080\n")
        ext = alerts_ext(hub)
        clock = Clock(time.time())
        node = SimNode("am-01", clock)
        node.backend.force(2, temperature=93.0)
        try:
            node.push(hub)
            ext.evaluate()

            def ours() -> list[dict]:
                r = httpx.get(f"{am_url}/api/v2/alerts", params={"filter": 'alertname="GpufleetGpuOverheating"'})
                return [a for a in r.json() if a["labels"].get("node") == "am-01"]

            got = eventually(ours, what="alert in Alertmanager")
            a = got[0]
            assert a["labels"]["gpu"] == "2" and a["labels"]["severity"] == "critical"
            assert a["annotations"]["summary"] == "GPU 2 on am-01 is at 93 C"
            assert a["generatorURL"].startswith("http://hub.test:8080/alerts?fingerprint=")
            assert a["status"]["state"] == "active"
            # cool down: the hub sends endsAt and Alertmanager drops it from its active list
            node.backend.force(2, temperature=50.0)
            clock.t = time.time()
            node.push(hub)
            ext.evaluate()
            eventually(lambda: not ours(), what="alert resolved in Alertmanager")
            stats = ext.notifier.stats()
            assert stats[0]["kind"] == "alertmanager" and stats[0]["sent"] >= 2 and stats[0]["failures"] == 0
        finally:
            hub.close()


def test_email_through_apprise_mailto_to_an_smtp_sink(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    mails = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802, ANN001, ANN201
            mails.append(envelope)
            return "250 OK"

    port = free_port()
    smtp = Controller(Sink(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        url = f"mailto://127.0.0.1:{port}?from=gpufleet@lab.test&to=ops@lab.test&mode=insecure"
        notify = (f"receivers:\n  mail:\n    apprise: ['{url}']\n"
                  "route: {receiver: mail, group_wait: 0s, group_interval: 0s}\n")
        hub = make_hub(tmp_path / "data", alerts_yaml="builtin:\n  gpu_temperature_critical: {for: 0s}\n",
                       notify_yaml=notify)
        ext = alerts_ext(hub)
        clock = Clock(time.time())
        nodes = [SimNode(f"mail-{i}", clock) for i in range(3)]
        try:
            for n in nodes:
                n.backend.force(1, temperature=96.0)
                n.push(hub)
            ext.evaluate(now=clock.t)
            eventually(lambda: mails, what="email")
            eventually(ext.notifier.idle, what="the notifier to finish")
            assert len(mails) == 1  # three hot GPUs, one alert kind: one message
            text = mails[0].content.decode(errors="replace")
            assert mails[0].rcpt_tos == ["ops@lab.test"]
            assert "[FIRING:3] GpufleetGpuOverheating (critical)" in text
            assert all(f"GPU 1 on mail-{i} is at 96 C" in text for i in range(3))
            # the CLI's test notification goes through the same receiver
            nf = tmp_path / "notify.yaml"
            nf.write_text(notify)
            r = subprocess.run([sys.executable, "-c", "from gpufleet.hub.alerts.cli import rules; rules()",
                                "test-notify", "--notify", str(nf)], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr
            assert str(port) in r.stdout and "ops@lab.test" not in r.stdout  # redacted
            eventually(lambda: len(mails) == 2, what="test email")
            assert "GpufleetTestNotification" in mails[1].content.decode(errors="replace")
        finally:
            hub.close()
    finally:
        smtp.stop()


def test_failing_notifier_is_retried_with_backoff_and_never_blocks(tmp_path: Path) -> None:
    flaky = Receiver(fail_first=2)
    stuck = Receiver(delay=3.0)
    dead = f"http://127.0.0.1:{free_port()}/hook"
    notify = f"""\
receivers:
  ops: {{webhook: ["{flaky.url}", "{stuck.url}", "{dead}"]}}
route: {{receiver: ops, group_wait: 0s, group_interval: 0s}}
retry: {{attempts: 3, backoff: 100ms, max_backoff: 1s}}
"""
    hub = make_hub(tmp_path / "data", alerts_yaml="builtin:\n  gpu_temperature_critical: {for: 0s}\n",
                   notify_yaml=notify)
    ext = alerts_ext(hub)
    clock = Clock(time.time())
    node = SimNode("flaky-01", clock)
    node.backend.force(0, temperature=99.0)
    try:
        node.push(hub)
        t0 = time.perf_counter()
        ext.evaluate(now=clock.t)
        for _ in range(5):  # evaluation goes on while notifiers retry or hang
            clock.t += 5
            node.push(hub)
            ext.evaluate(now=clock.t)
        assert time.perf_counter() - t0 < 1.0
        eventually(lambda: flaky.bodies, what="delivery after retries")
        def target(port: int) -> dict:
            return next(s for s in ext.notifier.stats() if s["name"].endswith(f":{port}/…"))

        flaky_port, dead_port = flaky.server.server_address[1], int(dead.split(":")[2].split("/")[0])
        f = eventually(lambda: target(flaky_port)["sent"] == 1 and target(flaky_port), what="flaky stats")
        assert (f["sent"], f["failures"], f["retries"], f["dropped"]) == (1, 2, 2, 0)
        assert "HTTP 500" in f["last_error"]
        d = eventually(lambda: target(dead_port)["dropped"] == 1 and target(dead_port), what="dead notifier given up")
        assert d["failures"] == 3 and d["sent"] == 0 and "Connect" in d["last_error"]
    finally:
        hub.close()
        flaky.close()
        stuck.close()


def test_notify_config_errors_name_file_and_line() -> None:
    cfg = load_notify_text("""\
receivers:
  ops:
    apprise: ["notaservice://x"]
    webhook: ["ftp://x"]
    pager: ["x"]
route:
  receiver: nobody
  group_wait: soon
""", "notify.yaml")
    texts = [str(e) for e in cfg.errors]
    assert any(t.startswith("notify.yaml:3:") and "apprise does not understand" in t for t in texts), texts
    assert any(t.startswith("notify.yaml:4:") and "must be http" in t for t in texts), texts
    assert any(t.startswith("notify.yaml:5:") and "unknown kind 'pager'" in t for t in texts), texts
    assert any(t.startswith("notify.yaml:7:") and "unknown receiver 'nobody'" in t for t in texts), texts
