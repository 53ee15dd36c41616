"""Route policies: the FastAPI dependencies that say who may call a route, and how to read them.

A policy is carried by the dependency object itself (its `policy` attribute), so the test that
walks `app.routes` reads exactly what the server enforces. Routes without dependencies (mounted
static files, FastAPI's own docs) are declared by path in `app.state.route_policies`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Depends, HTTPException, Request

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.routing import BaseRoute


class Role(IntEnum):
    """Ordered: a higher role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"role {text!r} is not one of viewer, operator, admin") from None


class Policy(str, Enum):
    PUBLIC = "public"  # no credential: /healthz, login, static files, API docs
    AGENT = "agent"  # a node's join token or own credential, checked by the route
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


ROLE_POLICY = {Role.VIEWER: Policy.VIEWER, Role.OPERATOR: Policy.OPERATOR, Role.ADMIN: Policy.ADMIN}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (through a session or an API key) or an anonymous reader."""

    name: str
    role: Role
    via: str  # "session" | "key" | "anonymous"
    session: str | None = None  # the session cookie's secret, for its CSRF token and logout


class Authenticator(Protocol):
    """What `require` asks: app.state.auth (hub/auth/service.py)."""

    def identify(self, request: Request) -> Principal | None: ...

    async def check_csrf(self, request: Request, who: Principal) -> None: ...

    def limit(self, request: Request) -> None: ...


class LoginRequired(Exception):
    """Raised for a page asked without a credential: the app answers with a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def _wants_page(request: Request) -> bool:
    return (request.method in SAFE_METHODS and not request.url.path.startswith("/api/")
            and "text/html" in request.headers.get("accept", ""))


class _Require:
    def __init__(self, role: Role) -> None:
        self.role = role
        self.policy = ROLE_POLICY[role]

    async def __call__(self, request: Request) -> Principal:
        auth: Authenticator | None = getattr(request.app.state, "auth", None)
        if auth is None:
            raise HTTPException(503, "this hub has no authenticator configured")
        auth.limit(request)
        who = auth.identify(request)
        if who is None:
            if _wants_page(request):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                raise LoginRequired(target)
            raise HTTPException(401, "log in or send `Authorization: Bearer <API key>` "
                                     "(create one with `gpufleet apikey create`)",
                                headers={"WWW-Authenticate": "Bearer"})
        if who.role < self.role:
            raise HTTPException(403, f"{who.name} has the {who.role.label} role; this needs {self.role.label} or above")
        if request.method not in SAFE_METHODS:
            await auth.check_csrf(request, who)
        request.state.principal = who
        return who

    def __repr__(self) -> str:
        return f"require({self.role.label})"


class _Mark:
    """A policy without a check here: public routes, and agent routes that check the node's token."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def __call__(self, request: Request) -> None:
        auth: Authenticator | None = getattr(request.app.state, "auth", None)
        if auth is not None and self.policy is Policy.PUBLIC:
            auth.limit(request)  # agents are limited by their credential check and body caps instead

    def __repr__(self) -> str:
        return f"{self.policy.value}()"


def require(role: Role) -> Any:
    """Depends(...) admitting `role` and above; as a parameter default it yields the Principal."""
    return Depends(_Require(role))


def public() -> Any:
    return Depends(_Mark(Policy.PUBLIC))


def agent() -> Any:
    return Depends(_Mark(Policy.AGENT))


def declare(app: FastAPI, path: str, policy: Policy) -> None:
    """The policy of a route that takes no dependencies (a Mount, FastAPI's docs pages)."""
    table: dict[str, Policy] = getattr(app.state, "route_policies", None) or {}
    table[path] = policy
    app.state.route_policies = table


def route_policy(app: FastAPI, route: BaseRoute) -> Policy | None:
    """The policy a route enforces, or None when it has none (which a test turns into a failure)."""
    dependant = getattr(route, "dependant", None)
    if dependant is not None:
        found = _policies(dependant)
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            raise ValueError(f"route {getattr(route, 'path', route)} declares several policies: {sorted(found)}")
    table: dict[str, Policy] = getattr(app.state, "route_policies", None) or {}
    return table.get(getattr(route, "path", ""))


def _policies(dependant: Any) -> set[Policy]:
    out: set[Policy] = set()
    for dep in dependant.dependencies:
        p = getattr(dep.call, "policy", None)
        if isinstance(p, Policy):
            out.add(p)
        out |= _policies(dep)
    return out
