"""Large JSON answers gzip-compressed for clients that ask (`Accept-Encoding: gzip`).

`/api/v1/snapshots` at 1,000 nodes is tens of MB a read; `gpufleet top` reads it every couple of
seconds, often through an SSH tunnel. JSON shrinks ~10x at zlib level 1, which costs the hub far
less CPU than the bytes cost a slow link. Only where a route opts in: a global middleware would
also touch streams and small answers for no gain.

The body goes out a CHUNK at a time, each when the socket has taken the last: written whole, a
73 MB answer was copied into the transport's buffer and sent from there in one pass of the event
loop, ~100-150 ms of it, while every other request (and, since loopfirst.py, the ingest thread)
waited; and the copy doubled the answer's memory until the client had read it all.
"""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import Request
from fastapi.responses import Response

MIN_BYTES = 32 * 1024  # below this a slow link does not notice and the header costs more
CHUNK = 256 * 1024  # per write; 73 MB in such writes took the loop 27-30 ms in all, whole 150 ms


class ChunkedResponse(Response):
    """A Response whose body is sent in CHUNK pieces (Content-Length as ever, no chunked encoding)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        body = bytes(self.body)
        for i in range(0, max(len(body), 1), CHUNK):
            # Each send waits while the socket's buffer is full (uvicorn's flow control).
            await send({"type": "http.response.body", "body": body[i:i + CHUNK],
                        "more_body": i + CHUNK < len(body)})
        if self.background is not None:
            await self.background()


def json_response(request: Request, body: bytes) -> Response:
    headers = {"Vary": "Accept-Encoding"}
    if len(body) >= MIN_BYTES and "gzip" in request.headers.get("accept-encoding", "").lower():
        c = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
        body = c.compress(body) + c.flush()
        headers["Content-Encoding"] = "gzip"
    return ChunkedResponse(body, media_type="application/json", headers=headers)
