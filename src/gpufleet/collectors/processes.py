"""The full process table, read straight from /proc because it is the agent's hot path.

psutil's process_iter with user and command costs ~71 us a process; here a known process
costs one read of /proc/PID/stat per collection (state, ppid, CPU times, start time, RSS).
What cannot change while a process lives is read once and cached under (pid, start time):
user (real uid from status), name and command line (cmdline), and owner (cgroup, environ).
An exec keeps the pid and start time but changes the comm in stat, so a changed comm
refreshes the cached entry. Cache entries of vanished pids are dropped every round.
"""

from __future__ import annotations

import os
import pwd
import socket
import time
from collections.abc import Callable

from .. import attribution, procfs
from ..masking import DEFAULT_PATTERNS, Masker
from ..snapshot import NodeSnapshot, Owner, Process
from .base import CollectContext

# /proc/PID/stat state letters, as the words psutil and `ps` users know.
STATES = {
    "R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop",
    "Z": "zombie", "X": "dead", "x": "dead", "I": "idle", "P": "parked", "W": "waking", "K": "wakekill",
}
# The kernel truncates comm to 15 bytes (TASK_COMM_LEN - 1).
COMM_LEN = 15


def boottime_clock() -> float:
    """Seconds since boot, the clock /proc/PID/stat's starttime is counted in."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_name(comm: str, argv: list[str]) -> str:
    """comm, or the full executable name when comm is its 15-byte truncation."""
    if len(comm.encode()) >= COMM_LEN and argv:
        exe = os.path.basename(argv[0].split(" ", 1)[0])
        if exe.startswith(comm):
            return exe
    return comm


def command_line(comm: str, argv: list[str]) -> str:
    # Kernel threads and zombies have no argv; `ps` shows them as [name].
    return " ".join(argv) if argv else f"[{comm}]"


class _Entry:
    """What is cached for one process: its identity and the CPU ticks at the last round."""

    __slots__ = ("starttime", "comm", "user", "name", "command", "owner", "started", "ticks")

    def __init__(self, starttime: int, comm: str, user: str, name: str, command: str,
                 owner: Owner | None, started: float) -> None:
        self.starttime = starttime
        self.comm = comm
        self.user = user
        self.name = name
        self.command = command
        self.owner = owner
        self.started = started
        self.ticks = -1  # -1: not seen in an earlier round


class ProcessCollector:
    name = "processes"

    def __init__(self, ctx: CollectContext, clock: Callable[[], float] = boottime_clock) -> None:
        self._root = str(ctx.procfs)
        self._clock = clock
        self._read_environ = bool(ctx.options.get("processes.environ", True))
        # Secrets in command lines never leave the node (masking.py); on unless told otherwise.
        patterns = ctx.options.get("processes.mask", DEFAULT_PATTERNS)
        self._masker = Masker(patterns)  # type: ignore[arg-type]
        self._boot = procfs.read_boot_time(ctx.procfs) or 0.0
        hostname = procfs.read_text(ctx.procfs / "sys" / "kernel" / "hostname")
        self._hostname = hostname.strip() if hostname else socket.gethostname()
        self._cache: dict[int, _Entry] = {}
        self._users: dict[int, str] = {}
        self._prev: float | None = None
        # A first scan as the baseline, so the first collection already has CPU shares. An
        # unreadable /proc is reported by collect(), not here: building never fails the agent.
        try:
            self._scan()
        except RuntimeError:
            pass

    def _username(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)  # a uid without a passwd entry (container users): keep the number
            self._users[uid] = name
        return name

    def _new_entry(self, base: str, starttime: int, comm: str) -> _Entry | None:
        """Read the once-per-process files; None when the process vanished meanwhile."""
        status = procfs.read_bytes(base + "/status")
        cmdline = procfs.read_bytes(base + "/cmdline")
        if status is None or cmdline is None:
            return None
        uid = procfs.parse_status_uid(status)
        user = self._username(uid) if uid is not None else ""
        argv = self._masker.mask(procfs.parse_cmdline(cmdline))
        # cgroup is world-readable; environ only for our own user or root: owner is best effort.
        cgroup = procfs.read_bytes(base + "/cgroup")
        environ = procfs.read_bytes(base + "/environ") if self._read_environ else None
        owner = attribution.attribute(
            cgroup.decode("utf-8", "replace") if cgroup else None, environ, self._hostname
        )
        started = self._boot + starttime / procfs.CLOCK_TICKS if self._boot else 0.0
        return _Entry(starttime, comm, user, process_name(comm, argv), command_line(comm, argv), owner, started)

    def _scan(self) -> list[Process]:
        root = self._root
        now = self._clock()
        interval = now - self._prev if self._prev is not None else None
        old = self._cache
        cache: dict[int, _Entry] = {}
        out: list[Process] = []
        tck = procfs.CLOCK_TICKS
        page = procfs.PAGE_SIZE
        states = STATES
        parse_stat = procfs.parse_pid_stat
        o_open, o_read, o_close, rdonly = os.open, os.read, os.close, os.O_RDONLY
        try:
            names = os.listdir(root)
        except OSError as e:
            raise RuntimeError(f"cannot list {root}: {e}") from e
        self._prev = now
        for n in names:
            if not n.isdigit():
                continue
            base = f"{root}/{n}"
            # One read of stat per process and round (it is < 1 KiB, so one read returns it all).
            try:
                fd = o_open(base + "/stat", rdonly)
                try:
                    data = o_read(fd, 4096)
                finally:
                    o_close(fd)
                comm, state, ppid, utime, stime, starttime, rss = parse_stat(data)
            except (OSError, ValueError, IndexError):
                continue  # vanished between listdir and read, or unreadable
            ticks = utime + stime
            pid = int(n)
            entry = old.get(pid)
            if entry is None or entry.starttime != starttime or entry.comm != comm:
                entry = self._new_entry(base, starttime, comm)
                if entry is None:
                    continue
            prev_ticks = entry.ticks
            entry.ticks = ticks
            cache[pid] = entry
            cpu_ratio = 0.0
            if interval is not None and interval > 0:
                if prev_ticks >= 0:
                    cpu_ratio = (ticks - prev_ticks) / tck / interval
                else:
                    # Started since the last round: all its CPU time falls within its short life.
                    # One that is older but unseen (unreadable last round) has no baseline: 0.
                    alive = now - starttime / tck
                    if 0 < alive <= interval:
                        cpu_ratio = ticks / tck / alive
            out.append(Process(
                pid=pid, ppid=ppid, user=entry.user, name=entry.name, command=entry.command,
                state=states.get(state, state), cpu_ratio=max(0.0, cpu_ratio),
                memory_bytes=rss * page, cpu_seconds=ticks / tck, started=entry.started, owner=entry.owner,
            ))
        self._cache = cache
        return out

    def collect(self, snap: NodeSnapshot) -> None:
        snap.processes = self._scan()
        snap.values["processes"] = float(len(snap.processes))
