"""The hub's SQLite files (state, alerts) open the same way: WAL, shared across threads.

A damaged file never stops the hub: it is checked at open (`PRAGMA quick_check`), and one
that is not a database or fails the check is set aside as `NAME.corrupt-<UTC time>` with
one error line naming it and what was lost, and a fresh one is created.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from pathlib import Path

log = logging.getLogger("gpufleet.hub")

PRIVATE_FILE = 0o600
# SQLite result codes that mean the file itself is damaged (not busy, not a permission problem).
DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class Damaged(sqlite3.DatabaseError):
    """quick_check found damage."""


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


def connect(path: Path, schema: str, lost: str = "") -> sqlite3.Connection:
    """Open (creating) a database for use from several threads behind the caller's lock.

    WAL lets CLI commands (`gpufleet token create`) read and write beside a running hub;
    synchronous=NORMAL keeps commits cheap, and a crash loses at most the last commits.
    `lost` says, for the error line, what a damaged file held and what the user must do.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return _open(path, schema)
    except sqlite3.DatabaseError as e:
        if not isinstance(e, Damaged) and getattr(e, "sqlite_errorcode", None) not in DAMAGED:
            raise
        aside = set_aside(path)
        log.error("%s is damaged (%s): moved it aside as %s and started a fresh one; lost: %s",
                  path, e, aside.name, lost or "its contents")
        return _open(path, schema)


def _open(path: Path, schema: str) -> sqlite3.Connection:
    make_private(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # quick_check reads every page but skips index cross-checks: milliseconds for the hub's files.
        problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise Damaged(f"quick_check: {'; '.join(problems[:3])}")
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


def set_aside(path: Path) -> Path:
    """Rename a damaged database (and its WAL) to NAME.corrupt-<UTC time>; returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            if suffix == "-wal":
                extra.rename(aside.with_name(aside.name + suffix))
            else:
                extra.unlink()  # shared-memory index: rebuilt from the WAL, never data
    return aside
