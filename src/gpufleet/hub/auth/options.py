"""How the hub admits people: `gpufleet hub` flags gathered in one typed record."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass(slots=True)
class AccessOptions:
    anonymous_read: bool = False  # --anonymous-read: anyone may view (as a viewer) without logging in
    allowed_hosts: list[str] = field(default_factory=list)  # --allowed-host, beside the defaults
    listen_host: str | None = None  # the listen address, allowed as a Host
    request_rate: float = 50.0  # requests a second per client (0: no limit), bursts of request_burst
    request_burst: float = 400.0
    streams_per_client: int = 16
    streams_total: int = 512
    login_failures_per_client: int = 20  # within login_window seconds
    login_failures_per_account: int = 10
    login_window: float = 300.0

    def host_names(self) -> set[str]:
        """Host header values accepted (lower case, without port); IP literals are accepted apart."""
        names = {"localhost", "127.0.0.1", "::1"}
        for n in (socket.gethostname(), socket.getfqdn()):
            if n:
                names.add(n.lower())
        if self.listen_host and self.listen_host not in ("0.0.0.0", "::"):
            names.add(self.listen_host.lower())
        names.update(h.strip().lower() for h in self.allowed_hosts if h.strip())
        return names
