"""HTTP routes of the web UI: pages, the SSE stream, our static files and the chart library."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ... import __version__
from ... import health
from ...catalogue import BY_SCOPE
from ..auth import Policy, Role, declare, public, require
from ..auth.service import client_of, csrf_token
from . import login, usage_pages
from .assets import MISSING_HINT, STATIC, TEMPLATES, UPLOT_FILES, static_version
from .events import CLOSE, RESYNC, Subscriber, sse
from ..cmdlines import may_see
from .users import placements, users_table

if TYPE_CHECKING:
    from . import UiExtension

PING = 10.0  # seconds between keep-alive events: the page's watchdog reconnects after 3 missed
ALERTS_API = "/api/v1/alerts"
RANGES = ("15m", "1h", "6h", "24h", "7d", "30d")
_enc = msgspec.json.Encoder()
VIEWER = require(Role.VIEWER)


def _catalogue(scope: str) -> dict[str, dict[str, str]]:
    return {m.key: {"name": m.name, "help": m.help, "unit": m.unit, "display": m.display, "kind": m.kind}
            for m in BY_SCOPE[scope] if m.kind != "info"}


def _script_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no `<` at all, so neither `</script>`
    nor `<!--<script>` (which makes the parser skip the real end tag) can end the element."""
    raw = data if isinstance(data, (bytes, str)) else _enc.encode(data)
    text = raw.decode() if isinstance(raw, bytes) else raw
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _with_snapshot(data: dict[str, Any], snapshot: bytes | None) -> str:
    """`data` plus the node's stored snapshot JSON as key snapshotJson, spliced in as bytes
    (it is already encoded: decoding and re-encoding a large process table would waste time)."""
    head = _enc.encode(data)[:-1]
    return _script_json(head + b',"snapshotJson":' + (snapshot or b"null") + b"}")


def mount(app: FastAPI, ext: UiExtension) -> None:
    hub, broker = ext.hub, ext.broker
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    version = static_version()

    def commands(request: Request) -> bool:
        return may_see(request, hub.opts.show_command_lines)

    def has_alerts() -> bool:
        return any(getattr(r, "path", None) == ALERTS_API for r in app.routes)

    def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        who = getattr(request.state, "principal", None)
        html = env.get_template(template).render(
            request=request, who=who, csrf=csrf_token(who.session) if who and who.session else "", v=version, version=__version__, alerts=has_alerts(),
            charts=ext.uplot is not None, missing_hint=MISSING_HINT,
            usage=getattr(app.state, "usage", None) is not None, **ctx)
        # Pages embed live state, so a cached copy would start from stale data.
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def not_found(request: Request, what: str) -> HTMLResponse:
        return page(request, "error.html", status=404, title="Not found", message=what)

    login.mount(app, page)
    usage_pages.mount(app, page, not_found, _script_json)

    # ---- pages ---------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False, dependencies=[VIEWER])
    async def overview(request: Request) -> HTMLResponse:
        broker.tick()  # publish pending changes first, so the embedded state matches the stream's seq
        initial = {"epoch": broker.epoch, "seq": broker.seq, "t": time.time(), "full": broker.state}
        return page(request, "overview.html", title="Fleet", nav="fleet", initial=_script_json(initial))

    @app.get("/nodes/{name}", include_in_schema=False, dependencies=[VIEWER])
    async def node_page(request: Request, name: str) -> HTMLResponse:
        v = hub.node(name)
        if v is None:
            return not_found(request, f"There is no node named “{name}” in this fleet.")
        initial = {"node": v.describe(), "snapshot": None, "ranges": RANGES, "health": health.page_json(),
                   "catalogue": {"node": _catalogue("node"), "gpu": _catalogue("gpu")}}
        return page(request, "node.html", title=name, nav="fleet", name=name, view=v,
                    initial=_with_snapshot(initial, hub.fleet.full_json(v, commands(request))))

    @app.get("/nodes/{name}/gpus/{index}", include_in_schema=False, dependencies=[VIEWER])
    async def gpu_page(request: Request, name: str, index: int) -> HTMLResponse:
        v = hub.node(name)
        if v is None:
            return not_found(request, f"There is no node named “{name}” in this fleet.")
        if v.snapshot is not None and all(g.index != index for g in v.snapshot.gpus):
            return not_found(request, f"Node “{name}” has no GPU {index}.")
        initial = {"node": v.describe(), "gpu": index, "ranges": RANGES, "health": health.page_json(),
                   "catalogue": {"gpu": _catalogue("gpu"), "mig": _catalogue("mig"), "gpu_link": _catalogue("gpu_link")}}
        return page(request, "gpu.html", title=f"{name} · GPU {index}", nav="fleet", name=name, index=index,
                    initial=_with_snapshot(initial, hub.fleet.full_json(v, commands(request))))

    @app.get("/users", include_in_schema=False, dependencies=[VIEWER])
    async def users_page(request: Request) -> HTMLResponse:
        rows = users_table(hub.fleet.nodes.values())
        return page(request, "users.html", title="Users", nav="users",
                    initial=_script_json({"users": rows, "t": time.time()}))

    @app.get("/users/{user}", include_in_schema=False, dependencies=[VIEWER])
    async def user_page(request: Request, user: str) -> HTMLResponse:
        rows = users_table(hub.fleet.nodes.values())
        known = sorted({r["user"] for r in rows} | {user})
        initial = {"user": user, "users": known, "ranges": RANGES, "t": time.time(),
                   "catalogue": {"user": _catalogue("user")},
                   "summary": next((r for r in rows if r["user"] == user), None),
                   "placements": placements(hub.fleet.nodes.values(), user, commands=commands(request))}
        return page(request, "user.html", title=f"User {user}", nav="users", user=user,
                    initial=_script_json(initial))

    @app.get("/alerts", include_in_schema=False, dependencies=[VIEWER])
    async def alerts_page(request: Request) -> HTMLResponse:
        if not has_alerts():
            return not_found(request, "Alerts are not part of this hub yet.")
        return page(request, "alerts.html", title="Alerts", nav="alerts", initial="{}")

    @app.get("/commands", include_in_schema=False, dependencies=[require(Role.OPERATOR)])
    async def commands_page(request: Request) -> HTMLResponse:
        return page(request, "commands.html", title="Commands", nav="commands", initial="{}")

    @app.get("/audit", include_in_schema=False, dependencies=[require(Role.ADMIN)])
    async def audit_page(request: Request) -> HTMLResponse:
        return page(request, "audit.html", title="Audit", nav="audit", initial="{}")

    # ---- live stream -----------------------------------------------------------------------------------

    @app.get("/api/v1/events", tags=["ui"], dependencies=[VIEWER])
    async def events(
        request: Request,
        fleet: bool = Query(True, description="compact per-node deltas of the whole fleet (event `fleet`)"),
        node: str | None = Query(None, description="this node's full snapshot on each change (event `node`)"),
        users: bool = Query(False, description="the per-user table on each change (event `users`)"),
        user: str | None = Query(None, description="one user's GPU processes on each change (event `user`)"),
        since: str | None = Query(None, description="last event id seen (as Last-Event-ID): send only what was missed"),
    ) -> StreamingResponse:
        """Server-Sent Events for live pages: the first `fleet` event is the full state (or the
        missed deltas), later ones carry only what changed. A `ping` event every 10 s."""
        slot = app.state.auth.streams.acquire(client_of(request))  # 429 past the per-client and total caps
        sub = broker.subscribe(Subscriber(fleet=fleet, node=node, users=users, user=user,
                                          commands=commands(request)))
        last_id = request.headers.get("last-event-id") or since

        async def stream() -> Any:
            try:
                hello = {"epoch": broker.epoch, "version": __version__, "t": time.time()}
                yield b"retry: 2000\n" + sse("hello", _enc.encode(hello))
                if fleet:
                    for m in broker.initial(last_id):
                        yield m
                if node is not None:
                    for first in (broker.status_message(node), broker.node_message(node, sub.commands)):
                        if first:
                            yield first
                if users:
                    yield broker.users_message()
                if user is not None:
                    yield broker.user_message(user, sub.commands)
                while True:
                    try:
                        msg = await asyncio.wait_for(sub.queue.get(), timeout=PING)
                    except asyncio.TimeoutError:
                        yield sse("ping", b'{"t":%.3f}' % time.time())
                        continue
                    if msg is CLOSE:
                        return
                    if msg is RESYNC:
                        msg = broker.full_message() if fleet else b""
                        if node is not None:
                            msg += broker.node_message(node, sub.commands) or b""
                        if not msg:
                            continue
                    yield msg
            finally:
                broker.unsubscribe(sub)
                slot.release()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ---- files -----------------------------------------------------------------------------------------

    app.mount("/ui/static", StaticFiles(directory=str(STATIC)), name="ui-static")
    declare(app, "/ui/static", Policy.PUBLIC)

    @app.get("/ui/vendor/{name}", include_in_schema=False, dependencies=[public()])
    async def vendor(name: str) -> Response:
        if name not in UPLOT_FILES:
            return Response("not found", status_code=404, media_type="text/plain")
        if ext.uplot is None:
            # The page checks for window.uPlot and shows this hint where the charts would be.
            body = f"/* {MISSING_HINT} */\n" + (
                f"window.GPUFLEET_CHARTS_MISSING = {json.dumps(MISSING_HINT)};" if name.endswith(".js") else "")
            media = "text/javascript" if name.endswith(".js") else "text/css"
            return Response(body, status_code=200, media_type=media, headers={"Cache-Control": "no-store"})
        return FileResponse(ext.uplot[name], headers={"Cache-Control": "public, max-age=86400"})
