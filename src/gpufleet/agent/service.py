"""The agent process: a collection thread and an HTTP server over the latest collection."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import __version__, clock
from ..backends import BackendUnavailable, resolve
from ..collectors import build as build_collectors
from ..collectors.base import CollectContext
from ..config import AgentConfig
from ..errors import UserError
from ..netaddr import is_loopback
from ..sdnotify import Notifier
from ..compat import prefers_text
from ..exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, parse_compat
from ..snapshot import NodeSnapshot
from . import httpserver
from .collect import Collection
from .httpserver import Request, Response
from .rendered import Rendered

log = logging.getLogger("gpufleet.agent")

JSON_TYPE = "application/json"

# agent-scope catalogue key -> Pusher.stats() key
PUSH_STATS = {
    "push_snapshots_total": "pushed", "push_failures_total": "failed", "push_dropped_total": "dropped",
    "push_backlog": "backlog", "push_backlog_bytes": "backlog_bytes", "hub_up": "hub_up",
}

INDEX = """<!doctype html><title>gpufleet agent</title>
<h1>gpufleet agent {version}</h1><p>node <b>{node}</b>, backend <b>{backend}</b></p>
<ul><li><a href="/metrics">/metrics</a> Prometheus / OpenMetrics</li>
<li><a href="/api/v1/snapshot">/api/v1/snapshot</a> JSON snapshot</li>
<li><a href="/healthz">/healthz</a> health</li></ul>"""


def _groups_option(cfg: AgentConfig) -> object:
    """--groups as the allocation collector takes it; simulated users are in no passwd file,
    so a simulated node left on `unix` gets their made-up groups."""
    if cfg.simulate and cfg.groups == "unix":
        from ..backends.sim import GROUPS

        return GROUPS
    return cfg.groups


class AgentService:
    """Collect every `interval` seconds in a thread; answer requests from the last result."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        try:
            self.compat = parse_compat(cfg.compat)
            self.text_first = prefers_text(self.compat)
            backend, self.backend_note = resolve(
                cfg.backend, simulate=cfg.simulate, seed=cfg.seed, node=cfg.node, all_smi_url=cfg.all_smi_url
            )
            ctx = CollectContext(procfs=cfg.procfs, sysfs=cfg.sysfs, backend=backend,
                                 options={"node": cfg.node, "disks.remote_usage": cfg.disks_remote_usage,
                                          "processes.environ": cfg.processes_environ,
                                          "processes.mask": cfg.mask,
                                          "cpu.mode_seconds": "node" in self.compat,
                                          "allocation.idle_below": cfg.allocation_idle_below,
                                          "allocation.state_file": cfg.allocation_state_file,
                                          "allocation.slurm": cfg.allocation_slurm,
                                          "allocation.pod_resources": cfg.allocation_pod_resources,
                                          "allocation.refresh": cfg.allocation_refresh,
                                          "groups": _groups_option(cfg)})
            collectors = build_collectors(ctx, cfg.collectors)
        except (ValueError, BackendUnavailable) as e:
            raise UserError(str(e)) from None
        self.backend = backend
        self.collection = Collection(cfg.node, collectors, labels=cfg.labels,
                                     backend=backend.name if backend else "none",
                                     collector_timeout=cfg.collector_timeout)
        self.latest: Rendered | None = None
        self.listeners: list[Callable[[NodeSnapshot], None]] = []
        self.pusher: Any = None
        self.commands: Any = None
        self.run_as: Any = None
        if cfg.allow_commands:  # checked before anything starts: a wrong --command-user is one clear line
            from .command_policy import resolve_user

            self.run_as = resolve_user(cfg.command_user, cfg.allow_root_commands)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.collected_at: float | None = None  # monotonic: when the last round finished

    # ---- collection ----------------------------------------------------------------------

    def collect_once(self) -> Rendered:
        snap = self.collection.run()
        if self.pusher is not None:
            st = self.pusher.stats()
            snap.agent.update({key: float(st[stat]) for key, stat in PUSH_STATS.items() if stat in st})
        rendered = Rendered(snap, self.compat)
        self.latest = rendered  # one reference swap: readers never see a half-built result
        self.collected_at = time.monotonic()
        for listener in self.listeners:
            try:
                listener(snap)
            except Exception:
                log.exception("snapshot listener failed")
        return rendered

    def _loop(self) -> None:
        interval = self.cfg.interval
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.collect_once()
            except Exception:  # never let the thread die: the server would serve stale data
                log.exception("collection failed")
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (suspended host, slow collector): skip, don't burst
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def alive(self) -> bool:
        """The collection loop finishes rounds (a hung collector is timed out, so rounds go on)."""
        if self.collected_at is None:
            return False
        return time.monotonic() - self.collected_at <= 3 * self.cfg.interval + self.cfg.collector_timeout + 1

    async def _watchdog(self, notifier: Notifier, every: float) -> None:
        """systemd's watchdog, pinged from the event loop that serves /metrics, only while the
        collection loop progresses: a wedged agent is restarted (Restart=always), not left serving
        stale data."""
        while True:
            await asyncio.sleep(every)
            if self.alive():
                notifier.watchdog()
            else:
                log.warning("no collection round finished for %.0f s: not pinging systemd's watchdog",
                            time.monotonic() - (self.collected_at or 0.0))

    def start_collecting(self) -> None:
        self.collect_once()  # serve real data from the first request on
        self._thread = threading.Thread(target=self._loop, name="gpufleet-collect", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.commands is not None:
            self.commands.stop()
        if self.pusher is not None:
            self.pusher.stop()
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception:
                log.debug("backend close failed", exc_info=True)

    # ---- HTTP ------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        r = self.latest
        if req.path == "/metrics":
            if r is None:
                return Response(503, b"no collection yet\n")
            gz = "gzip" in req.headers.get("accept-encoding", "")
            accept = req.headers.get("accept", "")
            # A compat mode whose types only the text format can say (dcgm-exporter's counters
            # lack `_total`) is answered in text when the scraper takes text too, as Prometheus does.
            om = "application/openmetrics-text" in accept and not (self.text_first and "text/plain" in accept)
            form = "openmetrics" if om else "text"
            headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gz else {}
            return Response(200, r.body(form, gz), OPENMETRICS_CONTENT_TYPE if om else TEXT_CONTENT_TYPE,
                            headers)
        if req.path == "/api/v1/snapshot":
            if r is None:
                return Response(503, b'{"error":"no collection yet"}', JSON_TYPE)
            gz = "gzip" in req.headers.get("accept-encoding", "")
            headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gz else {}
            return Response(200, r.body("json", gz), JSON_TYPE, headers)
        if req.path == "/healthz":
            return self._health(r)
        if req.path == "/":
            html = INDEX.format(version=__version__, node=self.cfg.node,
                                backend=self.collection.backend)
            return Response(200, html.encode(), "text/html; charset=utf-8")
        return Response(404, b"not found: try /metrics, /api/v1/snapshot or /healthz\n")

    def _health(self, r: Rendered | None) -> Response:
        if r is None:
            return Response(503, b'{"status":"starting"}', JSON_TYPE)
        age = clock.now() - r.timestamp  # the same clock the snapshot was stamped with
        failed = [c.collector for c in r.snapshot.collectors if not c.success]
        stale = age > 3 * self.cfg.interval + 1
        all_failed = bool(r.snapshot.collectors) and len(failed) == len(r.snapshot.collectors)
        status = "stale" if stale else ("failing" if all_failed else ("degraded" if failed else "ok"))
        body = json.dumps({
            "status": status, "node": self.cfg.node, "last_collection_age_seconds": round(age, 3),
            "interval_seconds": self.cfg.interval, "failed_collectors": failed,
            "backend": self.collection.backend, "version": __version__,
        }).encode()
        return Response(503 if stale or all_failed else 200, body, JSON_TYPE)

    # ---- process --------------------------------------------------------------------------

    async def serve(self, ready: Callable[[str], None] | None = None) -> None:
        host, port = self.cfg.listen
        ssl_ctx = None
        if self.cfg.tls_cert is not None and self.cfg.tls_key is not None:
            from ..tls import ServerTLS, server_context

            ssl_ctx = server_context(ServerTLS(self.cfg.tls_cert, self.cfg.tls_key))
        try:
            server = await httpserver.start(host, port, self.handle, ssl=ssl_ctx)
        except OSError as e:
            raise UserError(_bind_error(host, port, e)) from None
        bound = server.sockets[0].getsockname()
        url = f"{'https' if ssl_ctx else 'http'}://{_fmt_host(host)}:{bound[1]}"
        if ready:
            ready(url)  # first: a refused start (no --token for a new hub) must not say "serving"
        log.info("gpufleet agent %s serving %s/metrics (node %s; %s)", __version__, url, self.cfg.node,
                 self.backend_note)
        notifier = Notifier()
        notifier.ready(f"serving {url}/metrics")
        every = notifier.ping_every()
        watchdog = asyncio.create_task(self._watchdog(notifier, every)) if every is not None else None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        async with server:
            await stop.wait()
        notifier.stopping()
        if watchdog is not None:
            watchdog.cancel()

    def run(self) -> None:
        try:
            asyncio.run(self.serve(ready=self._ready))
        finally:
            self.stop()

    def _ready(self, url: str) -> None:
        """Bound: now push (if told to) and collect, so the first snapshot is pushed too."""
        if self.cfg.hub:
            from .push import attach_pusher  # only when pushing

            self.pusher = attach_pusher(self, self.cfg)
            if self.pusher is not None and self.pusher.agent_url is None:
                from urllib.parse import urlsplit

                from .push import agent_url_for

                port = urlsplit(url).port or 0  # the port bound for --listen HOST:0
                self.pusher.agent_url = agent_url_for((self.cfg.listen[0], port), url.partition(":")[0],
                                                      self.cfg.advertise)
            if self.pusher is not None and self.cfg.advertise is None and is_loopback(self.cfg.listen[0]):
                log.info("listening on %s only: the hub leaves this node out of Prometheus' service discovery "
                         "(pushing is not affected); use --listen 0.0.0.0:%d or --advertise HOST:PORT for Prometheus",
                         self.cfg.listen[0], self.cfg.listen[1] or 9401)
            if self.pusher is not None and self.run_as is not None:
                from .commands import attach_commands

                self.commands = attach_commands(self.pusher, self.cfg.node, self.cfg.allow_commands, self.run_as)
        self.start_collecting()


def _fmt_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bind_error(host: str, port: int, e: OSError) -> str:
    where = f"{_fmt_host(host)}:{port}"
    if e.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use: stop the other process or pick another with --listen HOST:PORT"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host} is not an address of this machine; check --listen"
    if e.errno == errno.EACCES:
        return f"not allowed to listen on {where}: ports below 1024 need root; choose a higher port with --listen"
    return f"cannot listen on {where}: {e.strerror or e}"
