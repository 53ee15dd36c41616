"""Delivery: apprise URLs, plain webhooks and Alertmanager, each behind its own worker thread.

Evaluation only enqueues; a worker sends, and on failure retries with doubling backoff
(RetryPolicy), then gives up and counts the message as dropped. A slow or dead notifier
therefore never delays evaluation or the other notifiers, and its trouble shows in
`stats()` (GET /api/v1/notifications). URLs carry secrets: only `redact()`ed forms are
logged or shown.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .engine import FIRING, RESOLVED, Alert
from .payload import am_alert, redact
from .routing import Message, NotifyConfig, RetryPolicy

log = logging.getLogger("gpufleet.alerts")

QUEUE_MAX = 1000


class NotifyError(Exception):
    pass


# ---- targets ------------------------------------------------------------------------------------


class Target:
    kind = ""

    def __init__(self, receiver: str, url: str) -> None:
        self.receiver = receiver
        self.url = url
        self.name = f"{receiver}:{self.kind}:{redact(url)}"

    def send(self, msg: Any) -> None:
        raise NotImplementedError


class AppriseTarget(Target):
    kind = "apprise"

    def send(self, msg: Message) -> None:
        import apprise

        ap = apprise.Apprise()
        if not ap.add(self.url):
            raise NotifyError("apprise rejected the URL")
        ntype = apprise.NotifyType.FAILURE if msg.firing else apprise.NotifyType.SUCCESS
        # apprise reports the service's answer only in its log: capture it for the error, so
        # `rules test-notify` (no hub, no hub log) and the notifications API can show it.
        capture: Any = apprise.LogCapture  # untyped in apprise
        with capture(level=apprise.logging.WARNING, fmt="%(message)s") as captured:
            ok = ap.notify(body=msg.body(), title=msg.title(), notify_type=ntype)
        if not ok:
            said = " ".join(line.strip() for line in captured.getvalue().splitlines() if line.strip())
            raise NotifyError(f"apprise could not deliver: {said[-300:] or 'no reason given'}")


class WebhookTarget(Target):
    kind = "webhook"

    def send(self, msg: Message) -> None:
        r = httpx.post(self.url, json=msg.webhook_payload(), timeout=10)
        if r.status_code >= 300:
            raise NotifyError(f"HTTP {r.status_code}: {r.text[:200]}")


class AlertmanagerTarget(Target):
    kind = "alertmanager"

    def send(self, msg: list[dict[str, Any]]) -> None:
        r = httpx.post(f"{self.url}/api/v2/alerts", json=msg, timeout=10)
        if r.status_code >= 300:
            raise NotifyError(f"HTTP {r.status_code}: {r.text[:200]}")


TARGET_KINDS: dict[str, type[Target]] = {"apprise": AppriseTarget, "webhook": WebhookTarget,
                                          "alertmanager": AlertmanagerTarget}


# ---- workers -------------------------------------------------------------------------------------


@dataclass
class TargetStats:
    name: str
    kind: str
    receiver: str
    sent: int = 0
    failures: int = 0  # failed attempts
    retries: int = 0
    dropped: int = 0  # messages given up on (retries spent, or queue full)
    last_error: str = ""
    last_error_at: float | None = None
    last_success_at: float | None = None
    queued: int = 0
    retrying: bool = False
    next_attempt_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Job:
    payload: Any
    attempt: int = 0


class Worker:
    """One thread per target: a stuck SMTP server holds up only its own queue."""

    def __init__(self, target: Target, retry: RetryPolicy) -> None:
        self.target = target
        self.retry = retry
        self.stats = TargetStats(target.name, target.kind, target.receiver)
        self._q: queue.Queue[_Job | None] = queue.Queue(QUEUE_MAX)
        self._stop = threading.Event()
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name=f"notify-{target.kind}", daemon=True)
        self._thread.start()

    def submit(self, payload: Any) -> None:
        try:
            self._q.put_nowait(_Job(payload))
        except queue.Full:
            self.stats.dropped += 1
            self.stats.last_error = "queue full: messages dropped"
        self.stats.queued = self._q.qsize()

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self._q.get()
            if job is None:
                self._q.task_done()
                break
            self.busy = True
            while not self._stop.is_set():
                job.attempt += 1
                try:
                    self.target.send(job.payload)
                except Exception as e:  # any failure is the notifier's, never the hub's
                    s = self.stats
                    s.failures += 1
                    s.last_error = f"{type(e).__name__}: {e}"[:500]
                    s.last_error_at = time.time()
                    if job.attempt >= self.retry.attempts:
                        s.dropped += 1
                        s.retrying, s.next_attempt_at = False, None
                        log.warning("notifier %s: giving up after %d attempts: %s", self.target.name,
                                    job.attempt, s.last_error)
                        break
                    delay = self.retry.delay(job.attempt)
                    s.retries += 1
                    s.retrying, s.next_attempt_at = True, time.time() + delay
                    log.info("notifier %s failed (%s); retry %d in %.1fs", self.target.name, s.last_error,
                             job.attempt, delay)
                    if self._stop.wait(delay):
                        break
                else:
                    self.stats.sent += 1
                    self.stats.last_success_at = time.time()
                    self.stats.retrying, self.stats.next_attempt_at = False, None
                    break
            self.busy = False
            self.stats.queued = self._q.qsize()
            self._q.task_done()  # after the send: idle() never sees a job between queue and worker

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)


class AlertmanagerForwarder:
    """Sends every firing (unsilenced) alert to Alertmanager on change and every `resend`,
    with endsAt a few resends ahead (Alertmanager resolves them itself if the hub dies), and
    resolved ones with their endsAt for a while after: what Prometheus does."""

    RESOLVED_FOR = 15 * 60.0

    def __init__(self, resend: float, external_url: str) -> None:
        self.resend = resend
        self.external_url = external_url
        self._last_post: float | None = None
        self._last_states: dict[str, str] = {}

    def step(self, alerts: list[Alert], silenced: Callable[[Alert], bool], now: float) -> list[dict[str, Any]] | None:
        items = [a for a in alerts if (a.state == FIRING and not silenced(a)) or (
            a.state == RESOLVED and a.resolved_at is not None and now - a.resolved_at <= self.RESOLVED_FOR
            and a.fingerprint in self._last_states)]
        states = {a.fingerprint: a.state for a in items}
        changed = states != self._last_states
        if not items and not self._last_states:
            return None
        if not changed and self._last_post is not None and now - self._last_post < self.resend:
            return None
        self._last_post = now
        self._last_states = {fp: s for fp, s in states.items() if s == FIRING} | {
            fp: s for fp, s in states.items() if s == RESOLVED}
        ends = now + 4 * max(self.resend, 60.0)
        return [am_alert(a, self.external_url, ends_at=ends) for a in items]


@dataclass
class Notifier:
    """All targets of a NotifyConfig, their workers, and the Alertmanager forwarder."""

    cfg: NotifyConfig
    workers: dict[str, list[Worker]] = field(default_factory=dict)  # receiver -> workers
    am_workers: list[Worker] = field(default_factory=list)
    forwarder: AlertmanagerForwarder | None = None

    @classmethod
    def start(cls, cfg: NotifyConfig) -> Notifier:
        n = cls(cfg)
        for name, kinds in cfg.receivers.items():
            n.workers[name] = [Worker(TARGET_KINDS[kind](name, u), cfg.retry) for kind, urls in kinds.items()
                               for u in urls]
        if cfg.alertmanager:
            n.am_workers = [Worker(AlertmanagerTarget("alertmanager", u), cfg.retry) for u in cfg.alertmanager]
            n.forwarder = AlertmanagerForwarder(cfg.am_resend, cfg.external_url)
        return n

    def deliver(self, messages: list[Message]) -> None:
        for m in messages:
            for w in self.workers.get(m.receiver, []):
                w.submit(m)

    def forward(self, alerts: list[Alert], silenced: Callable[[Alert], bool], now: float) -> None:
        if self.forwarder is None:
            return
        payload = self.forwarder.step(alerts, silenced, now)
        if payload is not None:
            for w in self.am_workers:
                w.submit(payload)

    def all_workers(self) -> list[Worker]:
        return [w for ws in self.workers.values() for w in ws] + self.am_workers

    def stats(self) -> list[dict[str, Any]]:
        return [w.stats.as_dict() for w in self.all_workers()]

    def idle(self) -> bool:
        """Nothing queued or being sent: what was handed over has been delivered or given up on."""
        return all(w._q.unfinished_tasks == 0 for w in self.all_workers())

    def close(self) -> None:
        for w in self.all_workers():
            w.close()


def test_message(receiver: str, external_url: str, now: float | None = None) -> Message:
    now = time.time() if now is None else now
    a = Alert("0000000000000000", "test", {"alertname": "GpufleetTestNotification", "severity": "info"},
              {"summary": "Test notification from the gpufleet hub: this receiver works."}, float("nan"),
              FIRING, now, now)
    return Message(receiver, "test", {"alertname": "GpufleetTestNotification"}, [a], [], external_url)


def send_test(cfg: NotifyConfig, receiver: str | None = None) -> list[dict[str, Any]]:
    """Send one test message to each target now (no queue, no retry); the result per target."""
    results: list[dict[str, Any]] = []
    names = [receiver] if receiver else list(cfg.receivers)
    if receiver and receiver not in cfg.receivers and receiver != "alertmanager":
        raise KeyError(f"unknown receiver {receiver!r} (receivers: {', '.join(cfg.receivers) or 'none'})")
    for name in names:
        for kind, urls in cfg.receivers.get(name, {}).items():
            for u in urls:
                t = TARGET_KINDS[kind](name, u)
                results.append(_try(t, test_message(name, cfg.external_url)))
    if receiver in (None, "alertmanager"):
        for u in cfg.alertmanager:
            t = AlertmanagerTarget("alertmanager", u)
            m = test_message("alertmanager", cfg.external_url)
            results.append(_try(t, [am_alert(m.firing[0], cfg.external_url, ends_at=time.time() + 300)]))
    return results


def _try(t: Target, payload: Any) -> dict[str, Any]:
    try:
        t.send(payload)
    except Exception as e:
        return {"target": t.name, "receiver": t.receiver, "kind": t.kind, "ok": False, "error": f"{type(e).__name__}: {e}"}
    return {"target": t.name, "receiver": t.receiver, "kind": t.kind, "ok": True, "error": ""}
