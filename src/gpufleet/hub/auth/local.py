"""First-run help: the hint `gpufleet hub` prints without accounts, and `gpufleet up`'s login link."""

from __future__ import annotations

import secrets
from pathlib import Path

from .policy import Role
from .store import AuthStore

LOCAL_ADMIN = "admin"


def no_account_hint(data: Path, anonymous_read: bool) -> str | None:
    store = AuthStore(data / "hub.db")
    try:
        if store.count_users():
            return None
    finally:
        store.close()
    reads = "pages and reads are open to anyone (--anonymous-read); " if anonymous_read else ""
    return (f"No accounts yet: {reads}create one with `gpufleet user add NAME --role admin --data {data}` "
            "(until then only /healthz, the login page and agents are answered).")


def local_admin_link(data: Path) -> str:
    """A path with a single-use login token for an admin, creating `admin` when there is none.

    The created admin's password is random and shown nowhere: the link is the way in, and
    `gpufleet user passwd admin` sets a password to log in with later.
    """
    store = AuthStore(data / "hub.db")
    try:
        admins = [u for u in store.users() if u.role == Role.ADMIN]
        if admins:
            name = admins[0].name
        else:
            store.add_user(LOCAL_ADMIN, Role.ADMIN, secrets.token_urlsafe(32))
            name = LOCAL_ADMIN
        return f"/login/link?token={store.new_link(name)}"
    finally:
        store.close()
