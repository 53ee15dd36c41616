"""The alerts HTTP API (under /api/v1): what the web UI's alerts page and scripts use.

    GET    /api/v1/alerts                      alerts (filter: state, severity), with silence/ack info
    GET    /api/v1/alerts/rules                loaded rules and rule-file errors (file:line)
    POST   /api/v1/alerts/{fingerprint}/ack    {"comment": "..."}: stop repeats
    DELETE /api/v1/alerts/{fingerprint}/ack
    GET    /api/v1/silences                    silences (active, pending, expired)
    POST   /api/v1/silences                    {"matchers": {...}, "duration": "2h", "comment": ""}

Acks and silences record the caller's account (login or API key), never a name from the body:
a `by` / `author` in the body is accepted for old scripts and ignored.
    DELETE /api/v1/silences/{id}               expire a silence now
    GET    /api/v1/notifications               each notifier's delivery stats and the routing config
    POST   /api/v1/notifications/test          {"receiver": null}: send a test message now
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from ..auth import Principal, Role, require
from .engine import FIRING, PENDING, RESOLVED
from .expr import ExprError, parse_duration
from .state import matchers_from

if TYPE_CHECKING:
    from .service import AlertsExtension

STATES = (PENDING, FIRING, RESOLVED)
_SEV_RANK = {"critical": 0, "warning": 1, "info": 2}


class SilenceBody(BaseModel):
    matchers: dict[str, str] | list[dict[str, str]] = Field(
        description='{label: value} (value may start with =~, !~ or !=) or [{label, op, value}]')
    author: str | None = Field(None, max_length=200, description="ignored: the caller's account is recorded")
    comment: str = Field("", max_length=2000)
    duration: str | None = Field(None, description="how long from starts_at, e.g. 2h (or give ends_at)")
    starts_at: float | None = Field(None, description="Unix seconds (default now)")
    ends_at: float | None = Field(None, description="Unix seconds")


class AckBody(BaseModel):
    by: str | None = Field(None, max_length=200, description="ignored: the caller's account is recorded")
    comment: str = Field("", max_length=2000)


class TestBody(BaseModel):
    receiver: str | None = None


def mount(app: FastAPI, ext: AlertsExtension) -> None:
    def alert_json(a: Any, now: float) -> dict[str, Any]:
        d: dict[str, Any] = a.as_dict()
        d["silenced_by"] = ext.silenced_by(a, now)
        d["silenced"] = bool(d["silenced_by"])
        return d

    @app.get("/api/v1/alerts", tags=["alerts"], dependencies=[require(Role.VIEWER)])
    def list_alerts(
        state: list[str] = Query([], description="pending | firing | resolved (default: all)"),
        severity: list[str] = Query([], description="critical | warning | info"),
    ) -> dict[str, Any]:
        """Alerts, most severe and oldest first; resolved ones stay listed for an hour."""
        for s in state:
            if s not in STATES:
                raise HTTPException(400, f"state {s!r} is not one of {', '.join(STATES)}")
        now = time.time()
        alerts = list(ext.engine.alerts.values())
        counts = {s: 0 for s in STATES}
        for a in alerts:
            counts[a.state] = counts.get(a.state, 0) + 1
        picked = [a for a in alerts if (not state or a.state in state) and (not severity or a.severity in severity)]
        picked.sort(key=lambda a: (STATES.index(a.state) if a.state != FIRING else -1,
                                   _SEV_RANK.get(a.severity, 9), a.active_at))
        return {
            "alerts": [alert_json(a, now) for a in picked], "counts": counts,
            "evaluation": {"last_at": ext.last_eval_at, "duration_ms": round(ext.engine.last_duration * 1000, 3),
                           "evaluations": ext.engine.evaluations, "interval": ext.interval,
                           "rules": len(ext.ruleset.rules), "errors": ext.eval_errors},
        }

    @app.get("/api/v1/alerts/rules", tags=["alerts"], dependencies=[require(Role.VIEWER)])
    def list_rules() -> dict[str, Any]:
        """The rules that run (built-in and from the rules file) and the file's errors."""
        return {"rules": [r.describe() for r in ext.ruleset.rules], "files": ext.ruleset.files,
                "errors": [e.as_dict() for e in ext.ruleset.errors]}

    @app.post("/api/v1/alerts/{fingerprint}/ack", tags=["alerts"])
    def ack(fingerprint: str, body: AckBody, who: Principal = require(Role.OPERATOR)) -> dict[str, Any]:
        """Acknowledge: someone is on it. Repeat notifications stop until it resolves."""
        a = ext.ack(fingerprint, who.name, body.comment)
        if a is None:
            raise HTTPException(404, f"no pending or firing alert with fingerprint {fingerprint!r}")
        return alert_json(a, time.time())

    @app.delete("/api/v1/alerts/{fingerprint}/ack", tags=["alerts"], dependencies=[require(Role.OPERATOR)])
    def unack(fingerprint: str) -> dict[str, Any]:
        a = ext.unack(fingerprint)
        if a is None:
            raise HTTPException(404, f"no alert with fingerprint {fingerprint!r}")
        return alert_json(a, time.time())

    @app.get("/api/v1/silences", tags=["alerts"], dependencies=[require(Role.VIEWER)])
    def list_silences() -> dict[str, Any]:
        now = time.time()
        return {"silences": [s.as_dict(now) for s in ext.silences()]}

    @app.post("/api/v1/silences", tags=["alerts"], status_code=201)
    def add_silence(body: SilenceBody, who: Principal = require(Role.OPERATOR)) -> dict[str, Any]:
        """Mute matching alerts (they still show, marked silenced) until the silence ends."""
        now = time.time()
        try:
            matchers = matchers_from(body.matchers)
        except ExprError as e:
            raise HTTPException(400, f"matchers: {e}") from None
        if not matchers:
            raise HTTPException(400, "matchers: give at least one (a silence of everything is almost never meant)")
        start = body.starts_at if body.starts_at is not None else now
        if body.ends_at is not None:
            end = body.ends_at
        elif body.duration is not None:
            try:
                end = start + parse_duration(body.duration)
            except ExprError as e:
                raise HTTPException(400, f"duration: {e}") from None
        else:
            raise HTTPException(400, "give duration (e.g. 2h) or ends_at")
        if end <= start or end <= now:
            raise HTTPException(400, "the silence must end after it starts and in the future")
        s = ext.add_silence(matchers, start, end, who.name, body.comment)
        return s.as_dict(now)

    @app.delete("/api/v1/silences/{sid}", tags=["alerts"], dependencies=[require(Role.OPERATOR)])
    def expire_silence(sid: str) -> dict[str, Any]:
        if not ext.expire_silence(sid):
            raise HTTPException(404, f"no active silence {sid!r}")
        return {"id": sid, "status": "expired"}

    @app.get("/api/v1/notifications", tags=["alerts"], dependencies=[require(Role.VIEWER)])
    def notifications() -> dict[str, Any]:
        """Each notifier: sent, failures, retries, dropped, last error; and the routing config."""
        return {"targets": ext.notifier.stats(), "config": ext.notify_cfg.describe()}

    @app.post("/api/v1/notifications/test", tags=["alerts"], dependencies=[require(Role.OPERATOR)])
    async def test_notification(body: TestBody | None = None) -> dict[str, Any]:
        """Send a test message to every receiver (or one) now, and say how each went."""
        receiver = body.receiver if body else None
        try:
            results = await asyncio.to_thread(ext.test_notification, receiver)
        except KeyError as e:
            raise HTTPException(404, str(e.args[0])) from None
        if not results:
            raise HTTPException(409, "no receivers configured: write notify.yaml (see docs/alerts.md)")
        return {"results": results, "ok": all(r["ok"] for r in results)}
