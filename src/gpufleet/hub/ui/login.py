"""The login page, one-time login links and logging out (server-rendered, in the UI's style).

    GET  /login                 the form (public)
    POST /login                 name + password: a session cookie, then back to `next` (public)
    GET  /login/link?token=...  a one-time link from `gpufleet up`: a session cookie, then / (public)
    POST /logout                end this session (CSRF-checked)
    POST /logout/everywhere     end every session of this user (CSRF-checked)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..auth import Principal, Role, public, require
from ..auth.forms import read_form
from ..auth.limits import TooMany
from ..auth.service import Auth, check_same_origin

Render = Callable[..., HTMLResponse]


def safe_next(target: str | None) -> str:
    """Only a path on this hub: never `//evil.example` or `https://...` (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def mount(app: FastAPI, render: Render) -> None:
    def auth() -> Auth:
        return app.state.auth  # type: ignore[no-any-return]

    def form_page(request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("next", "/")
        ctx.setdefault("name", "")
        return render(request, "login.html", status=status, title="Log in", **ctx)

    @app.get("/login", include_in_schema=False, dependencies=[public()])
    async def login_form(request: Request, next: str = "/", done: str = "") -> Response:  # noqa: A002
        who = auth().identify(request)
        if who is not None and who.via != "anonymous":
            return RedirectResponse(safe_next(next), status_code=303)
        note = {"out": "You are logged out.", "everywhere": "You are logged out on every device."}.get(done, "")
        return form_page(request, next=safe_next(next), done=note)

    @app.post("/login", include_in_schema=False, dependencies=[public()])
    async def login(request: Request) -> Response:
        check_same_origin(request)
        fields = await read_form(request)
        name, password = fields.get("name", "").strip(), fields.get("password", "")
        target = safe_next(fields.get("next"))
        if not name or not password:
            return form_page(request, 400, message="Give your name and password.", next=target, name=name)
        try:
            # argon2 takes tens of milliseconds of CPU: off the event loop, so pages and streams go on
            done = await asyncio.to_thread(auth().login, request, name, password)
        except TooMany as e:
            resp = form_page(request, 429, message=f"{e} (in {e.retry_after} s).", next=target, name=name)
            resp.headers["Retry-After"] = str(e.retry_after)
            return resp
        if done is None:
            return form_page(request, 401, message="Wrong name or password.", next=target, name=name)
        ok = RedirectResponse(target, status_code=303)
        auth().set_cookie(request, ok, done[1])
        return ok

    @app.get("/login/link", include_in_schema=False, dependencies=[public()])
    async def login_link(request: Request, token: str = Query("", max_length=200)) -> Response:
        user = auth().store.use_link(token) if token else None
        if user is None:
            return form_page(request, 401, message="This login link is used up or has expired: log in with "
                                                   "your name and password, or restart `gpufleet up` for a new link.")
        resp = RedirectResponse("/", status_code=303)
        auth().set_cookie(request, resp, auth().store.new_session(user.name))
        return resp

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request, who: Principal = require(Role.VIEWER)) -> Response:
        if who.session is None:
            raise HTTPException(400, "not logged in with a session: an API key is revoked with `gpufleet apikey revoke`")
        auth().store.end_session(who.session)
        resp = RedirectResponse("/login?done=out", status_code=303)
        auth().clear_cookie(request, resp)
        return resp

    @app.post("/logout/everywhere", include_in_schema=False)
    async def logout_everywhere(request: Request, who: Principal = require(Role.VIEWER)) -> Response:
        if who.via == "anonymous":
            raise HTTPException(400, "not logged in")
        auth().store.end_sessions(who.name)
        resp = RedirectResponse("/login?done=everywhere", status_code=303)
        auth().clear_cookie(request, resp)
        return resp
