"""Run one allowed command: no shell, as the configured user, in its own process group.

The process starts in a new session, so a timeout or a cancel kills everything it started
(`killpg`), and so do its leftovers once it exits: a command cannot leave a background job holding
the agent's pipes. stdout and stderr are read to the end but only their first 64 KB are kept,
with a marker saying how much was cut. The environment is a fixed minimal one, so nothing of the
agent's own (its join token, for one) reaches the command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import IO, Any

from ..command_wire import MAX_OUTPUT
from .command_policy import RunAs

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHUNK = 65536


class Capture:
    """The first MAX_OUTPUT bytes of a pipe, read to its end in a thread."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.kept = bytearray()
        self.total = 0
        self._pipe = pipe
        self.thread = threading.Thread(target=self._read, daemon=True, name="gpufleet-cmd-out")
        self.thread.start()

    def _read(self) -> None:
        try:
            while chunk := self._pipe.read1(CHUNK):  # type: ignore[attr-defined]
                self.total += len(chunk)
                room = MAX_OUTPUT - len(self.kept)
                if room > 0:
                    self.kept += chunk[:room]
        except (OSError, ValueError):
            pass
        finally:
            self._pipe.close()

    def text(self) -> str:
        out = self.kept.decode("utf-8", errors="replace")
        if self.total > len(self.kept):
            out += f"\n[gpufleet: output truncated: {self.total} bytes in all, first {len(self.kept)} kept]\n"
        return out


class Executor:
    def __init__(self, run_as: RunAs, max_running: int = 8) -> None:
        self.run_as = run_as
        self.max_running = max_running
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._cancelled: set[str] = set()
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
        out, err = Capture(proc.stdout), Capture(proc.stderr)  # type: ignore[arg-type]
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc.pid)  # the timeout, or leftovers of a command that has exited
            proc.wait()
            with self._lock:
                self._running.pop(run_id, None)
                cancelled = run_id in self._cancelled
                self._cancelled.discard(run_id)
        out.thread.join(5)
        err.thread.join(5)
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
        with self._lock:
            proc = self._running.get(run_id)
            if proc is None:
                return False
            self._cancelled.add(run_id)
        _kill_group(proc.pid)
        return True

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
