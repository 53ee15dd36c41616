"""A small HTTP/1.1 server for ready-made bytes.

The agent answers every request from memory, so the server's own overhead is the whole
cost of a scrape. An asyncio Protocol with keep-alive costs a fraction of http.server's
per-request thread and parsing; limits on header size and count keep it safe to expose.
Only GET and HEAD are served; request bodies are refused.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

log = logging.getLogger("gpufleet.http")

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 64
IDLE_TIMEOUT = 60.0

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


class _Protocol(asyncio.Protocol):
    __slots__ = ("handler", "transport", "buf", "idle")

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle:
            self.idle.cancel()

    def _arm(self) -> None:
        if self.idle:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(IDLE_TIMEOUT, self._close)

    def _close(self) -> None:
        if self.transport:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 4)
            if end < 0:
                if len(self.buf) > MAX_HEADER_BYTES:
                    self._fail(431, "request headers too large")
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            if not self._handle(head):
                return

    def _fail(self, status: int, message: str) -> None:
        assert self.transport is not None
        self.transport.writelines(_encode(Response(status, (message + "\n").encode()), keep_alive=False, head=False))
        self.transport.close()
        self.buf = b""

    def _handle(self, head: bytes) -> bool:
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
        except ValueError:
            self._fail(400, "malformed request line")
            return False
        if len(lines) - 1 > MAX_HEADERS:
            self._fail(431, "too many request headers")
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._fail(400, "malformed header line")
                return False
            headers[name.strip().lower()] = value.strip()
        if headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers:
            self._fail(413, "request bodies are not accepted here")
            return False
        keep_alive = (version == "HTTP/1.1" and headers.get("connection", "").lower() != "close") or (
            version == "HTTP/1.0" and headers.get("connection", "").lower() == "keep-alive"
        )
        path, _, query = target.partition("?")
        if method not in ("GET", "HEAD"):
            resp = Response(405, b"only GET and HEAD are served\n", headers={"Allow": "GET, HEAD"})
        else:
            try:
                resp = self.handler(Request(method, path, query, headers))
            except Exception:  # a handler bug must not kill the server
                log.exception("handler failed for %s", path)
                resp = Response(503, b"internal error, see the agent's log\n")
        assert self.transport is not None
        # writelines hands header and body over without joining them into a new copy
        self.transport.writelines(_encode(resp, keep_alive=keep_alive, head=method == "HEAD"))
        if not keep_alive:
            self.transport.close()
            return False
        self._arm()
        return True


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    import time

    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _encode(resp: Response, *, keep_alive: bool, head: bool) -> tuple[bytes, ...]:
    lines = [
        f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'OK')}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {len(resp.body)}",
        f"Date: {_http_date()}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
        "X-Content-Type-Options: nosniff",
    ]
    lines.extend(f"{k}: {v}" for k, v in resp.headers.items())
    header = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return (header,) if head else (header, resp.body)


async def start(host: str, port: int, handler: Handler, ssl: ssl_.SSLContext | None = None) -> asyncio.Server:
    """Listen on host:port; with `ssl`, every connection is TLS (the handshake runs in asyncio)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Protocol(handler), host, port, reuse_address=True, ssl=ssl,
                                    ssl_handshake_timeout=10 if ssl else None)
