"""Accounts, sessions, API keys and one-time login links in hub.db (beside hub/state.py's tables).

Passwords are argon2 hashes; sessions, keys and links are random 256-bit secrets stored only as
SHA-256 hashes (high-entropy secrets need no slow hash), so a copy of hub.db lets no one in.
A key's or a session's role is read through its user's current role on every request: demoting
or removing a user takes effect at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..db import connect
from . import passwords
from .policy import Role

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
CREATE TABLE IF NOT EXISTS api_keys (
    hash TEXT PRIMARY KEY, prefix TEXT NOT NULL UNIQUE, user TEXT NOT NULL, role TEXT NOT NULL,
    created REAL NOT NULL, expires REAL, revoked REAL, note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS login_links (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL, expires REAL NOT NULL
);
"""

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SESSION_TTL = 7 * 86400.0
LINK_TTL = 600.0  # a one-time login link works for 10 minutes
KEY_PREFIX, SESSION_PREFIX, LINK_PREFIX = "gfk", "gfs", "gfl"


class AuthError(ValueError):
    """A request the store refuses, with a message for the user."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    created: float


@dataclass(frozen=True, slots=True)
class ApiKey:
    prefix: str
    user: str
    role: Role
    created: float
    expires: float | None
    revoked: float | None
    note: str


class AuthStore:
    """Thread-safe; the hub and CLI commands (`gpufleet user add`) share one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path, SCHEMA)
        self._open = True
        self._lock = threading.Lock()

    def open(self) -> None:
        """Reconnect after close(); a no-op while open."""
        with self._lock:
            if not self._open:
                self._db = connect(self.path, SCHEMA)
                self._open = True

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._open = False

    def _exec(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _change(self, sql: str, args: tuple[object, ...] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # ---- users ----------------------------------------------------------------------------------

    def add_user(self, name: str, role: Role, password: str) -> User:
        if not USER_NAME.match(name):
            raise AuthError(f"user name {name!r} must be 1-64 letters, digits, . _ @ - (starting with a letter or digit)")
        why = passwords.check_new(password)
        if why:
            raise AuthError(why)
        hashed = passwords.hash_password(password)
        now = time.time()
        with self._lock:
            if self._db.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchall():
                raise AuthError(f"user {name!r} exists already: change the password with `gpufleet user passwd {name}`")
            self._db.execute("INSERT INTO users(name, role, password, created) VALUES (?,?,?,?)",
                             (name, role.label, hashed, now))
        return User(name, role, now)

    def users(self) -> list[User]:
        return [User(n, Role.parse(r), c) for n, r, c in self._exec("SELECT name, role, created FROM users ORDER BY name")]

    def user(self, name: str) -> User | None:
        rows = self._exec("SELECT name, role, created FROM users WHERE name=?", (name,))
        return User(rows[0][0], Role.parse(rows[0][1]), rows[0][2]) if rows else None

    def count_admins(self) -> int:
        return int(self._exec("SELECT count(*) FROM users WHERE role='admin'")[0][0])

    def count_users(self) -> int:
        return int(self._exec("SELECT count(*) FROM users")[0][0])

    def remove_user(self, name: str) -> bool:
        """Remove the account with its sessions, keys and links: nothing of it works any more."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                n = self._db.execute("DELETE FROM users WHERE name=?", (name,)).rowcount
                for table in ("sessions", "api_keys", "login_links"):
                    self._db.execute(f"DELETE FROM {table} WHERE user=?", (name,))  # noqa: S608 (fixed names)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return n > 0

    def set_password(self, name: str, password: str) -> None:
        """New password; every session of the account ends (its keys stay: revoke them apart)."""
        why = passwords.check_new(password)
        if why:
            raise AuthError(why)
        hashed = passwords.hash_password(password)
        with self._lock:
            if not self._db.execute("UPDATE users SET password=? WHERE name=?", (hashed, name)).rowcount:
                raise AuthError(f"no user {name!r}: see `gpufleet user list`")
            self._db.execute("DELETE FROM sessions WHERE user=?", (name,))

    def check_password(self, name: str, password: str) -> User | None:
        rows = self._exec("SELECT role, password, created FROM users WHERE name=?", (name,))
        stored = rows[0][1] if rows else None
        if not passwords.verify(stored, password) or not rows:
            return None
        if passwords.needs_rehash(rows[0][1]):
            self._change("UPDATE users SET password=? WHERE name=?", (passwords.hash_password(password), name))
        return User(name, Role.parse(rows[0][0]), rows[0][2])

    # ---- sessions -------------------------------------------------------------------------------

    def new_session(self, user: str, ttl: float = SESSION_TTL) -> str:
        token = _secret(SESSION_PREFIX)
        now = time.time()
        self._exec("DELETE FROM sessions WHERE expires < ?", (now,))
        self._exec("INSERT INTO sessions(hash, user, created, expires) VALUES (?,?,?,?)",
                   (digest(token), user, now, now + ttl))
        return token

    def session_user(self, token: str) -> User | None:
        rows = self._exec("SELECT u.name, u.role, u.created FROM sessions s JOIN users u ON u.name = s.user"
                          " WHERE s.hash=? AND s.expires > ?", (digest(token), time.time()))
        return User(rows[0][0], Role.parse(rows[0][1]), rows[0][2]) if rows else None

    def end_session(self, token: str) -> None:
        self._exec("DELETE FROM sessions WHERE hash=?", (digest(token),))

    def end_sessions(self, user: str) -> int:
        return self._change("DELETE FROM sessions WHERE user=?", (user,))

    # ---- API keys -------------------------------------------------------------------------------

    def create_key(self, user: str, role: Role | None = None, expires: float | None = None, note: str = "") -> str:
        """A new key for `user`, at most the user's role (default: the user's role)."""
        u = self.user(user)
        if u is None:
            raise AuthError(f"no user {user!r}: create one with `gpufleet user add {user} --role ROLE`")
        role = u.role if role is None else role
        if role > u.role:
            raise AuthError(f"{user} is a {u.role.label}: a key cannot be {role.label}")
        key = _secret(KEY_PREFIX)
        self._exec("INSERT INTO api_keys(hash, prefix, user, role, created, expires, note) VALUES (?,?,?,?,?,?,?)",
                   (digest(key), key[:12], user, role.label, time.time(), expires, note))
        return key

    def key_user(self, key: str) -> tuple[User, Role] | None:
        """The key's user and the role it acts with (the lower of the key's and the user's)."""
        rows = self._exec("SELECT u.name, u.role, u.created, k.role FROM api_keys k JOIN users u ON u.name = k.user"
                          " WHERE k.hash=? AND k.revoked IS NULL AND (k.expires IS NULL OR k.expires > ?)",
                          (digest(key), time.time()))
        if not rows:
            return None
        u = User(rows[0][0], Role.parse(rows[0][1]), rows[0][2])
        return u, min(u.role, Role.parse(rows[0][3]))

    def keys(self, user: str | None = None) -> list[ApiKey]:
        sql = "SELECT prefix, user, role, created, expires, revoked, note FROM api_keys"
        rows = self._exec(sql + (" WHERE user=?" if user else "") + " ORDER BY created", (user,) if user else ())
        return [ApiKey(p, u, Role.parse(r), c, e, rv, n) for p, u, r, c, e, rv, n in rows]

    def revoke_key(self, key_or_prefix: str) -> int:
        return self._change("UPDATE api_keys SET revoked=? WHERE (hash=? OR prefix=?) AND revoked IS NULL",
                            (time.time(), digest(key_or_prefix), key_or_prefix[:12]))

    # ---- one-time login links (`gpufleet up`) ---------------------------------------------------

    def new_link(self, user: str, ttl: float = LINK_TTL) -> str:
        token = _secret(LINK_PREFIX)
        self._exec("INSERT INTO login_links(hash, user, expires) VALUES (?,?,?)", (digest(token), user, time.time() + ttl))
        return token

    def use_link(self, token: str) -> User | None:
        """The link's user, once: the link is deleted whether or not it was still valid."""
        h = digest(token)
        with self._lock:
            rows = self._db.execute("DELETE FROM login_links WHERE hash=? RETURNING user, expires", (h,)).fetchall()
        if not rows or rows[0][1] <= time.time():
            return None
        return self.user(rows[0][0])
