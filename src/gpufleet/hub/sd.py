"""Prometheus service discovery groups for registered agents (http_sd and file_sd share them).

Prometheus drops the whole answer when one label name is invalid, and `__`-labels steer the
scrape (`__metrics_path__`, `__param_*`, `__address__`). Registration refuses both, and this
filters again so rows stored by an older hub cannot take the fleet's discovery down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..netaddr import is_loopback
from .register import check_agent_url, label_name_problem


class _Node(Protocol):
    name: str
    labels: dict[str, str]
    agent_url: str | None
    source: str
    advertised: bool


def sd_problem(n: _Node) -> str | None:
    """Why a pushing node is left out of service discovery, or None when it is listed.

    An agent listening on loopback only registers a 127.0.0.1 URL: Prometheus would scrape
    itself (or its own host's agent) and label the answer as this node. Only an address the
    agent's owner gave with --advertise is trusted even on loopback (a one-machine set-up).
    """
    if n.source != "push":
        return None
    if not n.agent_url:
        return f"node {n.name} registered no address: restart its agent with --advertise HOST:PORT"
    try:
        p = urlsplit(n.agent_url)
        host, port = p.hostname or "", p.port
    except ValueError:
        return None  # sd_groups drops it; the agent re-registers to fix it
    if is_loopback(host) and not n.advertised:
        shown = f"[{host}]" if ":" in host else host
        return (f"node {n.name} listens on {shown} only: start its agent with --listen 0.0.0.0:{port or 9401} "
                "or --advertise HOST:PORT")
    return None


def sd_groups(nodes: Iterable[_Node]) -> list[dict[str, Any]]:
    groups = []
    for n in sorted(nodes, key=lambda n: n.name):
        if n.source != "push" or not n.agent_url or sd_problem(n) is not None:
            continue
        try:
            url = check_agent_url(n.agent_url)
        except ValueError:
            continue  # stored before registration checked it; the agent re-registers to fix it
        labels = {k: v for k, v in n.labels.items() if label_name_problem(k) is None}
        labels["node"] = n.name
        scheme, _, netloc = url.partition("://")
        if scheme == "https":
            # The one reserved label the hub sets itself, from a checked URL: agents serving TLS.
            labels["__scheme__"] = "https"
        groups.append({"targets": [netloc], "labels": labels})
    return groups
