"""Before any route: the Host header allow-list (against DNS rebinding) and security headers.

DNS rebinding makes a victim's browser send requests to the hub under the attacker's name
(Host: evil.example), so names outside the list are refused. IP literals are accepted: a page
can only reach the hub by its address if it was loaded from that very address (same origin).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
# /docs too: its Swagger UI and start-up script are files of the hub (hub/apidocs.py), no CDN.
CACHED_PATHS = ("/ui/static/", "/ui/vendor/", "/docs/static/")  # versioned files that set their own caching


def host_of(header: str) -> str:
    """'example.org:8080' -> 'example.org', '[::1]:80' -> '::1'; lower case."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    if h.count(":") == 1:
        return h.split(":", 1)[0]
    return h


def host_allowed(header: str | None, names: set[str]) -> bool:
    if not header:
        return False
    host = host_of(header).rstrip(".")
    if host in names:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AccessMiddleware:
    def __init__(self, app: ASGIApp, names: set[str]) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if not host_allowed(host, self.names):
            await _refuse(send, f"Host {host!r} is not allowed here: start the hub with --allowed-host NAME "
                                "to serve it under that name\n")
            return
        path: str = scope["path"]
        extra = [
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),  # no-referrer would make form POSTs say Origin: null
            (b"content-security-policy", CSP.encode()),
        ]
        no_store = not path.startswith(CACHED_PATHS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers.extend(h for h in extra if h[0] not in have)
                if no_store and b"cache-control" not in have:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(send: Send, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": 421,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
