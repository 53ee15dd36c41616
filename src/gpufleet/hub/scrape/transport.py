"""Fetching a target: the agent's JSON snapshot when it offers one, else its text exposition,
within one time limit and a body size limit. The request logic is a generator (`_plan`) that
yields the requests it wants and receives the replies, so it is tested apart from the network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass

import httpx
import msgspec

from ...promtext import ParseError, parse
from ...snapshot import NodeSnapshot, from_json
from ..targets import Target
from .mapping import detect_kind, from_agent_json, to_snapshot
from .state import ScrapeError, ScrapeState

DEFAULT_TIMEOUT = 10.0
MAX_BODY_BYTES = 64 * 1024 * 1024  # a runaway exporter must not exhaust the hub's memory
SNAPSHOT_PATH = "/api/v1/snapshot"
ACCEPT_TEXT = "text/plain;version=0.0.4;q=1.0,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"
ACCEPT_JSON = "application/json"
USER_AGENT = "gpufleet-hub"


@dataclass(slots=True)
class _Request:
    url: str
    accept: str


@dataclass(slots=True)
class _Reply:
    status: int
    reason: str
    body: bytes


def _plan(target: Target, state: ScrapeState) -> Generator[_Request, _Reply, NodeSnapshot]:
    kind = target.kind
    if kind == "auto" and state.kind is not None:
        kind = state.kind
    if kind in ("auto", "gpufleet") and state.snapshot_api is not False:
        reply = yield _Request(target.base_url + SNAPSHOT_PATH, ACCEPT_JSON)
        if reply.status == 200:
            try:
                snap = from_json(reply.body)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                if state.snapshot_api:  # it worked before: this is the agent misbehaving
                    raise ScrapeError(target, f"invalid snapshot JSON from {SNAPSHOT_PATH}: {e}") from None
                state.snapshot_api = False  # something else answers that path (a landing page)
            else:
                state.snapshot_api = True
                state.kind = "gpufleet"
                state.samples = state.ignored = 0
                return from_agent_json(target, snap)
        elif reply.status == 503 or state.snapshot_api:
            # An agent answers 503 until its first collection; its /metrics would too.
            raise ScrapeError(target, f"HTTP {reply.status} {reply.reason} from {SNAPSHOT_PATH}")
        else:
            state.snapshot_api = False
    reply = yield _Request(target.url, ACCEPT_TEXT)
    if reply.status != 200:
        raise ScrapeError(target, f"HTTP {reply.status} {reply.reason}")
    try:
        samples = parse(reply.body)
    except ParseError as e:
        raise ScrapeError(target, f"cannot parse the exposition: {e}") from None
    if kind == "auto":
        detected = detect_kind(samples)
        if detected is not None:
            state.kind = detected
        kind = detected or "auto"
    return to_snapshot(target, samples, kind, state)


def _timeout(target: Target, timeout: float | None) -> float:
    if timeout is not None:
        return timeout
    if target.timeout is not None:
        return target.timeout
    return min(DEFAULT_TIMEOUT, target.interval)  # never longer than the interval it runs in


def _headers(req: _Request) -> dict[str, str]:
    return {"Accept": req.accept, "User-Agent": USER_AGENT}


def _transport_error(target: Target, e: Exception, limit: float) -> ScrapeError:
    if isinstance(e, httpx.TimeoutException):
        return ScrapeError(target, f"timed out after {limit:g}s ({type(e).__name__})")
    if isinstance(e, httpx.ConnectError):
        return ScrapeError(target, f"cannot connect: {e or 'connection failed'}")
    return ScrapeError(target, f"{type(e).__name__}: {e}")


def _too_big(target: Target) -> ScrapeError:
    return ScrapeError(target, f"response larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")


def _advance(plan: Generator[_Request, _Reply, NodeSnapshot], reply: _Reply | None) -> _Request | NodeSnapshot:
    """The plan's next request, or its snapshot once it has what it needs."""
    try:
        return next(plan) if reply is None else plan.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def scrape_async(target: Target, client: httpx.AsyncClient, *, state: ScrapeState | None = None,
                       timeout: float | None = None) -> NodeSnapshot:
    """Scrape `target` on asyncio; the whole scrape (all requests) ends within `timeout` seconds."""
    state = state if state is not None else ScrapeState()
    limit = _timeout(target, timeout)
    started = time.monotonic()
    plan = _plan(target, state)
    try:
        async with asyncio.timeout(limit):
            step = _advance(plan, None)
            while isinstance(step, _Request):
                try:
                    async with client.stream("GET", step.url, headers=_headers(step), timeout=limit) as r:
                        chunks: list[bytes] = []
                        size = 0
                        async for chunk in r.aiter_bytes():
                            size += len(chunk)
                            if size > MAX_BODY_BYTES:
                                raise _too_big(target)
                            chunks.append(chunk)
                        reply = _Reply(r.status_code, r.reason_phrase, b"".join(chunks))
                except httpx.HTTPError as e:
                    raise _transport_error(target, e, limit) from None
                step = _advance(plan, reply)
    except TimeoutError:
        raise ScrapeError(target, f"timed out after {limit:g}s") from None
    return _done(step, state, started)


def _done(snap: NodeSnapshot, state: ScrapeState, started: float) -> NodeSnapshot:
    state.scrapes += 1
    state.duration = time.monotonic() - started
    return snap
