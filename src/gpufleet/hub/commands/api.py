"""The remote-command routes (under /api/v1).

    POST /api/v1/commands                 operator  {argv, nodes, labels, timeout, parallel}: start a run
    GET  /api/v1/commands                 operator  runs the hub still holds (the last hour's)
    GET  /api/v1/commands/targets         operator  nodes, and whether each is fetching commands
    GET  /api/v1/commands/{id}            operator  a run and the results in so far
    GET  /api/v1/commands/{id}/events     operator  server-sent events: each result, then `done`
    POST /api/v1/commands/{id}/cancel     operator  cancel what has not finished
    GET  /api/v1/commands/next?wait=25    agent     long poll: signed messages for this node
    POST /api/v1/commands/{id}/result     agent     this node's result or refusal
    GET  /api/v1/audit                    admin     the audit log (since, until, limit)
"""

from __future__ import annotations

import asyncio
import json
import time
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from ...command_wire import MAX_ARGV_BYTES, MAX_OUTPUT
from ...syntax import DurationError, parse_duration
from ..auth import Principal, Role, agent, require
from .runs import CLOSED, FINAL, SUCCESS

if TYPE_CHECKING:
    from .extension import CommandsExtension

HOLD = 25.0  # seconds a long poll is held open: under common proxies' 30-60 s idle limits
MAX_RESULT_BODY = 1024 * 1024
PING = 15.0


async def _disconnect(request: Request) -> None:
    """Returns when the client has gone (a GET's empty body comes first)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class RunBody(BaseModel):
    argv: list[str] = Field(min_length=1, max_length=1024, description="program and arguments (no shell)")
    nodes: str | None = Field(None, max_length=1000, description="glob over node names, e.g. 'gpu-*'")
    names: list[str] | None = Field(None, max_length=10000, description="exact node names (the web UI's ticks)")
    labels: dict[str, str] = Field(default_factory=dict, description="only nodes with all these labels")
    timeout: float = Field(30.0, gt=0, le=86400, description="seconds before each node's process group is killed")
    parallel: int = Field(32, ge=1, le=10000, description="nodes running at once")


class ResultBody(BaseModel):
    status: Literal["ok", "failed", "timeout", "refused", "error", "cancelled"]
    exit_code: int | None = None
    duration: float | None = Field(None, ge=0)
    stdout: str = Field("", max_length=MAX_OUTPUT + 200)
    stderr: str = Field("", max_length=MAX_OUTPUT + 200)
    stdout_bytes: int | None = Field(None, ge=0)
    stderr_bytes: int | None = Field(None, ge=0)
    reason: str | None = Field(None, max_length=2000)


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise HTTPException(401, "missing credential: send `Authorization: Bearer <node credential>`")
    return value.strip()


def _since(text: str | None, now: float) -> float:
    """A Unix time, or a duration back from now (7d, 12h, 30m)."""
    if text is None or text == "":
        return now - 7 * 86400
    try:
        value = float(text)
        if value > 1e9:  # a plain number this large is a Unix time, not seconds back
            return value
    except ValueError:
        pass
    try:
        return now - parse_duration(text)
    except DurationError as e:
        raise HTTPException(400, f"since: {e}, or a Unix time") from None


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def mount(app: FastAPI, ext: CommandsExtension) -> None:
    hub, d = ext.hub, ext.dispatcher

    def get_run(run_id: str) -> Any:
        run = d.runs.get(run_id)
        if run is None:
            raise HTTPException(404, f"no command run {run_id!r} on this hub (finished runs are kept an hour; "
                                     "older ones are in GET /api/v1/audit)")
        return run

    # ---- callers ---------------------------------------------------------------------------------

    @app.post("/api/v1/commands", tags=["commands"], status_code=201)
    async def start(body: RunBody, who: Principal = require(Role.OPERATOR)) -> dict[str, Any]:
        """Run argv on every matching node that allows it; results arrive on .../events."""
        if sum(len(a) for a in body.argv) > MAX_ARGV_BYTES or any("\x00" in a for a in body.argv):
            raise HTTPException(400, f"argv is longer than {MAX_ARGV_BYTES} bytes or holds a NUL character")
        if body.nodes is None and not body.labels and not body.names:
            raise HTTPException(400, "say which nodes: `nodes` (a glob, '*' for all), `labels` and/or `names`")
        unknown = sorted(set(body.names or ()) - set(hub.fleet.nodes))
        if unknown:
            raise HTTPException(400, f"unknown node(s): {', '.join(unknown[:10])}: see GET /api/v1/nodes")
        pattern = body.nodes or "*"
        picked = set(body.names) if body.names else None
        nodes = sorted(name for name, v in hub.fleet.nodes.items()
                       if fnmatchcase(name, pattern) and (picked is None or name in picked)
                       and all(v.labels.get(k) == val for k, val in body.labels.items()))
        selector = {"nodes": body.nodes, "labels": body.labels, **({"names": body.names} if body.names else {})}
        run = d.start(who.name, body.argv, nodes, body.timeout, body.parallel, selector)
        if not nodes:
            what = f"nodes {pattern!r}" + (f" with labels {body.labels}" if body.labels else "") + (
                f" among {len(body.names)} named" if body.names else "")
            raise HTTPException(404, f"no node matches {what}: see GET /api/v1/nodes")
        return run.describe()

    @app.get("/api/v1/commands", tags=["commands"], dependencies=[require(Role.OPERATOR)])
    async def runs() -> dict[str, Any]:
        """Runs the hub holds in memory, newest first, without their output."""
        out = []
        for run in sorted(d.runs.values(), key=lambda r: r.created, reverse=True):
            desc = run.describe()
            desc["results"] = [{k: v for k, v in r.items() if k not in ("stdout", "stderr")} for r in desc["results"]]
            out.append(desc)
        return {"runs": out}

    @app.get("/api/v1/commands/targets", tags=["commands"], dependencies=[require(Role.OPERATOR)])
    async def targets() -> dict[str, Any]:
        """Every node with its labels, status and whether its agent is fetching commands now."""
        return {"nodes": [{"name": name, "labels": v.labels, "status": v.status, "fetching": d.fetching(name)}
                          for name, v in sorted(hub.fleet.nodes.items())]}

    # ---- agents (before /{id}: `next` is not a run id) -------------------------------------------

    @app.get("/api/v1/commands/next", tags=["agents"], dependencies=[agent()])
    async def next_messages(request: Request, wait: float = Query(HOLD, ge=0, le=HOLD)) -> dict[str, Any]:
        """Long poll with the node's credential: signed commands for this node (empty after `wait` s)."""
        node = hub.authenticate(_bearer(request))
        if d.closing:
            raise HTTPException(503, "the hub is shutting down", headers={"Retry-After": "2"})
        return {"messages": await d.next_for(node, wait, lambda: _disconnect(request))}

    @app.post("/api/v1/commands/{run_id}/result", tags=["agents"], dependencies=[agent()])
    async def post_result(run_id: str, request: Request) -> dict[str, Any]:
        """This node's result, or its refusal with the reason (recorded even for unknown runs)."""
        node = hub.authenticate(_bearer(request))  # the credential before the body is read
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_RESULT_BODY:
            raise HTTPException(413, f"result body larger than {MAX_RESULT_BODY} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_RESULT_BODY:
                raise HTTPException(413, f"result body larger than {MAX_RESULT_BODY} bytes")
        try:
            body = ResultBody.model_validate_json(raw)
        except ValidationError as e:
            raise HTTPException(422, f"invalid result: {e.errors()[0].get('msg', e)}") from None
        if len(run_id) > 64:
            raise HTTPException(400, "run id too long")
        result = body.model_dump()
        if body.status in ("ok", "failed"):
            result["status"] = SUCCESS if body.exit_code == 0 else "failed"
        return {"accepted": d.result(node, run_id, result)}

    # ---- one run -----------------------------------------------------------------------------------

    @app.get("/api/v1/commands/{run_id}", tags=["commands"], dependencies=[require(Role.OPERATOR)])
    async def one(run_id: str) -> dict[str, Any]:
        return get_run(run_id).describe()  # type: ignore[no-any-return]

    @app.get("/api/v1/commands/{run_id}/events", tags=["commands"], dependencies=[require(Role.OPERATOR)])
    async def events(run_id: str, request: Request) -> StreamingResponse:
        """Server-sent events: `result` per node as it arrives (earlier ones first), then `done`."""
        run = get_run(run_id)
        q = d.watch(run)

        async def stream() -> Any:
            try:
                while True:
                    try:
                        item = await asyncio.wait_for(q.get(), PING)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield b": ping\n\n"
                        continue
                    if item is CLOSED:
                        return
                    if item is None:
                        desc = run.describe()
                        del desc["results"]
                        yield _sse("done", desc)
                        return
                    yield _sse("result", item)
            finally:
                d.unwatch(run, q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/v1/commands/{run_id}/cancel", tags=["commands"])
    async def cancel(run_id: str, who: Principal = require(Role.OPERATOR)) -> dict[str, Any]:
        """Stop the run: nodes not started are not started, running ones are killed."""
        run = get_run(run_id)
        d.cancel(run, who.name)
        return {"id": run.id, "cancelled": run.cancelled, "done": run.done}

    # ---- audit ---------------------------------------------------------------------------------------

    @app.get("/api/v1/audit", tags=["commands"], dependencies=[require(Role.ADMIN)])
    async def audit(
        since: str | None = Query(None, description="Unix time or a duration back from now (7d); default 7d"),
        until: float | None = Query(None, description="Unix time (default now)"),
        limit: int = Query(1000, ge=1, le=100000),
    ) -> dict[str, Any]:
        """Every command attempt: who, selector, nodes, argv, when, each node's result or refusal."""
        now = time.time()
        start = _since(since, now)
        end = now + 1 if until is None else until
        rows = await asyncio.to_thread(ext.audit.runs, start, end, limit)
        return {"since": start, "until": end, "statuses": list(FINAL), "runs": rows}
