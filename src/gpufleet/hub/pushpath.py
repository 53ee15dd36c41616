"""The agents' two push routes answered as plain ASGI, ahead of FastAPI's stack.

At 1,000 nodes pushing every 5 s, FastAPI's middleware, routing, dependency solving and response
serialisation took ~15% of the hub's time, for routes that use none of it (issue 14). The routes
stay declared in app.py, for the OpenAPI document and the policy table (agent: the node's own
credential, no rate limit); `HubApp` sends exact `POST` matches here, everything else to FastAPI.
This does what the stack did for them, in the same order, with the same answers:

- Host allow-list (421) and security headers, as AccessMiddleware (the same functions);
- `Authorization: Bearer <node credential>`: 401 with FastAPI's `{"detail": ...}` when missing,
  the hub's 401 when unknown or revoked, checked before the body is read;
- the body with read_body's limits (413) and Content-Encoding (gzip; 400 otherwise);
- ingest on the ingest worker; IngestError -> its status, `{"detail"}` and Retry-After; SQLite's
  OperationalError -> 503 and the store-error counter, as app.py's handler; any other error ->
  a plain 500 "Internal Server Error", raised on for the server to log, as Starlette's.

A client that disconnects mid-body is let go without an answer (Starlette raised ClientDisconnect
into a logged 500 that nobody could receive).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import zlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from .auth.middleware import Message, Receive, Scope, Send, host_refusal, refuse, with_security_headers
from .ingestworker import IngestWorker
from .service import RETRY_AFTER_S, IngestError

if TYPE_CHECKING:
    from .service import Hub

log = logging.getLogger("gpufleet.hub")

SENT_AT = "x-gpufleet-sent-at"  # the agent's clock when it sent the push: the hub measures skew
_SENT_AT = SENT_AT.encode()
MISSING_CREDENTIAL = "missing credential: send `Authorization: Bearer <token>`"
Ingest = Callable[[bytes, str, "str | None"], tuple[int, int]]


class Disconnected(Exception):
    """The client went away before its body was read."""


def bearer(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer X` header, or None without one."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def read_body(chunks: AsyncIterator[bytes], declared: str | None, encoding: str | None, limit: int,
                    what: str = "push") -> bytes:
    """A request body of at most `limit` bytes, also once decompressed (413 past it; 400 for bad gzip)."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise IngestError(413, f"{what} body of {declared} bytes exceeds the limit of {limit}")
    parts = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"{what} body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    body = b"".join(parts)
    encoding = (encoding or "").lower()
    if encoding == "gzip":
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = d.decompress(body, limit + 1)
        except zlib.error as e:
            raise IngestError(400, f"body is not valid gzip: {e}") from None
        if len(body) > limit:
            raise IngestError(413, f"decompressed {what} body exceeds the limit of {limit} bytes")
    elif encoding not in ("", "identity"):
        raise IngestError(400, f"Content-Encoding {encoding!r} is not supported: send gzip or none")
    return body


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body: bytes = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise Disconnected


def authenticated_ingest(hub: Hub, ingest: Ingest, credential: str, body: bytes, sent_at: str | None) -> tuple[int, int]:
    """On the ingest worker: the credential checked again, from the file if it changed meanwhile
    (a revocation counts from the next push), then the push stored as its node's."""
    return ingest(body, hub.authenticate(credential), sent_at)


class PushPath:
    """The ASGI app of /api/v1/push and /api/v1/push/compact (`routes`: path -> the name of the hub's
    method that ingests its body, looked up per push)."""

    def __init__(self, hub: Hub, routes: dict[str, str], names: set[str], worker: IngestWorker) -> None:
        self.hub = hub
        self.routes = routes
        self.names = names
        self.worker = worker
        self._security = {path: with_security_headers((), path) for path in routes}  # the same for every answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        refused = host_refusal(scope, self.names)
        if refused is not None:
            await refuse(send, refused)
            return
        headers: tuple[tuple[bytes, bytes], ...] = ()
        try:
            accepted, dups = await self._push(scope, receive, getattr(self.hub, self.routes[path]))
        except Disconnected:
            return
        except IngestError as e:
            status, detail = e.status, str(e)
            headers = ((b"retry-after", str(e.retry_after).encode()),) if e.retry_after else ()
        except sqlite3.OperationalError as e:
            # "database or disk is full", "database is locked": the client can retry later.
            self.hub.counters.store_errors += 1
            log.error("hub database error on %s: %s", path, e)
            status, detail = 503, f"the hub's database failed ({e}): retry later"
            headers = ((b"retry-after", str(RETRY_AFTER_S).encode()),)
        except Exception:
            await self._answer(send, path, 500, b"Internal Server Error", b"text/plain; charset=utf-8", ())
            raise  # logged by the server, with its traceback
        else:
            # What FastAPI rendered for the route's dict, made without the json module.
            body = b'{"accepted":%d,"duplicates":%d}' % (accepted, dups)
            await self._answer(send, path, 200, body, b"application/json", ())
            return
        body = json.dumps({"detail": detail}, ensure_ascii=False, separators=(",", ":")).encode()
        await self._answer(send, path, status, body, b"application/json", headers)

    async def _push(self, scope: Scope, receive: Receive, ingest: Ingest) -> tuple[int, int]:
        authorization = declared = encoding = sent_at = None
        for k, v in scope["headers"]:  # the first of each, as Starlette's Headers.get
            if k == b"authorization":
                authorization = authorization if authorization is not None else v.decode("latin-1")
            elif k == b"content-length":
                declared = declared if declared is not None else v.decode("latin-1")
            elif k == b"content-encoding":
                encoding = encoding if encoding is not None else v.decode("latin-1")
            elif k == _SENT_AT:
                sent_at = sent_at if sent_at is not None else v.decode("latin-1")
        credential = bearer(authorization)
        if credential is None:
            raise IngestError(401, MISSING_CREDENTIAL)
        hub = self.hub
        # Before the body is read, so nobody without a credential makes the hub read (or hold) one:
        # from memory for a node already seen (the event loop never waits on the file for it);
        # the worker checks again against the file's latest state before storing.
        if hub.state.known_node(credential) is None:
            hub.authenticate(credential)
        body = await read_body(_chunks(receive), declared, encoding, hub.opts.max_push_bytes)
        return await self.worker.run(authenticated_ingest, hub, ingest, credential, body, sent_at)

    async def _answer(self, send: Send, path: str, status: int, body: bytes, content_type: bytes,
                      extra: tuple[tuple[bytes, bytes], ...]) -> None:
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type), *extra,
                   *self._security[path]]
        start: Message = {"type": "http.response.start", "status": status, "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": body})
