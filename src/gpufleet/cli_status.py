"""`gpufleet status --hub URL`: is the fleet healthy? Exit 0 healthy, 1 degraded, 2 unreachable.

One request to the hub's `/api/v1/status` (a viewer's API key). Exit 2 also covers what the
user must fix before an answer can come (a bad URL, a refused key), each said in one line.
Agent-side imports only (gpufleet.httpclient, not httpx): it runs from any node, agent-only installs too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .errors import UserError

HEALTHY, DEGRADED, UNREACHABLE = 0, 1, 2


def fetch_status(hub: str, api_key: str | None, ca: Path | None, timeout: float = 10.0) -> dict[str, Any]:
    """The hub's status report; UserError (exit 2) when it cannot be had."""
    from .httpclient import Client, HTTPError
    from .syntax import normalize_hub_url, redact_url
    from .tls import client_verify, describe_tls_error

    base = normalize_hub_url(hub)
    shown = redact_url(base)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    client = Client(timeout=timeout, verify=client_verify(ca))  # redirects are not followed
    try:
        r = client.get(f"{base}/api/v1/status", headers=headers)
    except HTTPError as e:
        tls = describe_tls_error(e)
        raise Unreachable(f"hub {shown} is unreachable: {tls or str(e)}") from None
    finally:
        client.close()
    if r.status_code in (401, 403):
        raise UserError(f"hub {shown} refused the request (HTTP {r.status_code}): pass a viewer's API key with "
                        "--api-key KEY or GPUFLEET_API_KEY (`gpufleet apikey create` on the hub)")
    if r.status_code == 404:
        raise UserError(f"{shown} has no /api/v1/status: is it a gpufleet hub of this version (or newer)?")
    if r.status_code != 200:
        raise Unreachable(f"hub {shown} answered HTTP {r.status_code}: {r.text[:200].strip()}")
    try:
        body: dict[str, Any] = r.json()
        body["status"]  # noqa: B018
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{shown} did not answer with a gpufleet status report: is it a gpufleet hub?") from None
    return body


class Unreachable(UserError):
    """No answer from the hub (exit 2, like every error a user must act on)."""


def _names(nodes: list[dict[str, Any]], status: str) -> str:
    names = [n["name"] for n in nodes if n["status"] == status]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f" ({shown})" if names else ""


def render(hub: str, s: dict[str, Any]) -> list[str]:
    a, st, rw, al = s["agents"], s["store"], s["remote_write"], s["alerts"]
    lines = [f"hub {hub}: {s['status'].upper()} (gpufleet {s['version']}, up {s['uptime_seconds']:.0f} s)"]
    store = f"store: {st['kind']}, " + ("ok" if st["ok"] else st["problem"])
    lines.append(store)
    lines.append(f"agents: {a['up']} up, {a['stale']} stale{_names(a['not_up'], 'stale')}, "
                 f"{a['down']} down{_names(a['not_up'], 'down')}"
                 + (f", {a['moved']} moved to another hub{_names(a['not_up'], 'moved')}" if a.get("moved") else ""))
    if not al["enabled"]:
        lines.append("alerts: not evaluated by this hub")
    else:
        # Firing alerts that count are listed once, under the problems below; the silenced
        # ones (which do not make the hub degraded) are named here.
        firing = al["firing"]
        silenced = [f"{f['alertname']}{' on ' + f['node'] if f.get('node') else ''}" for f in firing if f.get("silenced")]
        lines.append(f"alerts: {len(firing)} firing" + (f", {len(silenced)} silenced: " + ", ".join(silenced[:10])
                                                        + (" …" if len(silenced) > 10 else "") if silenced else ""))
    if rw["configured"]:
        lines.append(f"remote write: {rw['url']} " + ("ok" if rw["ok"] else f"failing: {rw['last_error']}")
                     + f", {rw['queue_samples']} samples queued")
    else:
        lines.append("remote write: not configured")
    for p in s["problems"]:
        lines.append(f"  - {p}")
    for p in a.get("not_in_service_discovery", []):
        lines.append(f"  note: {p}")
    return lines


@click.command("status")
@click.option("--hub", "hub", envvar="GPUFLEET_HUB", default="http://127.0.0.1:8080", show_default=True,
              metavar="URL", help="the hub to ask [env GPUFLEET_HUB]")
@click.option("--api-key", envvar="GPUFLEET_API_KEY", metavar="KEY", help="a viewer's API key [env GPUFLEET_API_KEY]")
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), help="trust only this CA for the hub's HTTPS")
@click.option("--json", "as_json", is_flag=True, help="print the hub's report as JSON (with `hub` added)")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 300), help="seconds")
def status(hub: str, api_key: str | None, ca: Path | None, as_json: bool, timeout: float) -> None:
    """Fleet health: hub, store, agents up/stale/down, alerts firing, remote write.

    Exit 0 healthy, 1 degraded, 2 unreachable (or a usage problem, said in one line)."""
    from .syntax import redact_url

    shown = redact_url(hub)  # a proxy's user:password in the URL stays out of output and logs
    try:
        s = fetch_status(hub, api_key, ca, timeout)
    except Unreachable as e:
        if as_json:
            click.echo(json.dumps({"hub": shown, "status": "unreachable", "error": str(e)}))
        raise
    hub = shown
    if as_json:
        click.echo(json.dumps({"hub": hub, **s}, indent=2))
    else:
        try:
            lines = render(hub, s)
        except (KeyError, TypeError, ValueError, AttributeError):  # another version's (or server's) report
            raise UserError(f"{hub} answered a status report this gpufleet cannot read: is it a gpufleet hub of "
                            "the same version? (--json prints it as it came)") from None
        click.echo("\n".join(lines))
    sys.exit(HEALTHY if s["status"] == "healthy" else DEGRADED)
