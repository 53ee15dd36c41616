"""Large JSON answers go out in pieces (hub/gzipped.py): never one write of tens of MB."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from gpufleet.hub import gzipped


def _messages(response: gzipped.ChunkedResponse) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    asyncio.run(response({"type": "http"}, receive, send))
    return sent


def test_a_large_body_is_sent_in_chunks_with_its_length() -> None:
    body = bytes(range(256)) * (3 * gzipped.CHUNK // 256 + 7)
    sent = _messages(gzipped.ChunkedResponse(body, media_type="application/json"))
    assert sent[0]["type"] == "http.response.start"
    headers = dict(sent[0]["headers"])
    assert int(headers[b"content-length"]) == len(body)  # a length, not chunked encoding
    parts = sent[1:]
    assert len(parts) == 4 and all(len(p["body"]) <= gzipped.CHUNK for p in parts)
    assert [p["more_body"] for p in parts] == [True, True, True, False]
    assert b"".join(p["body"] for p in parts) == body


def test_an_empty_body_is_one_last_message() -> None:
    sent = _messages(gzipped.ChunkedResponse(b""))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"" and sent[1]["more_body"] is False


def test_json_response_over_http_whole_and_gzipped() -> None:
    body = b'{"snapshots":[' + b",".join(b'{"node":"n%d","v":%d}' % (i, i) for i in range(60_000)) + b"]}"
    assert len(body) > 3 * gzipped.CHUNK
    app = FastAPI()

    @app.get("/big")
    def big(request: Request) -> Any:
        return gzipped.json_response(request, body)

    with TestClient(app) as c:
        plain = c.get("/big", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and plain.content == body
        assert plain.headers["content-length"] == str(len(body))
        with c.stream("GET", "/big", headers={"Accept-Encoding": "gzip"}) as r:
            raw = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip" and gzip.decompress(raw) == body
