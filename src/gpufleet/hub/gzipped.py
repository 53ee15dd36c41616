"""Large JSON answers gzip-compressed for clients that ask (`Accept-Encoding: gzip`).

`/api/v1/snapshots` at 1,000 nodes is tens of MB a read; `gpufleet top` reads it every couple of
seconds, often through an SSH tunnel. JSON shrinks ~10x at zlib level 1, which costs the hub far
less CPU than the bytes cost a slow link. Only where a route opts in: a global middleware would
also touch streams and small answers for no gain.
"""

from __future__ import annotations

import zlib

from fastapi import Request
from fastapi.responses import Response

MIN_BYTES = 32 * 1024  # below this a slow link does not notice and the header costs more


def json_response(request: Request, body: bytes) -> Response:
    headers = {"Vary": "Accept-Encoding"}
    if len(body) >= MIN_BYTES and "gzip" in request.headers.get("accept-encoding", "").lower():
        c = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
        body = c.compress(body) + c.flush()
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)
