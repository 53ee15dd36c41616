"""Where `gpufleet top`, `ls` and `free` read the fleet from: a hub, or one agent.

One `Source` per view. Every call either returns data or raises `Unreachable` with a one-line
reason; the live view turns that into "reconnecting" and keeps its last rows, the one-shot
commands into a usage error. Reads are small (no per-host process tables) because the link may
be a slow SSH tunnel.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from .model import Fleet, GpuCache, build

# A slow link still connects in seconds; a hub that takes longer is as good as down for a live view.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class Unreachable(Exception):
    """The hub or agent did not answer usefully; str() is a one-line reason."""


class Source:
    def __init__(self, url: str, kind: str = "auto", api_key: str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.kind = kind  # hub | agent | auto (decided on the first answer)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=TIMEOUT, headers=headers, transport=transport)
        self.cache: GpuCache = {}  # GPU rows of nodes that have not pushed since the last read

    def close(self) -> None:
        self.client.close()

    def _get(self, path: str, **params: Any) -> httpx.Response:
        try:
            r = self.client.get(f"{self.url}{path}", params=params or None)
        except httpx.HTTPError as e:
            hint = ("set SSL_CERT_FILE to the CA that signed its certificate" if "CERTIFICATE_VERIFY" in str(e)
                    else "is a gpufleet hub or agent listening there?")
            raise Unreachable(f"cannot read {self.url}: {e or type(e).__name__}; {hint}") from None
        if r.status_code in (401, 403):
            raise Unreachable(f"{self.url} refused the request (HTTP {r.status_code}): "
                              "pass --api-key KEY or set GPUFLEET_API_KEY")
        return r

    def _json(self, r: httpx.Response) -> Any:
        if r.status_code != 200:
            hint = ": is that a gpufleet hub or agent URL?" if r.status_code == 404 else ""
            raise Unreachable(f"{r.request.url.path} on {self.url} answered HTTP {r.status_code}{hint}")
        try:
            return r.json()
        except ValueError:
            raise Unreachable(f"{self.url} did not answer JSON: is a gpufleet hub or agent listening there?") from None

    def fleet(self) -> Fleet:
        now = time.time()
        if self.kind in ("auto", "hub"):
            # Lean: no per-CPU records, host process tables or links (a third of the bytes); an
            # older hub ignores the parameter and sends the whole snapshots, which read the same.
            r = self._get("/api/v1/snapshots", lean="true")
            if r.status_code == 404 and self.kind == "auto":
                self.kind = "agent"
            else:
                snaps = self._json(r)["snapshots"]
                self.kind = "hub"
                nodes = {n["name"]: n for n in self._json(self._get("/api/v1/nodes"))["nodes"]}
                alerts: list[dict[str, Any]] = []
                a = self._get("/api/v1/alerts", state="firing")
                if a.status_code == 200:  # a hub without alerting still shows its fleet
                    alerts = a.json().get("alerts", [])
                return build(snaps, nodes, alerts, now, self.cache)
        snap = self._json(self._get("/api/v1/snapshot"))
        return build([snap], {}, (), now)

    def history(self, metric: str, node: str, gpu: int | None = None, seconds: float = 3600,
                points: int = 60) -> list[float | None]:
        """The last hour of one series, `points` averages; empty from an agent (it keeps none)."""
        if self.kind == "agent":
            return []
        match = [f'node="{node}"'] + ([f'gpu="{gpu}"'] if gpu is not None else [])
        end = time.time()
        r = self._get("/api/v1/query_range", metric=metric, match=match, start=end - seconds, end=end,
                      step=seconds / points)
        series = self._json(r).get("series", [])
        if not series:
            return []
        s = series[0]
        # Put each value in its slot so a gap stays a gap instead of pulling later points left.
        out: list[float | None] = [None] * points
        for t, v in zip(s["timestamps"], s["values"]):
            i = int((t - (end - seconds)) / (seconds / points))
            if 0 <= i < points:
                out[i] = v
        return out
