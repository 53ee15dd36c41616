"""Running the hub as a process: bind, open, serve (`gpufleet hub`; `gpufleet up` adds feeds)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import UserError
from . import loopfirst
from .app import create_app
from .datadir import DataDirInUse
from .extensions import load_extensions
from .auth.options import AccessOptions
from .service import Hub, HubOptions

log = logging.getLogger("gpufleet.hub")


def bind(host: str, port: int) -> socket.socket:
    """Bind before starting the server, so a taken port is one clear line, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # so, and with Nagle on every small reply on a kept-open connection waited ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use: stop the other process or pick "
                            "another with --listen HOST:PORT") from None
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def check_options(opts: HubOptions) -> None:
    """What can be checked without touching the disk: a bad URL must not leave a data directory."""
    from .history import parse_history_url
    from .remote_write import split_credentials

    try:
        if opts.remote_write is not None:
            split_credentials(opts.remote_write, what="remote write")
    except ValueError as e:
        raise UserError(f"--remote-write: {e}") from None
    try:
        if opts.history is not None:
            parse_history_url(opts.history)
    except ValueError as e:
        raise UserError(f"--history: {e}") from None


def open_hub(opts: HubOptions) -> Hub:
    check_options(opts)
    try:
        return Hub(opts)
    except DataDirInUse as e:
        raise UserError(str(e)) from None
    except (ValueError, OSError) as e:
        raise UserError(f"cannot open the hub's data directory {opts.data}: {e}") from None
    except Exception as e:  # one line, never a traceback, whatever the files hold
        log.debug("opening the hub failed", exc_info=True)
        raise UserError(f"cannot open the hub's data directory {opts.data}: {type(e).__name__}: {e} "
                        "(run with --log-level debug for details)") from None


def _notifying_server() -> type:
    import uvicorn

    from ..sdnotify import Notifier

    class NotifyingServer(uvicorn.Server):
        """Tells systemd (Type=notify) when the hub answers, and pings its watchdog from the
        server's own main loop: a wedged event loop stops the pings and systemd restarts the hub."""

        notifier = Notifier()
        _last_ping = 0.0

        def run(self, sockets: list[socket.socket] | None = None) -> None:
            # The hub's own loop (loopfirst.py): the ingest thread waits while it is awake.
            with asyncio.Runner(loop_factory=loopfirst.new_event_loop) as runner:
                runner.run(self.serve(sockets=sockets))

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:  # lifespan done (store open, jobs running) and the socket serving
                self.notifier.ready("serving")

        async def on_tick(self, counter: int) -> bool:
            every = self.notifier.ping_every()
            if every is not None:
                now = time.monotonic()
                if now - self._last_ping >= every:
                    self._last_ping = now
                    self.notifier.watchdog()
            return await super().on_tick(counter)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            self.notifier.stopping()
            await super().shutdown(sockets)

        deferred_signals: list[int] = []

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn raises the exit signal again once serving has ended; for SIGTERM (systemd,
            # Kubernetes) that ended the process right there, before serve()'s cleanup: the store
            # was never closed nor the latest snapshots saved. serve() raises it after the cleanup.
            with super().capture_signals():
                try:
                    yield
                finally:
                    self.deferred_signals = list(self._captured_signals)
                    self._captured_signals.clear()

    return NotifyingServer


def serve(hub: Hub, sock: socket.socket, announce: Callable[[str], None],
          on_exit: Callable[[], None] | None = None, access: AccessOptions | None = None) -> None:
    """Run the hub's HTTP server on `sock` until told to exit; `on_exit` stops what fed it."""
    import uvicorn

    app = create_app(hub, load_extensions(hub), access=access)
    tls: dict[str, Any] = {}
    if hub.opts.tls_cert is not None and hub.opts.tls_key is not None:
        tls = {"ssl_certfile": str(hub.opts.tls_cert), "ssl_keyfile": str(hub.opts.tls_key)}
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, **tls)
    server = _notifying_server()(config)
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"
    announce(url)
    # The store's catalogue and the fleet's snapshots are many long-lived objects: moving
    # what exists at start-up out of the collector's sight keeps full GC passes short.
    import gc

    gc.collect()
    gc.freeze()
    # A fleet's join creates millions of long-lived objects in a minute (series, shapes,
    # snapshots): at the default 700 allocations a young pass, the collector made ~26 full
    # passes over them while 1,000 nodes joined (~1.6 s of CPU, 2.2 s with the young ones);
    # every 50,000, one. Cycles wait a little longer to be freed; nothing else changes.
    gc.set_threshold(50_000, 10, 10)
    # ... and the passes that churn (every push replaces its node's snapshot) hides from those
    # counts run on a clock between pushes, never while a history read runs (gcpace.py).
    from .gcpace import GcPace

    hub.gc_pace = GcPace(hub.reads_first.busy)
    try:
        server.run(sockets=[sock])
    finally:
        if on_exit is not None:
            on_exit()
        hub.close()
    # Exit as the signal asked (SIGTERM: killed by it, which systemd counts as a clean stop;
    # SIGINT: KeyboardInterrupt), now that everything is closed.
    for sig in reversed(server.deferred_signals):
        signal.raise_signal(sig)
