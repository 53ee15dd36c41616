"""The hub's SQLite files (state, alerts) open the same way: WAL, shared across threads."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating) a database for use from several threads behind the caller's lock.

    WAL lets CLI commands (`gpufleet token create`) read and write beside a running hub;
    synchronous=NORMAL keeps commits cheap, and a crash loses at most the last commits.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db
