"""`gpufleet user ...` and `gpufleet apikey ...`: accounts and API keys in the hub's hub.db.

They work beside a running hub (SQLite WAL); a change is seen by the hub's next request.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import click

from ...errors import UserError
from .policy import Role
from .store import AuthError, AuthStore

ROLES = ("viewer", "operator", "admin")


def _data_option(f: Any) -> Any:
    return click.option("--data", default="gpufleet-data", show_default=True, envvar="GPUFLEET_DATA",
                        type=click.Path(file_okay=False, path_type=Path), help="the hub's data directory")(f)


def open_store(data: Path, create: bool = False) -> AuthStore:
    if not create and not (data / "hub.db").exists():
        raise UserError(f"no hub data in {data}: pass the hub's --data directory")
    return AuthStore(data / "hub.db")


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).isoformat(timespec="seconds") if t else "-"


def read_password(password_file: Path | None) -> str:
    """From the file (first line), else asked twice on the terminal without echo."""
    if password_file is not None:
        try:
            lines = password_file.read_text().splitlines()
        except OSError as e:
            raise UserError(f"--password-file: cannot read {password_file}: {e.strerror or e}") from None
        if not lines or not lines[0]:
            raise UserError(f"--password-file: {password_file} is empty: put the password on its first line")
        return lines[0]
    return str(click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password"))


@click.group()
def user() -> None:
    """People who use the hub's web UI and API: viewer, operator or admin."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="viewer (reads), operator (also acks, "
              "silences, commands), admin (everything)")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="read the password from this file's first line (else asked twice, not echoed)")
@_data_option
def user_add(name: str, role: str, password_file: Path | None, data: Path) -> None:
    """Create an account."""
    data.mkdir(parents=True, exist_ok=True)
    st = open_store(data, create=True)
    try:
        if st.user(name) is not None:
            raise UserError(f"user {name!r} exists already: change the password with `gpufleet user passwd {name}`")
        st.add_user(name, Role.parse(role), read_password(password_file))
    except AuthError as e:
        raise UserError(str(e)) from None
    finally:
        st.close()
    click.echo(f"added {role} {name}")


@user.command("list")
@_data_option
def user_list(data: Path) -> None:
    """Every account with its role."""
    st = open_store(data)
    try:
        for u in st.users():
            click.echo(f"{u.name:24} {u.role.label:9} created {_when(u.created)}")
    finally:
        st.close()


@user.command("remove")
@click.argument("name")
@_data_option
def user_remove(name: str, data: Path) -> None:
    """Delete an account with its sessions and API keys."""
    st = open_store(data)
    try:
        u = st.user(name)
        if u is None:
            raise UserError(f"no user {name!r}: see `gpufleet user list`")
        if u.role == Role.ADMIN and st.count_admins() == 1 and st.count_users() > 1:
            raise UserError(f"{name} is the last admin: make another admin first")
        st.remove_user(name)
    finally:
        st.close()
    click.echo(f"removed {name} (with its sessions and API keys)")


@user.command("passwd")
@click.argument("name")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="read the new password from this file's first line (else asked twice)")
@_data_option
def user_passwd(name: str, password_file: Path | None, data: Path) -> None:
    """Set a new password (every session of the account ends)."""
    st = open_store(data)
    try:
        if st.user(name) is None:
            raise UserError(f"no user {name!r}: see `gpufleet user list`")
        st.set_password(name, read_password(password_file))
    except AuthError as e:
        raise UserError(str(e)) from None
    finally:
        st.close()
    click.echo(f"new password set for {name}; its sessions have ended")


@click.group()
def apikey() -> None:
    """API keys: `Authorization: Bearer KEY` for scripts, Prometheus and `gpufleet top`."""


def parse_expiry(text: str | None) -> float | None:
    if text is None or text in ("never", "0"):
        return None
    from ...syntax import DurationError, parse_duration

    try:
        seconds = parse_duration(text)
    except DurationError as e:
        raise UserError(f"--expires: {e}") from None
    if seconds <= 0:
        raise UserError(f"--expires {text!r} must be a positive duration like 30d")
    return time.time() + seconds


@apikey.command("create")
@click.option("--user", "user_name", required=True, help="the key acts as this user")
@click.option("--role", type=click.Choice(ROLES), default=None, help="at most the user's role (default: it)")
@click.option("--expires", default=None, help="lifetime such as 30d or 12h (default: never)")
@click.option("--note", default="", help="what the key is for")
@_data_option
def apikey_create(user_name: str, role: str | None, expires: str | None, note: str, data: Path) -> None:
    """Print a new API key (shown once: the last word of the output)."""
    st = open_store(data)
    try:
        key = st.create_key(user_name, Role.parse(role) if role else None, parse_expiry(expires), note)
    except AuthError as e:
        raise UserError(str(e)) from None
    finally:
        st.close()
    click.echo(f"new API key for {user_name}: {key}")


@apikey.command("list")
@click.option("--user", "user_name", default=None, help="only this user's keys")
@_data_option
def apikey_list(user_name: str | None, data: Path) -> None:
    """API keys (their first characters only)."""
    st = open_store(data)
    now = time.time()
    try:
        for k in st.keys(user_name):
            state = "revoked" if k.revoked else ("expired" if k.expires and k.expires <= now else "active")
            click.echo(f"{k.prefix}...  {k.user:16} {k.role.label:9} {state:8} created {_when(k.created)}"
                       f"  expires {_when(k.expires)}  {k.note}")
    finally:
        st.close()


@apikey.command("revoke")
@click.argument("key_or_prefix")
@_data_option
def apikey_revoke(key_or_prefix: str, data: Path) -> None:
    """Revoke a key at once (by the key or the prefix `apikey list` shows)."""
    st = open_store(data)
    try:
        n = st.revoke_key(key_or_prefix.removesuffix("..."))
    finally:
        st.close()
    if not n:
        raise UserError(f"no active API key matches {key_or_prefix!r}: see `gpufleet apikey list`")
    click.echo(f"revoked {n} API key(s)")
