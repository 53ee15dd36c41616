"""AlertsExtension: ties rules, engine, state and notifications to a running Hub."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fleet import LEAN_LACKS
from .engine import FIRING, PENDING, Alert, Engine, NodeInput
from .notify import Notifier, send_test
from .routing import Grouper, NotifyConfig, load_notify
from .rules import RuleSet, load_rules
from .state import AlertStore, Silence

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..service import Hub

log = logging.getLogger("gpufleet.alerts")

RULES_ENV = "GPUFLEET_ALERT_RULES"
NOTIFY_ENV = "GPUFLEET_NOTIFY"
INTERVAL_ENV = "GPUFLEET_ALERT_INTERVAL"
FULL_SAVE_EVERY = 60.0  # values of active alerts are saved this often; transitions at once


def _pick(explicit: Any, opt: Any, env: str, default: Path) -> Path | None:
    """Explicit argument, then the hub option, then the environment, then the data-dir file."""
    for candidate in (explicit, opt, os.environ.get(env) or None):
        if candidate:
            return Path(candidate)
    return default if default.exists() else None


class AlertsExtension:
    def __init__(self, hub: Hub, rules_path: str | Path | None = None,
                 notify_config: NotifyConfig | str | Path | None = None, *, interval: float | None = None,
                 grace: float | None = None) -> None:
        self.hub = hub
        data = hub.opts.data
        self.rules_path = _pick(rules_path, getattr(hub.opts, "rules", None), RULES_ENV, data / "alerts.yaml")
        self._rules_mtime = self._mtime(self.rules_path)
        self.ruleset: RuleSet = load_rules(self.rules_path)
        for e in self.ruleset.errors:
            log.error("alert rules: %s", e)
        if isinstance(notify_config, NotifyConfig):
            self.notify_cfg = notify_config
        else:
            path = _pick(notify_config, getattr(hub.opts, "notify", None), NOTIFY_ENV, data / "notify.yaml")
            self.notify_cfg = load_notify(path)
        for e in self.notify_cfg.errors:
            log.error("notify config: %s", e)
        self.interval = interval if interval is not None else float(os.environ.get(INTERVAL_ENV, "5"))
        self.store = AlertStore(data / "alerts.db")
        self.engine = Engine(self.ruleset.rules, grace=hub.opts.down_after if grace is None else grace)
        self._keep_records()
        self.engine.restore(self.store.load_alerts())
        self.grouper = Grouper(self.notify_cfg, self.store.load_groups())
        self.notifier = Notifier.start(self.notify_cfg)
        self._silences: list[Silence] = self.store.silences()
        self._lock = threading.RLock()
        self._last_full_save = 0.0
        self.last_eval_at: float | None = None
        self.eval_errors = 0

    @staticmethod
    def _mtime(path: Path | None) -> float | None:
        try:
            return path.stat().st_mtime if path else None
        except OSError:
            return None

    # ---- evaluation ---------------------------------------------------------------------------

    def _keep_records(self) -> None:
        """Rules on CPU cores or links: the fleet keeps those records in its lean snapshots
        (~70 KB more a node) rather than decode every node's whole snapshot at each evaluation."""
        self.hub.fleet.keep = LEAN_LACKS & self.engine.columns.scopes

    def nodes(self) -> list[NodeInput]:
        out = []
        whole = self.hub.fleet.snapshot
        lacking = LEAN_LACKS & self.engine.columns.scopes
        for v in list(self.hub.fleet.nodes.values()):
            snap = v.snapshot
            # The same labels the hub stores series with (hub/service.py ingest()).
            labels = {**snap.labels, **v.labels} if snap is not None else dict(v.labels)
            # A lean snapshot made before the rules asked for more: read the whole one this once.
            load = None if lacking <= v.kept else functools.partial(whole, v)
            out.append(NodeInput(v.name, labels, snap, v.status, v.since, load))
        return out

    def evaluate(self, now: float | None = None) -> list[Alert]:
        """One round: evaluate, persist what changed, hand due messages to the notifiers."""
        now = time.time() if now is None else now
        with self._lock:
            try:
                hub_values = self.hub.values()
            except Exception:
                hub_values = {}
            self.engine.pause = self.hub.yield_point
            changed = self.engine.evaluate(self.nodes(), hub_values, now)
            if now - self._last_full_save >= FULL_SAVE_EVERY:
                self._last_full_save = now
                self.store.save_alerts(self.engine.active() + [a for a in changed if a.state not in (PENDING, FIRING)])
                self.store.delete_resolved_before(now - self.engine.resolved_retention)
            else:
                self.store.save_alerts(changed)
            alerts = list(self.engine.alerts.values())
            messages = self.grouper.step(alerts, self.is_silenced, now)
            self.notifier.deliver(messages)
            self.notifier.forward(alerts, self.is_silenced, now)
            if messages or changed:
                self.store.save_groups(self.grouper.snapshot())
            self.last_eval_at = now
            return changed

    def reload_rules_if_changed(self) -> bool:
        m = self._mtime(self.rules_path)
        if m == self._rules_mtime:
            return False
        self._rules_mtime = m
        rs = load_rules(self.rules_path)
        for e in rs.errors:
            log.error("alert rules: %s", e)
        with self._lock:
            self.ruleset = rs
            self.engine.set_rules(rs.rules)
            self._keep_records()
        log.info("alert rules reloaded: %d rules, %d errors", len(rs.rules), len(rs.errors))
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await self.hub.jobs.run("alerts", self._step, with_pushes=True):
                self.eval_errors += 1
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except asyncio.TimeoutError:
                pass

    def _step(self) -> None:
        self.reload_rules_if_changed()
        self.evaluate()

    # ---- silences and acknowledgements -------------------------------------------------------------

    def is_silenced(self, a: Alert, now: float | None = None) -> bool:
        return bool(self.silenced_by(a, now))

    def silenced_by(self, a: Alert, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        return [s.id for s in self._silences if s.active(now) and s.matches(a.labels)]

    def add_silence(self, matchers: Any, starts_at: float, ends_at: float, author: str, comment: str) -> Silence:
        s = self.store.add_silence(matchers, starts_at, ends_at, author, comment, time.time())
        self._silences = self.store.silences()
        return s

    def expire_silence(self, sid: str) -> bool:
        ok = self.store.expire_silence(sid, time.time())
        self._silences = self.store.silences()
        return ok

    def silences(self) -> list[Silence]:
        return list(self._silences)

    def ack(self, fingerprint: str, by: str, comment: str = "") -> Alert | None:
        with self._lock:
            a = self.engine.alerts.get(fingerprint)
            if a is None or a.state not in (PENDING, FIRING):
                return None
            a.ack_by, a.ack_at, a.ack_comment = by, time.time(), comment
            self.store.save_alerts([a])
            return a

    def unack(self, fingerprint: str) -> Alert | None:
        with self._lock:
            a = self.engine.alerts.get(fingerprint)
            if a is None:
                return None
            a.ack_by, a.ack_at, a.ack_comment = None, None, ""
            self.store.save_alerts([a])
            return a

    def test_notification(self, receiver: str | None = None) -> list[dict[str, Any]]:
        return send_test(self.notify_cfg, receiver)

    # ---- plumbing ----------------------------------------------------------------------------------

    def mount(self, app: FastAPI) -> None:
        from .api import mount

        mount(app, self)

    def status(self) -> dict[str, Any]:
        """Firing alerts for GET /api/v1/status (`gpufleet status`), most severe first."""
        alerts = sorted((a for a in list(self.engine.alerts.values()) if a.state == FIRING),
                        key=lambda a: ({"critical": 0, "warning": 1}.get(a.severity, 2), a.alertname))
        return {"alerts": {"enabled": True, "evaluation_errors": self.eval_errors, "firing": [
            {"alertname": a.alertname, "severity": a.severity, "node": a.labels.get("node"),
             "silenced": bool(self.silenced_by(a, time.time()))} for a in alerts]}}

    def values(self) -> dict[str, float]:
        # No lock: /metrics must not wait behind an evaluation; list() copies the dict at once.
        alerts = list(self.engine.alerts.values())
        return {"alerts_firing": float(sum(1 for a in alerts if a.state == FIRING)),
                "alerts_evaluation_errors_total": float(self.eval_errors)}

    def close(self) -> None:
        self.notifier.close()
        with self._lock:
            self.store.save_alerts(list(self.engine.alerts.values()))
            self.store.save_groups(self.grouper.snapshot())
        self.store.close()
