"""Every route of the whole hub (core API, alerts, web UI) declares who may call it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from gpufleet.hub.app import create_app
from gpufleet.hub.extensions import load_extensions
from gpufleet.hub.auth import Policy, route_policy
from gpufleet.hub.service import Hub, HubOptions

# The routes of issue 9's findings, pinned: a change here is a decision, not an accident.
EXPECTED = {
    ("GET", "/healthz"): Policy.PUBLIC,
    ("GET", "/openapi.json"): Policy.PUBLIC,
    ("GET", "/docs"): Policy.PUBLIC,
    ("GET", "/docs/static/{name}"): Policy.PUBLIC,
    ("GET", "/ui/static"): Policy.PUBLIC,
    ("GET", "/ui/vendor/{name}"): Policy.PUBLIC,
    ("POST", "/api/v1/register"): Policy.AGENT,
    ("POST", "/api/v1/push"): Policy.AGENT,
    ("POST", "/api/v1/push/compact"): Policy.AGENT,
    ("GET", "/api/v1/nodes"): Policy.VIEWER,
    ("GET", "/api/v1/nodes/{name}/snapshot"): Policy.VIEWER,
    ("GET", "/api/v1/snapshots"): Policy.VIEWER,
    ("GET", "/api/v1/sd/prometheus"): Policy.VIEWER,
    ("GET", "/api/v1/status"): Policy.VIEWER,
    ("GET", "/metrics"): Policy.VIEWER,
    ("GET", "/api/v1/events"): Policy.VIEWER,
    ("GET", "/"): Policy.VIEWER,
    ("GET", "/nodes/{name}"): Policy.VIEWER,
    ("GET", "/api/v1/alerts"): Policy.VIEWER,
    ("POST", "/api/v1/alerts/{fingerprint}/ack"): Policy.OPERATOR,
    ("DELETE", "/api/v1/alerts/{fingerprint}/ack"): Policy.OPERATOR,
    ("POST", "/api/v1/silences"): Policy.OPERATOR,
    ("DELETE", "/api/v1/silences/{sid}"): Policy.OPERATOR,
    ("POST", "/api/v1/notifications/test"): Policy.OPERATOR,
    # Issue 12's accounting (who reads whose rows is --usage-visibility's, tested in test_usage_surfaces.py).
    ("GET", "/api/v1/usage"): Policy.VIEWER,
    ("GET", "/api/v1/usage/monthly"): Policy.VIEWER,
    ("GET", "/api/v1/usage/trend"): Policy.VIEWER,
    ("GET", "/api/v1/usage/events"): Policy.VIEWER,
    ("GET", "/api/v1/jobs"): Policy.VIEWER,
    ("GET", "/api/v1/jobs/{key:path}"): Policy.VIEWER,
    ("GET", "/usage"): Policy.VIEWER,
    ("GET", "/jobs"): Policy.VIEWER,
    ("GET", "/jobs/{key:path}"): Policy.VIEWER,
}
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Changes to one's own session: logging in (anyone), out, and out everywhere (any role; CSRF-checked).
PUBLIC_CHANGES = {"/login", "/logout", "/logout/everywhere"}


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory):
    hub = Hub(HubOptions(data=tmp_path_factory.mktemp("policies") / "data"))
    app = create_app(hub, load_extensions(hub), background=False)
    found: dict[tuple[str, str], Policy | None] = {}
    for route in app.routes:
        methods = getattr(route, "methods", None) or {"GET"}
        for m in methods - {"HEAD"}:
            found[(m, getattr(route, "path", repr(route)))] = route_policy(app, route)
    yield found
    hub.close()


def test_every_route_has_a_policy(routes: dict[tuple[str, str], Policy | None]) -> None:
    missing = sorted(f"{m} {p}" for (m, p), pol in routes.items() if pol is None)
    assert not missing, "routes without a policy (see gpufleet/hub/auth/__init__.py): " + ", ".join(missing)


def test_alerts_and_ui_routes_are_walked(routes: dict[tuple[str, str], Policy | None]) -> None:
    # The extensions mount their routes into the same app: a walk that missed them would pass vacuously.
    assert ("GET", "/api/v1/alerts") in routes and ("GET", "/api/v1/events") in routes


@pytest.mark.parametrize(("key", "policy"), sorted(EXPECTED.items()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.value)
def test_pinned_policies(routes: dict[tuple[str, str], Policy | None], key: tuple[str, str], policy: Policy) -> None:
    assert routes.get(key) == policy


def test_no_change_is_open_to_viewers_or_anyone(routes: dict[tuple[str, str], Policy | None]) -> None:
    loose = sorted(f"{m} {p}: {pol}" for (m, p), pol in routes.items()
                   if m in CHANGING and pol in (Policy.PUBLIC, Policy.VIEWER) and p not in PUBLIC_CHANGES)
    assert not loose, loose


def test_api_routes_are_api_routes(routes: dict[tuple[str, str], Policy | None]) -> None:
    # Sanity for the walker: FastAPI's own routes carry dependencies we can read.
    assert all(isinstance(k, tuple) for k in routes)
    assert APIRoute  # imported for readers: dependency-declared policies live on APIRoute.dependant
