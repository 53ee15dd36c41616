"""A small HTTP client for the command-line tools that talk to a hub (`gpufleet run`, `audit`).

The standard library's http.client, not httpx: importing httpx (which also loads its own CLI's
rich and pygments when they are installed) took ~0.3 s of CPU, longer than `gpufleet run -- true`
needs to do its work on a whole fleet.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from ...errors import UserError
from ...syntax import normalize_hub_url


class HubClient:
    def __init__(self, hub: str, api_key: str | None, timeout: float = 30.0) -> None:
        self.url = normalize_hub_url(hub)
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path
        self._timeout = timeout
        self._headers = {"Accept": "application/json", "User-Agent": "gpufleet-cli"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.display = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def _conn(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def path(self, *segments: str, query: dict[str, Any] | None = None) -> str:
        p = self._base + "/" + "/".join(quote(s, safe="") for s in segments)
        return p + (f"?{urlencode(query)}" if query else "")

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, Any]:
        """(status, decoded JSON or {"detail": text}); UserError when the hub cannot be reached."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._conn(self._timeout if timeout is None else timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise self.unreachable(e) from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            # One line (an HTML error page from a proxy or another server has many).
            text = " ".join(raw.decode(errors="replace").split())
            return resp.status, {"detail": f"not JSON, is this a gpufleet hub?: {text[:200]}" if text else resp.reason}

    @contextmanager
    def stream(self, path: str, timeout: float | None = None) -> Iterator[http.client.HTTPResponse]:
        """A response read line by line (server-sent events); by default no read timeout: results
        take their time (the hub sends a keep-alive comment every 15 s)."""
        conn = self._conn(timeout)
        try:
            try:
                conn.request("GET", path, headers={**self._headers, "Accept": "text/event-stream"})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise self.unreachable(e) from None
            yield resp
        finally:
            conn.close()

    def unreachable(self, e: BaseException) -> UserError:
        return UserError(f"cannot reach the hub at {self.display} ({type(e).__name__}: {e}); check --hub")


def events(resp: http.client.HTTPResponse) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of a server-sent event stream."""
    event = "message"
    data: list[str] = []
    while True:
        try:
            raw = resp.readline()
        except (OSError, http.client.HTTPException):
            return
        if not raw:
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
