"""Alert state, silences and notification bookkeeping in SQLite (its own file: alerts.db).

Kept apart from the hub's hub.db so the alerts feature owns its schema. Written after each
evaluation, only for what changed, so a restarted hub resumes with the same firing alerts,
the same silences, and knows what it already told people (no re-notify storm).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...syntax import Matcher
from ..db import connect
from .engine import Alert
from .expr import ExprError, make_matcher

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY, rule_id TEXT NOT NULL, labels TEXT NOT NULL, annotations TEXT NOT NULL,
    value REAL, state TEXT NOT NULL, active_at REAL NOT NULL, fired_at REAL, resolved_at REAL,
    last_eval REAL NOT NULL, ack_by TEXT, ack_at REAL, ack_comment TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at REAL NOT NULL, ends_at REAL NOT NULL,
    author TEXT NOT NULL, comment TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, deleted_at REAL
);
CREATE TABLE IF NOT EXISTS notify_groups (
    key TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_sent REAL, sent TEXT NOT NULL DEFAULT '[]'
);
"""


@dataclass(slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    author: str
    comment: str = ""
    created_at: float = 0.0
    deleted_at: float | None = None

    def active(self, now: float) -> bool:
        return self.deleted_at is None and self.starts_at <= now < self.ends_at

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        status = "expired" if self.deleted_at is not None or now >= self.ends_at else (
            "active" if now >= self.starts_at else "pending")
        return {"id": self.id, "matchers": [{"label": m.name, "op": m.op, "value": m.value} for m in self.matchers],
                "starts_at": self.starts_at, "ends_at": self.ends_at, "author": self.author,
                "comment": self.comment, "created_at": self.created_at, "status": status}


def matchers_from(spec: Any) -> tuple[Matcher, ...]:
    """{label: value} (value may start with =~ !~ !=) or [{label, op, value}] -> matchers."""
    from .expr import parse_matchers

    if isinstance(spec, dict):
        return parse_matchers(spec)
    if isinstance(spec, list):
        out = []
        for i, item in enumerate(spec):
            if not isinstance(item, dict) or "label" not in item or "value" not in item:
                raise ExprError(f"matchers[{i}] needs label, value and optionally op (= != =~ !~)")
            out.append(make_matcher(str(item["label"]), str(item.get("op", "=")), str(item["value"])))
        return tuple(out)
    raise ExprError("matchers must be {label: value} or a list of {label, op, value}")


def _m_json(ms: tuple[Matcher, ...]) -> str:
    return json.dumps([[m.name, m.op, m.value] for m in ms])


def _m_load(text: str) -> tuple[Matcher, ...]:
    return tuple(make_matcher(*item) for item in json.loads(text))


class AlertStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path, SCHEMA, "alert states, silences and acknowledgements (rules are files: "
                                          "kept); alerts that still hold fire again")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- alerts -------------------------------------------------------------------------------

    def save_alerts(self, alerts: list[Alert]) -> None:
        """Upsert these alerts; ones with state 'inactive' (pending that ended) are deleted."""
        if not alerts:
            return
        rows = [(a.fingerprint, a.rule_id, json.dumps(a.labels), json.dumps(a.annotations),
                 None if a.value != a.value else a.value, a.state, a.active_at, a.fired_at, a.resolved_at,
                 a.last_eval, a.ack_by, a.ack_at, a.ack_comment) for a in alerts if a.state != "inactive"]
        gone = [(a.fingerprint,) for a in alerts if a.state == "inactive"]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            self._db.executemany("DELETE FROM alerts WHERE fingerprint=?", gone)
            self._db.execute("COMMIT")

    def delete_resolved_before(self, t: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM alerts WHERE state='resolved' AND resolved_at < ?", (t,))

    def load_alerts(self) -> list[Alert]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM alerts").fetchall()
        return [Alert(fp, rule, json.loads(lab), json.loads(ann), float("nan") if v is None else v, state, act,
                      fired, res, last, ack_by, ack_at, ack_c)
                for fp, rule, lab, ann, v, state, act, fired, res, last, ack_by, ack_at, ack_c in rows]

    # ---- silences -----------------------------------------------------------------------------

    def add_silence(self, matchers: tuple[Matcher, ...], starts_at: float, ends_at: float, author: str,
                    comment: str, now: float) -> Silence:
        s = Silence(secrets.token_hex(8), matchers, starts_at, ends_at, author, comment, now)
        with self._lock:
            self._db.execute("INSERT INTO silences VALUES (?,?,?,?,?,?,?,NULL)",
                             (s.id, _m_json(matchers), starts_at, ends_at, author, comment, now))
        return s

    def expire_silence(self, sid: str, now: float) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE silences SET deleted_at=? WHERE id=? AND deleted_at IS NULL", (now, sid))
        return cur.rowcount > 0

    def silences(self) -> list[Silence]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM silences ORDER BY created_at").fetchall()
        return [Silence(i, _m_load(m), s, e, a, c, cr, d) for i, m, s, e, a, c, cr, d in rows]

    # ---- notification groups -----------------------------------------------------------------

    def save_groups(self, groups: dict[str, tuple[float, float | None, list[str]]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM notify_groups")
            self._db.executemany("INSERT INTO notify_groups VALUES (?,?,?,?)",
                                 [(k, f, s, json.dumps(sent)) for k, (f, s, sent) in groups.items()])
            self._db.execute("COMMIT")

    def load_groups(self) -> dict[str, tuple[float, float | None, list[str]]]:
        with self._lock:
            rows = self._db.execute("SELECT key, first_seen, last_sent, sent FROM notify_groups").fetchall()
        return {k: (f, s, json.loads(sent)) for k, f, s, sent in rows}
