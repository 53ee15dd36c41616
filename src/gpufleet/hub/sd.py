"""Prometheus service discovery groups for registered agents (http_sd and file_sd share them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit


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
        parts = urlsplit(n.agent_url)
        if not parts.netloc:
            continue
        labels = {**n.labels, "node": n.name}
        if parts.scheme == "https":
            labels["__scheme__"] = "https"
        if parts.path not in ("", "/"):
            labels["__metrics_path__"] = parts.path
        groups.append({"targets": [parts.netloc], "labels": labels})
    return groups
