"""What an agent may register: node labels and the URL Prometheus scrapes it at.

Everything registered ends up in Prometheus' http_sd answer, and Prometheus drops the
*whole* answer (every node of the fleet) when one label name is invalid; labels starting
with `__` steer the scrape itself (`__address__`, `__metrics_path__`, `__param_*`), and a
URL with a path made Prometheus fetch cloud metadata. So names are checked here, at the
door, and `sd.py` filters again for rows stored before these rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..syntax import LABEL_NAME

MAX_BODY_BYTES = 64 * 1024
MAX_LABELS = 64
MAX_LABEL_VALUE_BYTES = 1024
MAX_URL_CHARS = 512

HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def label_name_problem(name: str) -> str | None:
    """None for a name Prometheus accepts and a user may set; else why not."""
    if not LABEL_NAME.fullmatch(name):
        return f"label name {name[:80]!r} is not a valid Prometheus label name (letters, digits, _)"
    if name.startswith("__"):
        return f"label name {name[:80]!r} starts with __, which Prometheus reserves"
    return None


def check_labels(labels: Mapping[str, str]) -> None:
    """Raise ValueError naming the first problem."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"{len(labels)} labels: at most {MAX_LABELS} are accepted")
    for name, value in labels.items():
        problem = label_name_problem(name)
        if problem:
            raise ValueError(problem)
        if len(value.encode("utf-8", "surrogatepass")) > MAX_LABEL_VALUE_BYTES:
            raise ValueError(f"label {name!r}: value longer than {MAX_LABEL_VALUE_BYTES} bytes")


def check_agent_url(url: str) -> str:
    """The URL as `scheme://host[:port]`; ValueError when it is anything more or less."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"agent_url is longer than {MAX_URL_CHARS} characters")
    try:
        p = urlsplit(url)
        port = p.port
    except ValueError as e:
        raise ValueError(f"agent_url is not a valid URL: {e}") from None
    if p.scheme not in ("http", "https"):
        raise ValueError("agent_url must be http://HOST:PORT or https://HOST:PORT")
    if p.username is not None or p.password is not None or "@" in p.netloc:
        raise ValueError("agent_url must not carry user:password@")
    if p.path not in ("", "/") or p.query or p.fragment or url.rstrip("/").endswith("?"):
        raise ValueError("agent_url must be scheme://HOST:PORT only: no path, query or fragment")
    host = p.hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not HOST_NAME.fullmatch(host):
            raise ValueError(f"agent_url host {host[:80]!r} is not a host name or IP address") from None
    else:
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            # 169.254.169.254 is the cloud metadata service: no agent lives there.
            raise ValueError(f"agent_url host {host} is a link-local, multicast or unspecified address")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{p.scheme}://{netloc}"
