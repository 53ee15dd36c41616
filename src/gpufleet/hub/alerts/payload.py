"""What leaves the hub about alerts, as text and JSON: Alertmanager's alert and webhook
shapes, and notification URLs checked and shown without their secrets.

A leaf of the alerts package (it imports only the Alert record and gpufleet.syntax), so
routing (which builds messages) and notify (which sends them) both use it without
importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from ...syntax import redact_url
from .engine import RESOLVED, Alert


def redact(url: str) -> str:
    """A notification URL as it may be shown: chat and webhook URLs carry secrets in the path."""
    return redact_url(url, keep_path=False)


def check_url(kind: str, url: str) -> str | None:
    """None if `url` is usable for `kind`, else what is wrong (no secrets in the text)."""
    if kind in ("webhook", "alertmanager"):
        p = urlsplit(url)
        if p.scheme not in ("http", "https") or not p.hostname:
            return f"{kind} URL {redact(url)!r} must be http:// or https:// with a host"
        return None
    try:
        import apprise
    except ImportError:
        return "apprise is not installed (pip install apprise)"
    ap = apprise.Apprise()
    if not ap.add(url):
        return f"apprise does not understand the URL {redact(url)!r} (see apprise's list of services)"
    return None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def am_alert(a: Alert, external_url: str, *, ends_at: float | None = None, status: bool = False) -> dict[str, Any]:
    """An alert as Alertmanager's v2 API (and its webhook payload) spell it."""
    out: dict[str, Any] = {"labels": a.labels, "annotations": a.annotations, "startsAt": _iso(a.active_at)}
    if a.state == RESOLVED and a.resolved_at is not None:
        out["endsAt"] = _iso(a.resolved_at)
    elif ends_at is not None:
        out["endsAt"] = _iso(ends_at)
    if external_url:
        out["generatorURL"] = f"{external_url}/alerts?fingerprint={a.fingerprint}"
    if status:
        out["status"] = "resolved" if a.state == RESOLVED else "firing"
        out["fingerprint"] = a.fingerprint
        out.setdefault("endsAt", "0001-01-01T00:00:00Z")
    return out


def webhook_payload(*, receiver: str, group_key: str, group_labels: dict[str, str], firing: Sequence[Alert],
                    resolved: Sequence[Alert], external_url: str) -> dict[str, Any]:
    """Alertmanager's webhook format (version 4), so existing receivers understand it."""
    every = [*firing, *resolved]
    alerts = [am_alert(a, external_url, status=True) for a in every]
    common = dict(every[0].labels) if every else {}
    for a in every:
        common = {k: v for k, v in common.items() if a.labels.get(k) == v}
    return {"version": "4", "status": "firing" if firing else "resolved", "receiver": receiver,
            "groupKey": group_key, "groupLabels": group_labels, "commonLabels": common,
            "externalURL": external_url, "alerts": alerts, "truncatedAlerts": 0}
