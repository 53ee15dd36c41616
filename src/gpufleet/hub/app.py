"""The hub's HTTP API (FastAPI: OpenAPI at /openapi.json, Swagger UI at /docs), versioned under /api/v1."""

from __future__ import annotations

import asyncio
import logging
import platform
import sqlite3
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from .. import __version__, compact
from ..catalogue import BY_NAME, CATALOGUE
from ..exposition import TEXT_CONTENT_TYPE, render_scope
from ..syntax import Matcher, parse_matcher
from .auth import Role, agent, public, require
from .auth.limits import TooMany
from .auth.middleware import AccessMiddleware, Receive, Scope, Send
from .auth.options import AccessOptions
from .auth.policy import LoginRequired
from .cmdlines import may_see
from .extensions import Extension
from .auth.service import Auth
from .auth.store import AuthStore
from .register import MAX_BODY_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS, check_agent_url, check_labels
from . import bodies, gzipped
from .ingestworker import IngestWorker
from .pushpath import MISSING_CREDENTIAL, SENT_AT, PushPath, bearer, read_body
from .readfirst import fast_switch
from .sd import sd_groups
from .service import RETRY_AFTER_S, Hub, IngestError

log = logging.getLogger("gpufleet.hub")

AGGS = ("avg", "max", "min", "last")
VIEWER = require(Role.VIEWER)
NODE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$"


class RegisterBody(BaseModel):
    node: str = Field(pattern=NODE_NAME, description="node name (letters, digits, . _ : -)")
    labels: dict[str, str] = Field(default_factory=dict, description=(
        f"at most {MAX_LABELS} labels; names are Prometheus label names not starting with __,"
        f" values at most {MAX_LABEL_VALUE_BYTES} bytes"))
    agent_url: str | None = Field(default=None, description="http(s)://HOST:PORT where Prometheus can scrape "
                                  "this node's agent (no path, query or user:password@)")
    credential: str | None = Field(default=None, description=(
        "the node's current credential: required to register a name that is already registered"))
    advertised: bool = Field(default=False, description=(
        "agent_url was given explicitly (`gpufleet agent --advertise`): listed in service discovery even "
        "when it is a loopback address; otherwise an agent on loopback only is left out"))


class RegisterReply(BaseModel):
    node: str
    credential: str
    command_key: str | None = Field(default=None, description="the hub's Ed25519 public key (base64) that "
                                    "signs remote commands; agents pin it")


def _bearer(request: Request) -> str:
    value = bearer(request.headers.get("authorization"))
    if value is None:
        raise HTTPException(401, MISSING_CREDENTIAL)
    return value


class HubApp(FastAPI):
    """FastAPI with the agents' push routes answered by hub/pushpath.py (`push_path`), ahead of the
    middleware stack; they stay declared as FastAPI routes for the OpenAPI document and policies."""

    push_path: PushPath | None = None
    fast_reads: frozenset[str] = frozenset()  # GET paths of reads of the embedded store (readfirst.fast_switch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.push_path
        if fast is not None and scope["type"] == "http" and scope["path"] in fast.routes and scope["method"] == "POST":
            await fast(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] in self.fast_reads:
            with fast_switch():
                await super().__call__(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def parse_matchers(items: list[str]) -> list[Matcher]:
    out = []
    for item in items:
        try:
            out.append(parse_matcher(item))
        except ValueError as e:
            raise HTTPException(400, f"match: {e}") from None
    return out


def create_app(hub: Hub, extensions: Sequence[Extension] = (), *, background: bool = True,
               access: AccessOptions | None = None) -> FastAPI:
    """The hub's HTTP app. `extensions` (see hub/extensions.py) are attached to the hub, which
    closes them, mounted after the core API, and their loops run with the hub's own. `access`:
    who is admitted (hub/auth; default: accounts and keys only, the host's own names)."""
    hub.extensions.extend(extensions)
    access = access or AccessOptions()
    auth = Auth(AuthStore(hub.opts.data / "hub.db"), access)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        stop = asyncio.Event()
        tasks = []
        auth.store.open()  # again, when an app is started after an earlier shutdown (tests do)
        if background:
            tasks.append(asyncio.create_task(hub.run_background(stop)))
            tasks.extend(asyncio.create_task(ext.run(stop)) for ext in hub.extensions)
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                await task
            # Pushes still queued are stored now, before serve() closes the hub's store (uvicorn
            # stops waiting for requests after its grace period; the thread would not).
            await asyncio.to_thread(worker.stop, 60.0)
            auth.store.close()

    # docs_url/redoc_url off: FastAPI's pages load their viewers from a CDN; apidocs serves /docs offline.
    app = HubApp(title="gpufleet hub", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Registry, ingest, history and service discovery for a GPU fleet.")
    app.state.hub = hub
    app.state.auth = auth
    names = access.host_names()
    app.add_middleware(AccessMiddleware, names=names)
    worker = IngestWorker()
    hub.jobs.worker = worker.run  # the background steps that are Python work run between pushes (jobs.py)
    from . import apidocs

    apidocs.mount(app)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote

        return Response(status_code=303, headers={"Location": "/login?next=" + quote(exc.next_url, safe="/")})

    @app.exception_handler(TooMany)
    async def _too_many(request: Request, exc: TooMany) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(IngestError)
    async def _ingest_error(request: Request, exc: IngestError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(sqlite3.OperationalError)
    async def _db_error(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        # "database or disk is full", "database is locked": the client can retry later.
        hub.counters.store_errors += 1
        log.error("hub database error on %s: %s", request.url.path, exc)
        return JSONResponse({"detail": f"the hub's database failed ({exc}): retry later"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    # ---- agents ---------------------------------------------------------------------------------

    @app.post("/api/v1/register", response_model=RegisterReply, tags=["agents"], dependencies=[agent()], openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": RegisterBody.model_json_schema(ref_template="#/components/schemas/{model}")}}}})
    async def register(request: Request) -> RegisterReply:
        """Exchange a join token (or the node's own credential) for a new node credential.

        The credential is checked before the body is read, so nobody without one can make the
        hub read (or hold) a large body; the body is at most 64 KB.
        """
        secret = _bearer(request)
        hub.check_register_secret(secret)
        raw = await _read_body(request, MAX_BODY_BYTES, what="registration")
        try:
            body = RegisterBody.model_validate_json(raw)
        except ValidationError as e:
            # Bytes that are not JSON at all (bad UTF-8, nested too deep) are a 400; a wrong field 422.
            bad_json = any(err.get("type") == "json_invalid" for err in e.errors())
            raise HTTPException(400 if bad_json else 422, _first_error(e)) from None
        try:
            check_labels(body.labels)
            agent_url = check_agent_url(body.agent_url) if body.agent_url else None
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        cred = await asyncio.to_thread(hub.register, secret, body.node, body.labels, agent_url,
                                       credential=body.credential, advertised=body.advertised)
        return RegisterReply(node=body.node, credential=cred, command_key=hub.command_key)

    @app.post("/api/v1/push", tags=["agents"], dependencies=[agent()], openapi_extra=bodies.PUSH_OPENAPI)
    async def push(request: Request) -> dict[str, int]:
        """Store a batch of snapshots (oldest first), idempotent per (node, timestamp)."""
        node = hub.authenticate(_bearer(request))
        body = await _read_body(request, hub.opts.max_push_bytes)
        accepted, dups = await worker.run(hub.ingest_push, body, node, request.headers.get(SENT_AT))
        return {"accepted": accepted, "duplicates": dups}

    @app.post(compact.PATH, tags=["agents"], dependencies=[agent()])
    async def push_compact(request: Request) -> dict[str, int]:
        """The same as /api/v1/push in the compact encoding (docs/agent.md, "The compact push"):
        series shape sent once, then values as packed float64. 409 `unknown_shape`: resend with shapes."""
        node = hub.authenticate(_bearer(request))
        body = await _read_body(request, hub.opts.max_push_bytes)
        accepted, dups = await worker.run(hub.ingest_compact, body, node, request.headers.get(SENT_AT))
        return {"accepted": accepted, "duplicates": dups}

    # ---- the fleet --------------------------------------------------------------------------------

    @app.get("/api/v1/nodes", tags=["fleet"], dependencies=[VIEWER])
    def nodes() -> dict[str, Any]:
        """Every node with its status (up / stale / down) since when, and labels."""
        return {"nodes": [v.describe() for _, v in sorted(hub.fleet.nodes.items())]}

    @app.get("/api/v1/nodes/{name}", tags=["fleet"], dependencies=[VIEWER])
    def node(name: str) -> dict[str, Any]:
        v = hub.node(name)
        if v is None:
            raise HTTPException(404, f"unknown node {name!r}")
        return v.describe()

    @app.get("/api/v1/nodes/{name}/snapshot", tags=["fleet"], dependencies=[VIEWER])
    def node_snapshot(name: str, request: Request) -> Response:
        """The node's latest snapshot (schema: docs/snapshot.md); command lines only for admins
        unless the hub runs with --show-command-lines."""
        v = hub.node(name)
        if v is None:
            raise HTTPException(404, f"unknown node {name!r}")
        data = hub.fleet.full_json(v, commands=may_see(request, hub.opts.show_command_lines))
        if data is None:
            raise HTTPException(404, f"node {name!r} has sent no data yet")
        return Response(data, media_type="application/json")

    @app.get("/api/v1/snapshots", tags=["fleet"], dependencies=[VIEWER])
    def snapshots(request: Request,
                  processes: bool = Query(False, description="include each host's full process table"),
                  lean: bool = Query(False, description="what an overview needs: each node's snapshot without "
                                     "its per-CPU records, host process table and GPU links (~1/3 the size)"),
                  ) -> Response:
        """The latest snapshot of every node in one call (without host process tables unless asked);
        gzip-encoded for clients that accept it."""
        parts = []
        commands = may_see(request, hub.opts.show_command_lines)
        fleet = hub.fleet
        form = fleet.lean_json if lean else fleet.full_json if processes else fleet.summary_json
        for _, v in sorted(fleet.nodes.items()):
            data = form(v, commands)
            if data is not None:
                parts.append(data)
        return gzipped.json_response(request, b'{"snapshots":[' + b",".join(parts) + b"]}")  # top over SSH

    # ---- history -----------------------------------------------------------------------------------

    @app.get("/api/v1/query_range", tags=["history"], dependencies=[VIEWER])
    async def query_range(
        metric: str = Query(..., description="catalogue metric name, e.g. gpufleet_gpu_utilization_ratio"),
        match: list[str] = Query([], description='label matchers like gpu="0" or node=~"a.*"'),
        start: float | None = Query(None, description="Unix seconds (default: end - 1 h)"),
        end: float | None = Query(None, description="Unix seconds (default: now)"),
        step: float | None = Query(None, description="seconds per point (default: range / points)"),
        points: int = Query(500, ge=1, le=11000),
        agg: str = Query("avg", description="avg | max | min | last within each step"),
    ) -> Response:
        if metric not in BY_NAME:
            raise HTTPException(400, f"unknown metric {metric!r}: see GET /api/v1/metrics for the catalogue")
        if agg not in AGGS:
            raise HTTPException(400, f"agg {agg!r} is not one of {', '.join(AGGS)}")
        end_ = time.time() if end is None else end
        start_ = end_ - 3600 if start is None else start
        if start_ >= end_:
            raise HTTPException(400, f"start {start_} must be before end {end_}")
        step_ = step if step is not None else max(1.0, (end_ - start_) / points)
        if step_ <= 0 or (end_ - start_) / step_ > 11000:
            raise HTTPException(400, "step too small: at most 11,000 points per series")
        matchers = parse_matchers(match)
        # Async, so that the read gate is held from here (authenticated, parameters checked) to
        # the answer, the hop to the worker thread included (Hub.read_gate).
        with hub.read_gate():
            try:
                # One node's history is read right here on the event loop (a few ms) when the store
                # is free: the hop to a worker thread and back waited twice for the GIL behind the
                # ingest thread, ~3 of a week query's ~9 ms while 1,000 nodes push. A read that may
                # span the fleet, of many series, or that would wait for the store goes to a worker
                # thread (Hub.query_range_now).
                results = None
                if any(m.name == "node" and m.op == "=" for m in matchers):
                    results = hub.query_range_now(metric, matchers, start_, end_, step_, agg)
                if results is None:
                    results = await run_in_threadpool(hub.query_range, metric, matchers, start_, end_, step_, agg)
            except ValueError as e:
                raise HTTPException(400, str(e)) from None
            # Encoded here, not by FastAPI's response model: a week at 1,000 points was ~2 of its 4 ms.
            # msgspec writes NaN (a bin no sample fell in) as null, as the API documents.
            body = _query_encoder.encode({
                "metric": metric, "start": start_, "end": end_, "step": step_, "agg": agg,
                "series": [
                    {"labels": r[0], "timestamps": _floats(r[1]), "values": _floats(r[2])}
                    for r in results
                ],
            })
        return Response(body, media_type="application/json")

    @app.get("/api/v1/metrics", tags=["history"], dependencies=[VIEWER])
    def metrics_catalogue() -> dict[str, Any]:
        """The metric catalogue: names, types, units, help and other exporters' names."""
        return {"metrics": [
            {"name": m.name, "scope": m.scope, "kind": m.kind, "unit": m.unit, "help": m.help,
             "display": m.display, "dcgm": m.dcgm.name if m.dcgm else None,
             "all_smi": m.allsmi.name if m.allsmi else None}
            for m in CATALOGUE
        ]}

    # ---- integration ---------------------------------------------------------------------------------

    @app.get("/api/v1/sd/prometheus", tags=["integration"], dependencies=[VIEWER])
    def http_sd() -> list[dict[str, Any]]:
        """Prometheus http_sd targets: every registered agent, with its labels."""
        return sd_groups(hub.fleet.nodes.values())

    @app.get("/healthz", tags=["hub"], dependencies=[public()])
    def healthz() -> JSONResponse:
        """200 while every background job works; 503 naming the failing jobs while one fails."""
        counts = hub.fleet.counts()
        failing = hub.jobs.failing()
        body: dict[str, Any] = {
            "status": "failing" if failing else "ok", "version": __version__, "nodes": counts,
            "uptime_seconds": round(time.time() - hub.started, 1),
            "storage": "embedded" if hub.store is not None else "external"}
        if failing:
            body["failing"] = failing
        if hub.targets_watcher is not None:
            body["targets"] = len(hub.targets_watcher.targets)
            body["targets_error"] = str(hub.targets_watcher.last_error or "") or None
        return JSONResponse(body, status_code=503 if failing else 200)

    @app.get("/api/v1/status", tags=["hub"], dependencies=[VIEWER])
    def status() -> dict[str, Any]:
        """healthy or degraded, and why: jobs, store, nodes up/stale/down, firing alerts, remote write."""
        from .status import status_report

        return status_report(hub)

    @app.get("/metrics", tags=["hub"], dependencies=[VIEWER])
    def own_metrics() -> Response:
        out: list[str] = []
        info = {"version": __version__, "python_version": platform.python_version()}
        render_scope("hub", [((), hub.values(), info)], False, out)
        render_scope("hub_job", [((job, ), {"errors_total": float(n)}, {})
                                 for job, n in hub.jobs.errors_total().items()], False, out)
        render_scope("hub_scrape", [((key, st.node), st.values(), {})
                                    for key, st in sorted(hub.scrape_states.items())], False, out)
        for ext in hub.extensions:  # scopes an extension fills itself (capacity: per group)
            records = getattr(ext, "scope_records", None)
            if records is not None:
                for scope, recs in records().items():
                    render_scope(scope, recs, False, out)
        for ext in hub.extensions:  # another exporter's names for what an extension keeps (--compat)
            compat = getattr(ext, "compat_lines", None)
            if compat is not None and hub.opts.compat:
                compat(hub.opts.compat, out)
        out.append("")
        return Response("\n".join(out), media_type=TEXT_CONTENT_TYPE)

    app.push_path = PushPath(hub, {"/api/v1/push": "ingest_push", compact.PATH: "ingest_compact"}, names, worker)
    if hub.store is not None:
        app.fast_reads = frozenset({"/api/v1/query_range"})
    bodies.install(app)
    for ext in hub.extensions:
        try:
            ext.mount(app)
        except Exception:  # a broken feature must not take the hub's core API down with it
            log.exception("hub extension %s failed to mount; the hub runs without it", type(ext).__name__)
    return app


_query_encoder = msgspec.json.Encoder()


def _floats(xs: Any) -> list[float]:
    """Floats (timestamps and values alike), from a numpy array or a list."""
    return xs.astype(float).tolist() if hasattr(xs, "astype") else [float(x) for x in xs]


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(x) for x in err.get("loc", ())) or "body"
    return f"invalid registration: {where}: {err.get('msg', 'invalid')}"


async def _read_body(request: Request, limit: int, what: str = "push") -> bytes:
    h = request.headers
    return await read_body(request.stream(), h.get("content-length"), h.get("content-encoding"), limit, what)
