"""The hub's state in SQLite (WAL): join tokens, nodes and their credentials, labels, status.

Secrets are stored only as SHA-256 hashes: a stolen database does not let anyone push as
a node. Tokens are random 256-bit values with a readable prefix (gft_ join, gfn_ node).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, prefix TEXT NOT NULL, created REAL NOT NULL, note TEXT NOT NULL DEFAULT '',
    revoked REAL
);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY, credential_hash TEXT, labels TEXT NOT NULL DEFAULT '{}',
    agent_url TEXT, source TEXT NOT NULL DEFAULT 'push', registered REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'up', status_since REAL NOT NULL, last_seen REAL
);
CREATE TABLE IF NOT EXISTS latest (
    node TEXT PRIMARY KEY, timestamp REAL NOT NULL, snapshot BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(slots=True)
class NodeRecord:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    agent_url: str | None = None
    source: str = "push"
    registered: float = 0.0
    status: str = "up"
    status_since: float = 0.0
    last_seen: float | None = None


class HubState:
    """Thread-safe: FastAPI handlers, the ingest path and CLI commands share one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path, SCHEMA)
        self._lock = threading.Lock()
        self._cred_cache: dict[str, str] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ---- join tokens ------------------------------------------------------------------------

    def create_token(self, note: str = "") -> str:
        token = new_secret("gft")
        self._exec("INSERT INTO tokens(hash, prefix, created, note) VALUES (?,?,?,?)",
                   (_hash(token), token[:8], time.time(), note))
        return token

    def token_valid(self, token: str) -> bool:
        rows = self._exec("SELECT revoked FROM tokens WHERE hash=?", (_hash(token),))
        return bool(rows) and rows[0][0] is None

    def revoke_token(self, prefix_or_token: str) -> int:
        now = time.time()
        h = _hash(prefix_or_token)
        with self._lock:
            cur = self._db.execute("UPDATE tokens SET revoked=? WHERE (hash=? OR prefix=?) AND revoked IS NULL",
                                   (now, h, prefix_or_token[:8]))
            return cur.rowcount

    def tokens(self) -> list[dict[str, object]]:
        rows = self._exec("SELECT prefix, created, note, revoked FROM tokens ORDER BY created")
        return [{"prefix": p, "created": c, "note": n, "revoked": r} for p, c, n, r in rows]

    def count_tokens(self) -> int:
        return int(self._exec("SELECT count(*) FROM tokens")[0][0])

    # ---- nodes -----------------------------------------------------------------------------

    def register(self, name: str, labels: dict[str, str], agent_url: str | None) -> str:
        """(Re)register a pushing node; returns its new credential (old ones stop working)."""
        cred = new_secret("gfn")
        now = time.time()
        with self._lock:
            old = self._db.execute("SELECT credential_hash FROM nodes WHERE name=?", (name,)).fetchall()
            self._db.execute(
                "INSERT INTO nodes(name, credential_hash, labels, agent_url, source, registered, status, status_since)"
                " VALUES (?,?,?,?, 'push', ?, 'up', ?)"
                " ON CONFLICT(name) DO UPDATE SET credential_hash=excluded.credential_hash,"
                " labels=excluded.labels, agent_url=excluded.agent_url, source='push'",
                (name, _hash(cred), json.dumps(labels), agent_url, now, now),
            )
            if old and old[0][0]:
                self._cred_cache.pop(old[0][0], None)
        return cred

    def upsert_pulled(self, name: str, labels: dict[str, str], url: str) -> None:
        now = time.time()
        self._exec(
            "INSERT INTO nodes(name, labels, agent_url, source, registered, status, status_since)"
            " VALUES (?,?,?, 'pull', ?, 'up', ?) ON CONFLICT(name) DO UPDATE SET labels=excluded.labels,"
            " agent_url=excluded.agent_url",
            (name, json.dumps(labels), url, now, now),
        )

    def node_for_credential(self, credential: str) -> str | None:
        h = _hash(credential)
        name = self._cred_cache.get(h)
        if name is None:
            rows = self._exec("SELECT name FROM nodes WHERE credential_hash=?", (h,))
            if not rows:
                return None
            name = rows[0][0]
            self._cred_cache[h] = name
        return name

    def revoke_node(self, name: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT credential_hash FROM nodes WHERE name=?", (name,)).fetchall()
            if not row:
                return False
            self._cred_cache.pop(row[0][0] or "", None)
            self._db.execute("UPDATE nodes SET credential_hash=NULL WHERE name=?", (name,))
            return True

    def nodes(self) -> list[NodeRecord]:
        rows = self._exec("SELECT name, labels, agent_url, source, registered, status, status_since, last_seen"
                          " FROM nodes ORDER BY name")
        return [NodeRecord(n, json.loads(lb), u, s, r, st, ss, ls) for n, lb, u, s, r, st, ss, ls in rows]

    def set_status(self, name: str, status: str, since: float, last_seen: float | None) -> None:
        self._exec("UPDATE nodes SET status=?, status_since=?, last_seen=? WHERE name=?",
                   (status, since, last_seen, name))

    # ---- latest snapshots (so a restarted hub shows every node at once) -----------------------

    def save_latest(self, items: list[tuple[str, float, bytes]]) -> None:
        if not items:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO latest(node, timestamp, snapshot) VALUES (?,?,?) ON CONFLICT(node) DO UPDATE"
                " SET timestamp=excluded.timestamp, snapshot=excluded.snapshot WHERE excluded.timestamp > latest.timestamp",
                items,
            )
            self._db.execute("COMMIT")

    def load_latest(self) -> list[tuple[str, float, bytes]]:
        return [(n, t, bytes(b)) for n, t, b in self._exec("SELECT node, timestamp, snapshot FROM latest")]

    # ---- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._exec("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT INTO meta(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                   (key, value))
