"""Prometheus service discovery groups for registered agents (http_sd and file_sd share them).

Prometheus drops the whole answer when one label name is invalid, and `__`-labels steer the
scrape (`__metrics_path__`, `__param_*`, `__address__`). Registration refuses both, and this
filters again so rows stored by an older hub cannot take the fleet's discovery down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from .register import check_agent_url, label_name_problem


class _Node(Protocol):
    name: str
    labels: dict[str, str]
    agent_url: str | None
    source: str


def sd_groups(nodes: Iterable[_Node]) -> list[dict[str, Any]]:
    groups = []
    for n in sorted(nodes, key=lambda n: n.name):
        if n.source != "push" or not n.agent_url:
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
