"""systemd's notify protocol (sd_notify) with the standard library: READY, WATCHDOG, STOPPING.

Under a `Type=notify` unit systemd passes NOTIFY_SOCKET (a datagram socket; `@` starts an
abstract name) and, with `WatchdogSec=`, WATCHDOG_USEC (and WATCHDOG_PID). Outside systemd
every call is a no-op, so the agent and hub call these unconditionally. A send that fails is
ignored: monitoring must never stop because the supervisor's socket went away.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if addr.startswith("@"):
            self.address = b"\0" + addr[1:].encode()
        elif addr.startswith("/"):
            self.address = addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_seconds: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ping_every(self) -> float | None:
        """Seconds between watchdog pings (half the timeout, as systemd advises), or None without one."""
        return None if self.watchdog_seconds is None else max(0.05, self.watchdog_seconds / 2)

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")
