"""Credentials for tests: accounts and API keys written straight into a hub's hub.db.

Tests talk to a hub the way users do, with a key or a logged-in session, never with auth off.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from gpufleet.hub.auth.policy import Role
from gpufleet.hub.auth.store import AuthStore


def make_user(data: Path, name: str, role: str = "admin", password: str | None = None) -> str:
    """Create the account if missing; returns its password."""
    password = password or secrets.token_urlsafe(16)
    data.mkdir(parents=True, exist_ok=True)
    st = AuthStore(data / "hub.db")
    try:
        if st.user(name) is None:
            st.add_user(name, Role.parse(role), password)
        else:
            st.set_password(name, password)
    finally:
        st.close()
    return password


def make_api_key(data: Path, role: str = "admin", user: str | None = None) -> str:
    """A key for `user` (default test-ROLE, created with that role)."""
    user = user or f"test-{role}"
    data.mkdir(parents=True, exist_ok=True)
    st = AuthStore(data / "hub.db")
    try:
        if st.user(user) is None:
            st.add_user(user, Role.parse(role), secrets.token_urlsafe(16))
        return st.create_key(user)
    finally:
        st.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def authed_client(hub: Any, extensions: Any = (), *, role: str = "admin", **kw: Any) -> Any:
    """TestClient(create_app(hub, extensions, **kw)) that sends an API key of `role` on every request."""
    from fastapi.testclient import TestClient

    from gpufleet.hub.app import create_app

    key = make_api_key(hub.opts.data, role)
    return TestClient(create_app(hub, extensions, **kw), base_url="http://127.0.0.1", headers=bearer(key))
