"""Before any route: the Host header allow-list (against DNS rebinding) and security headers.

DNS rebinding makes a victim's browser send requests to the hub under the attacker's name
(Host: evil.example), so names outside the list are refused. IP literals are accepted: a page
can only reach the hub by its address if it was loaded from that very address (same origin).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
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
        refused = host_refusal(scope, self.names)
        if refused is not None:
            await refuse(send, refused)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(message.get("headers", []), path)
            await send(message)

        await self.app(scope, receive, send_with_headers)


SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make form POSTs say Origin: null
    (b"content-security-policy", CSP.encode()),
)


def with_security_headers(headers: Iterable[tuple[bytes, bytes]], path: str) -> list[tuple[bytes, bytes]]:
    """A response's headers with those of SECURITY_HEADERS (and no-store caching) it does not set itself.

    Every answer gets them: AccessMiddleware adds them to what the app sends, hub/pushpath.py to its own."""
    out = list(headers)
    have = {k.lower() for k, _ in out}
    out.extend(h for h in SECURITY_HEADERS if h[0] not in have)
    if b"cache-control" not in have and not path.startswith(CACHED_PATHS):
        out.append((b"cache-control", b"no-store"))
    return out


def host_refusal(scope: Scope, names: set[str]) -> str | None:
    """Why the request's Host header is refused (answered 421), or None when it is allowed."""
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
    if host_allowed(host, names):
        return None
    return f"Host {host!r} is not allowed here: start the hub with --allowed-host NAME to serve it under that name\n"


async def refuse(send: Send, text: str) -> None:
    """The 421 answer to a Host that is not allowed."""
    body = text.encode()
    await send({"type": "http.response.start", "status": 421,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
