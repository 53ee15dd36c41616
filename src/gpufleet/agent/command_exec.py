"""Run one allowed command: no shell, as the configured user, in its own process group.

The process starts in a new session, so a timeout or a cancel kills everything it started
(`killpg`), and so do its leftovers once it exits. stdout and stderr are read to the end (on the
command's own thread, with a selector) but only their first 64 KB are kept,
with a marker saying how much was cut. The environment is a fixed minimal one, so nothing of the
agent's own (its join token, for one) reaches the command.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from typing import Any

from ..command_wire import MAX_OUTPUT
from .command_policy import RunAs

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHUNK = 65536


class Capture:
    """The first MAX_OUTPUT bytes of one pipe, and how many bytes came through it in all."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = MAX_OUTPUT - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    def text(self) -> str:
        out = self.kept.decode("utf-8", errors="replace")
        if self.total > len(self.kept):
            out += f"\n[gpufleet: output truncated: {self.total} bytes in all, first {len(self.kept)} kept]\n"
        return out


def _drain(proc: subprocess.Popen[bytes], timeout: float) -> tuple[Capture, Capture, bool]:
    """Read stdout and stderr to their ends on this thread (no reader threads per command).

    Returns (stdout, stderr, timed_out). When the command exits, what it left running in its
    group is killed (a background job would otherwise hold the pipes open); at the timeout the
    whole group is. Either closes the pipes, so this always returns.
    """
    caps = {proc.stdout: Capture(), proc.stderr: Capture()}
    deadline = time.monotonic() + timeout
    timed_out = killed = False
    with selectors.DefaultSelector() as sel:
        for pipe in caps:
            sel.register(pipe, selectors.EVENT_READ)  # type: ignore[arg-type]
        while sel.get_map():
            if not killed:
                if proc.poll() is not None:
                    _kill_group(proc.pid)
                    killed = True
                elif time.monotonic() >= deadline:
                    _kill_group(proc.pid)
                    killed = timed_out = True
            wait = 1.0 if killed else min(0.1, max(0.0, deadline - time.monotonic()))
            for key, _ in sel.select(wait):
                chunk = os.read(key.fd, CHUNK)
                if chunk:
                    caps[key.fileobj].add(chunk)  # type: ignore[index]
                else:
                    sel.unregister(key.fileobj)
    return caps[proc.stdout], caps[proc.stderr], timed_out


class Executor:
    def __init__(self, run_as: RunAs, max_running: int = 8) -> None:
        self.run_as = run_as
        self.max_running = max_running
        self._running: dict[str, subprocess.Popen[bytes] | None] = {}  # None: starting
        # Cancels by id, also of commands not started yet: a cancel can overtake its command
        # (it arrives on the next poll while the command's thread is still starting it).
        self._cancelled: dict[str, float] = {}
        self._lock = threading.Lock()

    def _env(self) -> dict[str, str]:
        u = self.run_as
        return {"PATH": PATH, "HOME": u.home or "/", "USER": u.name, "LOGNAME": u.name, "LANG": "C.UTF-8"}

    def busy(self) -> bool:
        with self._lock:
            return len(self._running) >= self.max_running

    def run(self, run_id: str, argv: list[str], timeout: float) -> dict[str, Any]:
        """Run to the end, the timeout, or a cancel; returns the result body for the hub."""
        u = self.run_as
        started = time.monotonic()
        with self._lock:
            if self._cancelled.pop(run_id, None) is not None:
                return {"status": "cancelled", "reason": "cancelled before it started", "duration": 0.0}
            self._running[run_id] = None
        try:
            return self._run(run_id, argv, timeout, started)
        finally:
            with self._lock:
                self._running.pop(run_id, None)
                self._cancelled.pop(run_id, None)

    def _run(self, run_id: str, argv: list[str], timeout: float, started: float) -> dict[str, Any]:
        u = self.run_as
        cwd = u.home if u.home and os.path.isdir(u.home) else "/"
        kw: dict[str, Any] = {"user": u.uid, "group": u.gid, "extra_groups": []} if u.switch else {}
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    cwd=cwd, env=self._env(), start_new_session=True, close_fds=True, **kw)
        except FileNotFoundError:
            return {"status": "error", "reason": f"{argv[0]}: command not found (PATH {PATH})",
                    "duration": time.monotonic() - started}
        except OSError as e:
            return {"status": "error", "reason": f"{argv[0]}: cannot start: {e.strerror or e}",
                    "duration": time.monotonic() - started}
        with self._lock:
            self._running[run_id] = proc
            if run_id in self._cancelled:  # cancelled while it was being started
                _kill_group(proc.pid)
        try:
            out, err, timed_out = _drain(proc, timeout)
            # Pipes at their end: the command exited, or closed them and runs on until the timeout.
            if not timed_out:
                try:
                    proc.wait(max(0.0, timeout - (time.monotonic() - started)))
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            _kill_group(proc.pid)  # the timeout, or leftovers of a command that has exited
            proc.wait()
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()
            with self._lock:
                cancelled = run_id in self._cancelled
        duration = time.monotonic() - started
        result: dict[str, Any] = {"exit_code": proc.returncode, "duration": round(duration, 4),
                                  "stdout": out.text(), "stderr": err.text(),
                                  "stdout_bytes": out.total, "stderr_bytes": err.total}
        if cancelled:
            result.update(status="cancelled", exit_code=None, reason="cancelled: process group killed")
        elif timed_out:
            result.update(status="timeout", exit_code=None,
                          reason=f"timed out after {timeout:g} s: process group killed")
        else:
            result["status"] = "ok" if proc.returncode == 0 else "failed"
        return result

    def cancel(self, run_id: str) -> bool:
        """Kill the command if it runs, or keep it from starting; True when it was running."""
        now = time.monotonic()
        with self._lock:
            if len(self._cancelled) > 1000:  # cancels of commands that never came: forget old ones
                self._cancelled = {k: t for k, t in self._cancelled.items() if now - t < 600}
            self._cancelled[run_id] = now
            proc = self._running.get(run_id)
        if proc is not None:
            _kill_group(proc.pid)
        return proc is not None

    def cancel_all(self) -> None:
        with self._lock:
            ids = list(self._running)
        for run_id in ids:
            self.cancel(run_id)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
