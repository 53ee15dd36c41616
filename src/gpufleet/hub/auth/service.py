"""Who is calling, and may they: API keys, session cookies, anonymous reads, CSRF, rate limits.

A request is identified by, in order: `Authorization: Bearer KEY` (an API key; a bad one is a
401, never a fallback to the cookie), the session cookie, or, with --anonymous-read, an anonymous
viewer. Changes made with a session cookie must also carry the session's CSRF token (header
X-CSRF-Token from the UI's JS, or the form field csrf_token) and must not come from another site.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from .forms import read_form
from .limits import FailureWindow, RateLimiter, StreamCaps, TooMany
from .options import AccessOptions
from .policy import Principal, Role
from .store import KEY_PREFIX, AuthStore, User

if TYPE_CHECKING:
    from starlette.responses import Response

COOKIE = "gpufleet_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
ANONYMOUS = Principal("anonymous", Role.VIEWER, "anonymous")


def csrf_token(session: str) -> str:
    """Tied to the session: derived from its secret, so it needs no storage and dies with it."""
    return hmac.new(session.encode(), b"gpufleet-csrf", hashlib.sha256).hexdigest()


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Auth:
    def __init__(self, store: AuthStore, opts: AccessOptions | None = None) -> None:
        self.store = store
        self.opts = opts or AccessOptions()
        o = self.opts
        self.requests = RateLimiter(o.request_rate, o.request_burst)
        self.login_clients = FailureWindow(o.login_failures_per_client, o.login_window)
        self.login_accounts = FailureWindow(o.login_failures_per_account, o.login_window)
        self.streams = StreamCaps(o.streams_per_client, o.streams_total)

    # ---- identity --------------------------------------------------------------------------------

    def identify(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if not value and scheme.startswith(f"{KEY_PREFIX}_"):
                # Prometheus 2.42's http_sd sends a credentials_file's key without "Bearer " unless the
                # config says `type: Bearer`: accept a bare key rather than leave the fleet undiscovered.
                scheme, value = "bearer", scheme
            if scheme.lower() != "bearer" or not value.strip():
                return None
            found = self.store.key_user(value.strip())
            if found is None:
                return None
            user, role = found
            return Principal(user.name, role, "key")
        token = request.cookies.get(COOKIE)
        if token:
            account = self.store.session_user(token)
            if account is not None:
                return Principal(account.name, account.role, "session", token)
        return ANONYMOUS if self.opts.anonymous_read else None

    def limit(self, request: Request) -> None:
        self.requests.check(client_of(request))

    # ---- CSRF ------------------------------------------------------------------------------------

    async def check_csrf(self, request: Request, who: Principal) -> None:
        if who.via == "key":
            return  # a header the browser never adds by itself: no cross-site request can carry it
        check_same_origin(request)
        if who.session is None:
            raise HTTPException(403, "changes need a logged-in user or an API key")
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            sent = (await read_form(request)).get(CSRF_FIELD)
        if not sent or not hmac.compare_digest(sent, csrf_token(who.session)):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")

    # ---- logging in ------------------------------------------------------------------------------

    def login(self, request: Request, name: str, password: str) -> tuple[User, str] | None:
        """(user, session token) or None for a wrong name or password; TooMany when rate limited."""
        client = client_of(request)
        self.login_clients.check(client, f"client {client}")
        self.login_accounts.check(name, f"account {name!r}")
        user = self.store.check_password(name, password)
        if user is None:
            self.login_clients.fail(client)
            self.login_accounts.fail(name)
            return None
        self.login_accounts.clear(name)
        return user, self.store.new_session(user.name)

    def set_cookie(self, request: Request, response: Response, session: str) -> None:
        response.set_cookie(COOKIE, session, max_age=7 * 86400, path="/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")


def check_same_origin(request: Request) -> None:
    """Refuse a change sent by another site's page (a cross-site form POST, a fetch from evil.example)."""
    site = request.headers.get("sec-fetch-site", "")
    if site in ("cross-site", "same-site"):  # same-site: another port or subdomain, still not us
        raise HTTPException(403, "cross-site request refused")
    if site == "same-origin":
        return
    origin = request.headers.get("origin")
    if origin and origin != "null":
        if urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
            raise HTTPException(403, f"request from another site ({origin}) refused")
    elif origin == "null":
        raise HTTPException(403, "request from an opaque origin refused")


__all__ = ["Auth", "COOKIE", "CSRF_FIELD", "CSRF_HEADER", "TooMany", "check_same_origin", "csrf_token"]
