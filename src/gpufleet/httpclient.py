"""A small HTTP/1.1 client on the standard library: what the agent needs to talk to its hub.

Why not httpx: `pip install gpufleet` (the node agent) must stay small, and httpx brings six more
packages (httpcore, h11, anyio, idna, certifi, typing_extensions). The agent's needs are narrow:
GET and POST to one hub, keep-alive, a connect timeout apart from the read timeout, TLS with the
system's trust store or only --ca's, no redirects followed, and the HTTP(S)_PROXY / NO_PROXY
variables honoured as before. Hub-side code keeps httpx (it is in the `hub` extra).

Thread-safe: each request takes an idle connection or opens one, so a command poll held open by
the hub does not block a result report sent from another thread; `close()` also ends requests in
flight (a socket shut down under a blocked read wakes it).
"""

from __future__ import annotations

import base64
import http.client
import json as jsonlib
import socket
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

MAX_BODY = 64 * 1024 * 1024  # a hub's answers are small; a longer one is not a hub's
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class HTTPError(Exception):
    """No answer: refused, timed out, TLS failed, dropped. str() keeps the cause's message."""


@dataclass(slots=True)
class Response:
    status_code: int
    reason_phrase: str
    headers: http.client.HTTPMessage  # case-insensitive .get()
    content: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return jsonlib.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int


class Client:
    def __init__(self, *, timeout: float, connect_timeout: float | None = None,
                 headers: Mapping[str, str] | None = None, verify: ssl.SSLContext | bool = True) -> None:
        self.timeout = timeout
        self.connect_timeout = min(timeout, connect_timeout) if connect_timeout else timeout
        self.headers = dict(headers or {})
        if isinstance(verify, ssl.SSLContext):
            self._ssl = verify
        else:
            self._ssl = ssl.create_default_context()  # the system's trust store
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._lock = threading.Lock()
        self._idle: list[tuple[_Origin, http.client.HTTPConnection]] = []
        self._busy: set[http.client.HTTPConnection] = set()
        self._closed = False

    # ---- requests ---------------------------------------------------------------------------

    def get(self, url: str, *, params: Mapping[str, object] | None = None,
            headers: Mapping[str, str] | None = None, timeout: float | None = None) -> Response:
        if params:
            url += ("&" if "?" in url else "?") + urlencode({k: str(v) for k, v in params.items()})
        return self.request("GET", url, headers=headers, timeout=timeout)

    def post(self, url: str, *, content: bytes | None = None, json: Any = None,
             headers: Mapping[str, str] | None = None, timeout: float | None = None) -> Response:
        hdrs = dict(headers or {})
        if json is not None:
            content = jsonlib.dumps(json, separators=(",", ":")).encode()
            hdrs.setdefault("Content-Type", "application/json")
        return self.request("POST", url, content=content or b"", headers=hdrs, timeout=timeout)

    def request(self, method: str, url: str, *, content: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = None) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HTTPError(f"not an http(s) URL: {url}")
        origin = _Origin(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        hdrs = {**self.headers, **(headers or {})}
        read_timeout = self.timeout if timeout is None else max(0.05, timeout)
        # A connection kept alive may have been closed by the hub meanwhile: one retry on a new one.
        for attempt in (0, 1):
            conn, reused = self._take(origin, read_timeout, fresh=attempt > 0)
            try:
                if isinstance(conn, _ThroughProxy):
                    conn.request(method, url, body=content, headers={**hdrs, **conn.proxy_headers})
                else:
                    conn.request(method, target, body=content, headers=hdrs)
                resp = conn.getresponse()
                body = resp.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise HTTPError(f"answer larger than {MAX_BODY} bytes")
            except _STALE as e:
                self._drop(conn)
                if reused and attempt == 0:
                    continue
                raise HTTPError(f"{type(e).__name__}: {e}") from e
            except (OSError, http.client.HTTPException) as e:
                self._drop(conn)
                raise HTTPError(f"{type(e).__name__}: {e}") from e
            except BaseException:
                self._drop(conn)
                raise
            self._give_back(origin, conn, keep=not resp.will_close)
            return Response(resp.status, resp.reason, resp.headers, body)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every connection; requests in flight end with HTTPError."""
        with self._lock:
            self._closed = True
            idle, busy = [c for _, c in self._idle], list(self._busy)
            self._idle.clear()
        for conn in idle:
            conn.close()
        for conn in busy:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
                except OSError:
                    pass

    # ---- connections ------------------------------------------------------------------------

    def _take(self, origin: _Origin, read_timeout: float, *, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._closed:
                raise HTTPError("client closed")
            conn = None
            if not fresh:
                for i, (o, c) in enumerate(self._idle):
                    if o == origin:
                        conn = self._idle.pop(i)[1]
                        break
            reused = conn is not None
        if conn is None:
            conn = self._connect(origin)
        with self._lock:
            self._busy.add(conn)
        if conn.sock is not None:
            conn.sock.settimeout(read_timeout)
        return conn, reused

    def _connect(self, origin: _Origin) -> http.client.HTTPConnection:
        proxy = _proxy_for(origin)
        conn: http.client.HTTPConnection
        if proxy is None:
            if origin.scheme == "https":
                conn = http.client.HTTPSConnection(origin.host, origin.port, timeout=self.connect_timeout,
                                                   context=self._ssl)
            else:
                conn = http.client.HTTPConnection(origin.host, origin.port, timeout=self.connect_timeout)
        else:
            p = urlsplit(proxy)
            phost, pport = p.hostname or "", p.port or (443 if p.scheme == "https" else 80)
            auth = {}
            if p.username:
                cred = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
                auth["Proxy-Authorization"] = "Basic " + base64.b64encode(cred).decode()
            if origin.scheme == "https":  # a CONNECT tunnel: TLS end to end with the hub
                conn = http.client.HTTPSConnection(phost, pport, timeout=self.connect_timeout, context=self._ssl)
                conn.set_tunnel(origin.host, origin.port, headers=auth)
            else:  # plain HTTP through the proxy: absolute URLs in the request line
                conn = _ThroughProxy(phost, pport, timeout=self.connect_timeout)
                conn.proxy_headers = auth
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise HTTPError(f"{type(e).__name__}: {e}") from e
        return conn

    def _give_back(self, origin: _Origin, conn: http.client.HTTPConnection, *, keep: bool) -> None:
        with self._lock:
            self._busy.discard(conn)
            if keep and not self._closed:
                self._idle.append((origin, conn))
                return
        conn.close()

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._busy.discard(conn)
        conn.close()


class _ThroughProxy(http.client.HTTPConnection):
    """Plain HTTP through a proxy: the request line carries the absolute URL."""

    proxy_headers: dict[str, str] = {}


def _proxy_for(origin: _Origin) -> str | None:
    """HTTPS_PROXY / HTTP_PROXY / ALL_PROXY for the hub's scheme, unless NO_PROXY names its host."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(origin.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(f"{origin.host}:{origin.port}"):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
