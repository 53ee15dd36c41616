"""The hub's SQLite files (state, alerts) open the same way: WAL, shared across threads."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

log = logging.getLogger("gpufleet.hub")

PRIVATE_FILE = 0o600


def make_private(path: Path) -> None:
    """Create `path` (if missing) as 0600, or tighten it to 0600, whatever the umask.

    The hub's databases hold process tables, user names and credential hashes. SQLite gives
    its -wal and -shm files the mode of the database file, so a 0600 database keeps them 0600.
    An existing file is never opened here: closing any descriptor of a database drops this
    process's POSIX locks on it, which other connections (alerts, audit) rely on.
    """
    if not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE))
        except FileExistsError:
            pass  # another process created it meanwhile: tightened below
    for f in (path, *(path.with_name(path.name + side) for side in ("-wal", "-shm", "-journal"))):
        try:
            if stat.S_IMODE(f.stat().st_mode) != PRIVATE_FILE:
                os.chmod(f, PRIVATE_FILE)
        except FileNotFoundError:
            pass


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating) a database for use from several threads behind the caller's lock.

    WAL lets CLI commands (`gpufleet token create`) read and write beside a running hub;
    synchronous=NORMAL keeps commits cheap, and a crash loses at most the last commits.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    make_private(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db
