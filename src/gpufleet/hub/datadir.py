"""The hub's data directory: one hub at a time, and recognisable as a hub's.

A second hub on the same directory would share its SQLite files and fight over the store;
an exclusive lock (flock on DATA/.lock, released by the kernel when the process dies, so a
crash never leaves a stale lock) makes the second one stop with one clear line instead.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("gpufleet.hub")

LOCK_FILE = ".lock"
STATE_FILE = "hub.db"  # what every hub data directory holds from the first start


class DataDirInUse(Exception):
    def __init__(self, data: Path, pid: str) -> None:
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"the data directory {data} is in use by another hub{who}: stop it, or give this "
                         "one its own --data")


def lock(data: Path) -> int:
    """Hold DATA/.lock for this process; returns the descriptor. DataDirInUse if another has it."""
    fd = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise DataDirInUse(data, pid) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock(fd: int) -> None:
    os.close(fd)  # closing the descriptor releases the flock


PRIVATE_DIR = 0o700


def make_private_dir(data: Path) -> None:
    """Create the data directory 0700, or tighten an existing one to 0700, whatever the umask.

    It holds the fleet's process tables, history and the hub's secrets (credential hashes,
    the command signing key): nobody but the hub's user has business in it.
    """
    data.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    mode = stat.S_IMODE(data.stat().st_mode)
    if mode != PRIVATE_DIR:
        try:
            os.chmod(data, PRIVATE_DIR)
        except OSError as e:  # not ours to change (another owner): say so, and run on
            log.warning("data directory %s has mode %o and cannot be restricted to 0700: %s", data, mode,
                        e.strerror or e)
            return
        if mode & 0o077:
            log.warning("data directory %s was open to other users (mode %o); restricted it to 0700", data, mode)


def is_hub_data_dir(data: Path) -> bool:
    return (data / STATE_FILE).is_file()
