"""The audit log of remote commands: one SQLite table in hub.db, append-only.

Every attempt is recorded: the request (who, which selector, which nodes, argv, when), then one
row per node with its result or refusal, and a cancel row when someone cancels. There is no update
or delete API, and triggers make SQLite itself refuse UPDATE and DELETE on the table, so not even
a bug in the hub can rewrite history.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from ..db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS command_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    run_id TEXT NOT NULL,
    event TEXT NOT NULL,            -- request | result | cancel
    who TEXT,                       -- request and cancel: the user; result: NULL
    node TEXT,                      -- result: the node
    argv TEXT,                      -- request: JSON list
    status TEXT,                    -- request: started | no_match; result: ok, failed, refused, ...
    exit_code INTEGER,
    duration REAL,
    detail TEXT                     -- JSON: request selector and nodes; result reason and sizes
);
CREATE INDEX IF NOT EXISTS command_audit_at ON command_audit(at);
CREATE INDEX IF NOT EXISTS command_audit_run ON command_audit(run_id);
CREATE TRIGGER IF NOT EXISTS command_audit_no_update BEFORE UPDATE ON command_audit
BEGIN SELECT RAISE(ABORT, 'the command audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS command_audit_no_delete BEFORE DELETE ON command_audit
BEGIN SELECT RAISE(ABORT, 'the command audit log is append-only'); END;
"""

COLUMNS = "seq, at, run_id, event, who, node, argv, status, exit_code, duration, detail"


class AuditLog:
    def __init__(self, path: Path) -> None:
        self._db = connect(path, SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _append(self, run_id: str, event: str, *, who: str | None = None, node: str | None = None,
                argv: list[str] | None = None, status: str | None = None, exit_code: int | None = None,
                duration: float | None = None, detail: dict[str, Any] | None = None,
                at: float | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO command_audit(at, run_id, event, who, node, argv, status, exit_code, duration, detail)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (time.time() if at is None else at, run_id, event, who, node,
                 None if argv is None else json.dumps(argv), status, exit_code, duration,
                 None if detail is None else json.dumps(detail)))

    def request(self, run_id: str, who: str, argv: list[str], selector: dict[str, Any], nodes: list[str],
                timeout: float, status: str) -> None:
        self._append(run_id, "request", who=who, argv=argv, status=status,
                     detail={"selector": selector, "nodes": nodes, "timeout": timeout})

    def result(self, run_id: str, node: str, result: dict[str, Any]) -> None:
        detail = {k: result[k] for k in ("reason", "stdout_bytes", "stderr_bytes") if result.get(k) is not None}
        self._append(run_id, "result", node=node, status=result["status"], exit_code=result.get("exit_code"),
                     duration=result.get("duration"), detail=detail or None)

    def cancel(self, run_id: str, who: str) -> None:
        self._append(run_id, "cancel", who=who, status="cancel")

    def runs(self, since: float, until: float, limit: int) -> list[dict[str, Any]]:
        """Runs requested in [since, until), newest first, each with its node results and cancels.

        Result rows of a run id the hub never issued (an agent refusing a forged command) are
        listed as runs of their own with `who` null, so they are never hidden.
        """
        with self._lock:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM command_audit WHERE at >= ? AND at < ? ORDER BY seq", (since, until)
            ).fetchall()
            ids = sorted({r[2] for r in rows})
            extra: list[tuple[Any, ...]] = []
            for i in range(0, len(ids), 500):  # the rest of runs started just before `since`
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                extra += self._db.execute(
                    f"SELECT {COLUMNS} FROM command_audit WHERE run_id IN ({marks}) AND (at < ? OR at >= ?)",
                    (*chunk, since, until)).fetchall()
        runs: dict[str, dict[str, Any]] = {}
        for _seq, at, run_id, event, who, node, argv, status, code, duration, detail in sorted(extra + rows):
            run = runs.setdefault(run_id, {"id": run_id, "at": at, "who": None, "argv": None, "status": None,
                                           "selector": None, "nodes": [], "timeout": None, "results": [],
                                           "cancelled_by": None})
            info = json.loads(detail) if detail else {}
            if event == "request":
                run.update(at=at, who=who, argv=json.loads(argv) if argv else [], status=status,
                           selector=info.get("selector"), nodes=info.get("nodes", []), timeout=info.get("timeout"))
            elif event == "result":
                run["results"].append({"node": node, "at": at, "status": status, "exit_code": code,
                                       "duration": duration, **info})
            elif event == "cancel":
                run["cancelled_by"] = who
        out = [r for r in runs.values() if since <= r["at"] < until or r["who"] is None]
        out.sort(key=lambda r: r["at"], reverse=True)
        return out[:limit]
