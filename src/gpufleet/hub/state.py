"""The hub's state in SQLite (WAL): join tokens, nodes and their credentials, labels, status.

Secrets are stored only as SHA-256 hashes: a stolen database does not let anyone push as
a node. Tokens are random 256-bit values with a readable prefix (gft_ join, gfn_ node).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, prefix TEXT NOT NULL, created REAL NOT NULL, note TEXT NOT NULL DEFAULT '',
    revoked REAL, uses_left INTEGER, expires REAL, used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY, credential_hash TEXT, labels TEXT NOT NULL DEFAULT '{}',
    agent_url TEXT, source TEXT NOT NULL DEFAULT 'push', registered REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'up', status_since REAL NOT NULL, last_seen REAL, revoked REAL
);
CREATE TABLE IF NOT EXISTS latest (
    node TEXT PRIMARY KEY, timestamp REAL NOT NULL, snapshot BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Columns added after the first release: (table, column, declaration). Older hub.db files get
# them on open, so an upgrade needs no manual step.
ADDED_COLUMNS = (
    ("tokens", "uses_left", "INTEGER"),
    ("tokens", "expires", "REAL"),
    ("tokens", "used", "INTEGER NOT NULL DEFAULT 0"),
    ("nodes", "revoked", "REAL"),
    ("nodes", "advertised", "INTEGER NOT NULL DEFAULT 0"),  # agent_url from --advertise: trusted as given
)
INDEXES = "CREATE INDEX IF NOT EXISTS nodes_credential ON nodes(credential_hash);"
PREFIX_LEN = 12  # "gft_" + 8 characters: shown by `token list`, accepted by `token revoke`


class RegisterRefused(Exception):
    """A registration the hub refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# What a damaged hub.db loses, and what the user does about it (the hub's error line says it).
LOST = ("join tokens, node registrations and credentials, labels and status. Agents must register "
        "again: restart each with --token and the new join token this hub prints (or make one with "
        "`gpufleet token create`); history in the store is kept")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


JOIN_TOKEN = re.compile(r"gft_[A-Za-z0-9_-]{43}")  # new_secret("gft"): 32 random bytes, URL-safe base64

# The hub's own secrets as they appear in text: token_urlsafe's alphabet needs no JSON escape.
_OWN_SECRET = re.compile(rb"(gf[tn])_[A-Za-z0-9_-]{16,}")


def scrub_own_secrets(data: bytes) -> bytes:
    """Replace any join token or node credential in `data` (a pushed snapshot's JSON) by a mask.

    Agents mask command lines themselves; this is the hub's own guard for older agents or
    masking turned off, so the hub never stores (hub.db, the store) or serves its own secrets.
    """
    return _OWN_SECRET.sub(rb"\1_***", data) if b"gf" in data else data


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
    revoked: float | None = None
    advertised: bool = False  # the agent's --advertise gave agent_url (even a loopback one is meant)


class HubState:
    """Thread-safe: FastAPI handlers, the ingest path and CLI commands share one file.

    Node credentials are checked on every push from memory (`_known`: credential hash -> node,
    filled from the file). What changes them through this object (register, revoke, forget)
    drops its node's entries once committed; CLI commands (`gpufleet node revoke`) change the
    file beside a running hub, which the writer connection's data_version shows (it moves only
    for other connections' commits): `node_for_credential` looks at it first and starts over
    when it moved, so a revocation counts from the very next push either way.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path, SCHEMA, LOST)
        self._lock = threading.Lock()
        self._migrate()
        # Credential checks on every push read through their own connection: WAL lets them run
        # beside a long write (saving 1,000 latest snapshots) instead of waiting for its lock.
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._read_lock = threading.Lock()
        self._known: dict[str, str] = {}
        self._known_hash: dict[str, str] = {}  # node -> its entry in _known (one credential each)
        self._known_lock = threading.Lock()
        self._known_gen = 0  # moves with every drop: a lookup that raced one does not store its stale answer
        self._known_version = self.data_version()

    def _migrate(self) -> None:
        for table, column, decl in ADDED_COLUMNS:
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        self._db.executescript(INDEXES)

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return self._reader.execute(sql, args).fetchall()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def data_version(self) -> int:
        """Changes whenever another connection (a CLI command) committed to the file."""
        return int(self._exec("PRAGMA data_version")[0][0])

    # ---- join tokens ------------------------------------------------------------------------

    def create_token(self, note: str = "", uses: int | None = None, expires: float | None = None,
                     value: str | None = None) -> str:
        """A new join token: `uses` registrations at most (None: any), valid until `expires` (Unix).

        `value`: accept a token another hub made (several hubs sharing a fleet: an agent joins any
        of them with one secret). It must look like one of ours, so a weak password never becomes one.
        """
        token = new_secret("gft") if value is None else value
        if value is not None:
            if not JOIN_TOKEN.fullmatch(value):
                raise ValueError("not a join token: expected gft_ and 43 characters, as `gpufleet token create` prints")
            if self._exec("SELECT 1 FROM tokens WHERE hash=?", (_hash(value),)):
                raise ValueError("this hub knows that join token already (see `gpufleet token list`)")
        self._exec("INSERT INTO tokens(hash, prefix, created, note, uses_left, expires) VALUES (?,?,?,?,?,?)",
                   (_hash(token), token[:PREFIX_LEN], time.time(), note, uses, expires))
        return token

    def token_problem(self, token: str, now: float | None = None) -> str | None:
        """None when `token` may register a node now, else why not (for the 401's message)."""
        with self._read_lock:
            return self._token_problem(token, now, self._reader)

    def _token_problem(self, token: str, now: float | None, db: sqlite3.Connection | None = None) -> str | None:
        rows = (db or self._db).execute("SELECT revoked, uses_left, expires FROM tokens WHERE hash=?",
                                        (_hash(token),)).fetchall()
        if not rows:
            return "unknown or revoked join token"
        revoked, uses_left, expires = rows[0]
        now = time.time() if now is None else now
        if revoked is not None:
            return "unknown or revoked join token"
        if expires is not None and expires <= now:
            return "join token expired"
        if uses_left is not None and uses_left <= 0:
            return "join token used up (its --uses are spent)"
        return None

    def token_valid(self, token: str) -> bool:
        return self.token_problem(token) is None

    def revoke_token(self, prefix_or_token: str) -> int:
        """Revoke by the whole token or by the prefix `token list` shows (trailing dots allowed)."""
        now = time.time()
        text = prefix_or_token.strip().rstrip(".")
        with self._lock:
            cur = self._db.execute("UPDATE tokens SET revoked=? WHERE revoked IS NULL AND (hash=? OR prefix=?)",
                                   (now, _hash(text), text))
            return cur.rowcount

    def tokens(self) -> list[dict[str, object]]:
        rows = self._exec("SELECT prefix, created, note, revoked, uses_left, expires, used FROM tokens"
                          " ORDER BY created")
        return [{"prefix": p, "created": c, "note": n, "revoked": r, "uses_left": u, "expires": e, "used": d}
                for p, c, n, r, u, e, d in rows]

    # ---- nodes -----------------------------------------------------------------------------

    def register(self, name: str, labels: dict[str, str], agent_url: str | None, *,
                 token: str | None = None, credential: str | None = None, now: float | None = None,
                 advertised: bool = False) -> str:
        """(Re)register a pushing node; returns its new credential (old ones stop working).

        A name some agent registered is that agent's: it registers again only by showing its
        own current `credential`. A join `token` registers a name nobody holds (new, forgotten,
        or one the hub only pulls), and each such use counts against the token's --uses.
        Raises RegisterRefused; the check and the write are one transaction, so two agents
        racing for one name or the last use of a token cannot both win.
        """
        now = time.time() if now is None else now
        cred = new_secret("gfn")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT credential_hash, revoked FROM nodes WHERE name=?",
                                       (name,)).fetchall()
                # A name the hub only pulls (targets file) holds no credential: an agent may take it.
                held, revoked = row[0] if row else (None, None)
                own = held is not None and credential is not None and _hash(credential) == held
                if revoked is not None:
                    raise RegisterRefused(403, f"node {name!r} was revoked by an admin: it can join again "
                                          f"only after `gpufleet node forget {name}` on the hub")
                if held is not None and not own:
                    raise RegisterRefused(409, f"node name {name!r} is already registered to another agent: "
                                          "re-register with that node's own credential, pick another --node, "
                                          f"or have an admin run `gpufleet node forget {name}` on the hub")
                if not own:
                    problem = self._token_problem(token, now) if token is not None else "no join token"
                    if problem is not None:
                        raise RegisterRefused(401, f"{problem}: create one on the hub with `gpufleet token create`")
                    self._db.execute("UPDATE tokens SET used=used+1, uses_left=CASE WHEN uses_left IS NULL"
                                     " THEN NULL ELSE uses_left-1 END WHERE hash=?", (_hash(token or ""),))
                self._db.execute(
                    "INSERT INTO nodes(name, credential_hash, labels, agent_url, source, registered, status,"
                    " status_since, advertised) VALUES (?,?,?,?, 'push', ?, 'up', ?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET credential_hash=excluded.credential_hash,"
                    " labels=excluded.labels, agent_url=excluded.agent_url, source='push',"
                    " advertised=excluded.advertised",
                    (name, _hash(cred), json.dumps(labels), agent_url, now, now, int(advertised)),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        self._drop_known(name)
        return cred

    def credential_holder(self, credential: str) -> str | None:
        """The node a credential currently belongs to, if any (revoked ones belong to none)."""
        h = _hash(credential)
        if self._unchanged_elsewhere():
            node = self._known.get(h)
            if node is not None:
                return node
        gen = self._known_gen
        rows = self._read("SELECT name FROM nodes WHERE credential_hash=? AND revoked IS NULL", (h,))
        if not rows:
            return None
        node = rows[0][0]
        with self._known_lock:
            if gen == self._known_gen:
                old = self._known_hash.get(node)
                if old is not None and old != h:
                    self._known.pop(old, None)
                self._known[h] = node
                self._known_hash[node] = h
        return str(node)

    def known_node(self, credential: str) -> str | None:
        """The node a credential belonged to when last checked, from memory only (no file access,
        so the event loop may ask): a hint to read a push body; credential_holder decides."""
        return self._known.get(_hash(credential))

    def _unchanged_elsewhere(self) -> bool:
        """False when another connection (a CLI command) committed since the last look, or when a
        long write holds the writer connection so that nobody can look now."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
        finally:
            self._lock.release()
        if version == self._known_version:
            return True
        with self._known_lock:
            self._known_version = version
            self._known.clear()
            self._known_hash.clear()
            self._known_gen += 1
        return False

    def _drop_known(self, name: str) -> None:
        """After a commit that changed `name`'s credential: its old one is not taken from memory."""
        with self._known_lock:
            self._known_gen += 1
            h = self._known_hash.pop(name, None)
            if h is not None:
                self._known.pop(h, None)

    def upsert_pulled(self, name: str, labels: dict[str, str], url: str) -> None:
        now = time.time()
        self._exec(
            "INSERT INTO nodes(name, labels, agent_url, source, registered, status, status_since)"
            " VALUES (?,?,?, 'pull', ?, 'up', ?) ON CONFLICT(name) DO UPDATE SET labels=excluded.labels,"
            " agent_url=excluded.agent_url",
            (name, json.dumps(labels), url, now, now),
        )

    def node_for_credential(self, credential: str) -> str | None:
        return self.credential_holder(credential)

    def revoke_node(self, name: str, now: float | None = None) -> bool:
        """The node's credential stops working at once; its name stays taken until forgotten."""
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute("UPDATE nodes SET credential_hash=NULL, revoked=? WHERE name=?", (now, name))
        self._drop_known(name)
        return cur.rowcount > 0

    def forget_node(self, name: str) -> bool:
        """Remove the node (registration, labels, latest snapshot): its name is free to join again."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute("DELETE FROM nodes WHERE name=?", (name,))
            self._db.execute("DELETE FROM latest WHERE node=?", (name,))
            self._db.execute("COMMIT")
        self._drop_known(name)
        return cur.rowcount > 0

    def node_names(self) -> set[str]:
        return {r[0] for r in self._exec("SELECT name FROM nodes")}

    def nodes(self) -> list[NodeRecord]:
        rows = self._exec("SELECT name, labels, agent_url, source, registered, status, status_since, last_seen,"
                          " revoked, advertised FROM nodes ORDER BY name")
        return [NodeRecord(n, json.loads(lb), u, s, r, st, ss, ls, rv, bool(ad))
                for n, lb, u, s, r, st, ss, ls, rv, ad in rows]

    def set_status(self, name: str, status: str, since: float, last_seen: float | None) -> None:
        self._exec("UPDATE nodes SET status=?, status_since=?, last_seen=? WHERE name=?",
                   (status, since, last_seen, name))

    # ---- latest snapshots (so a restarted hub shows every node at once) -----------------------

    def save_nodes(self, statuses: list[tuple[str, str, float, float | None]],
                   latest: list[tuple[str, float, bytes]]) -> None:
        """Nodes' (name, status, since, last_seen) and latest snapshots (name, timestamp, JSON) in one
        transaction: one WAL commit a round, not one per node."""
        if not statuses and not latest:
            return
        packed = [(n, t, zlib.compress(data, 1)) for n, t, data in latest]  # ~7x smaller: less to write
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("UPDATE nodes SET status=?, status_since=?, last_seen=? WHERE name=?",
                                     [(st, since, seen, n) for n, st, since, seen in statuses])
                self._db.executemany(
                    "INSERT INTO latest(node, timestamp, snapshot) VALUES (?,?,?) ON CONFLICT(node) DO UPDATE"
                    " SET timestamp=excluded.timestamp, snapshot=excluded.snapshot"
                    " WHERE excluded.timestamp > latest.timestamp",
                    packed,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def save_latest(self, items: list[tuple[str, float, bytes]]) -> None:
        self.save_nodes([], items)

    def load_latest(self) -> list[tuple[str, float, bytes]]:
        """(node, timestamp, snapshot JSON); saved zlib-compressed, or plain by older hubs."""
        return [(n, t, _unpack(bytes(b))) for n, t, b in self._exec("SELECT node, timestamp, snapshot FROM latest")]

    # ---- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._exec("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT INTO meta(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                   (key, value))


def _unpack(blob: bytes) -> bytes:
    """A saved snapshot as JSON: older hubs saved it plain (it starts with '{'), newer ones zlib'd."""
    if blob[:1] == b"{":
        return blob
    try:
        return zlib.decompress(blob)
    except zlib.error:
        return blob  # the caller's decode reports it as unreadable
