"""What `gpufleet stack generate` was asked for, checked once, so every output reads the same facts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ..errors import UserError

Tsdb = Literal["prometheus", "victoriametrics"]
TSDBS: tuple[Tsdb, ...] = ("prometheus", "victoriametrics")

# Compose services and the port each listens on inside its container (published on --bind).
SERVICE_PORTS: dict[str, int] = {
    "prometheus": 9090, "victoriametrics": 8428, "vmagent": 8429, "vmalert": 8880,
    "alertmanager": 9093, "grafana": 3000,
}
# The services of each store's set-up, in the order the compose file lists them.
SERVICES: dict[Tsdb, tuple[str, ...]] = {
    "prometheus": ("prometheus", "alertmanager", "grafana"),
    "victoriametrics": ("victoriametrics", "vmagent", "vmalert", "alertmanager", "grafana"),
}


@dataclass(frozen=True, slots=True)
class HubUrl:
    scheme: str
    netloc: str  # host:port as Prometheus targets write it
    path: str  # a path prefix ("" or "/gpufleet"), without the trailing slash

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.path}"

    @property
    def host(self) -> str:
        return urlsplit(self.base).hostname or ""

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class StackOptions:
    hub: HubUrl
    tsdb: Tsdb = "prometheus"
    api_key_file: Path | None = None  # absolute; the same path inside the containers
    ca_file: Path | None = None  # absolute: the CA that signed the hub's (and agents') TLS certificates
    bind: str = "127.0.0.1"
    scrape_interval: str = "15s"
    alertmanager_url: str = "http://alertmanager:9093"
    datasource_url: str | None = None  # None: the compose service of the chosen store
    rules_file: Path | None = None  # the user's alerts.yaml, beside the built-in rules
    ports: dict[str, int] = field(default_factory=dict)  # published host port per service

    @property
    def services(self) -> tuple[str, ...]:
        return SERVICES[self.tsdb]

    def host_port(self, service: str) -> int:
        return self.ports.get(service, SERVICE_PORTS[service])

    @property
    def bind_host(self) -> str:
        """--bind as it goes before ':PORT' (compose's ports, a URL): an IPv6 address in brackets."""
        return f"[{self.bind}]" if ":" in self.bind else self.bind

    @property
    def query_url(self) -> str:
        """Where Grafana (and vmalert) read series: the store's service in the compose network."""
        if self.datasource_url:
            return self.datasource_url
        store = "prometheus" if self.tsdb == "prometheus" else "victoriametrics"
        return f"http://{store}:{SERVICE_PORTS[store]}"


def parse_hub_url(text: str) -> HubUrl:
    try:
        parts = urlsplit(text.strip())
    except ValueError as e:  # '[::1' (urllib's words say what is wrong)
        raise UserError(f"--hub {text!r}: {e}; give the hub's address as http://HOST:PORT") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--hub {text!r}: give the hub's address as http://HOST:PORT or https://HOST:PORT")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UserError(f"--hub {text!r}: no credentials, query or fragment in the URL (the API key goes in "
                        "--api-key-file)")
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"--hub {text!r}: the port is not a number from 1 to 65535") from None
    netloc = parts.netloc if port else f"{parts.netloc}:{443 if parts.scheme == 'https' else 80}"
    return HubUrl(parts.scheme, netloc, parts.path.rstrip("/"))


def parse_bind(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise UserError(f"--bind {text!r}: give an IP address, e.g. 127.0.0.1 (the default) or 0.0.0.0") from None


def parse_ports(items: tuple[str, ...], tsdb: Tsdb) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in SERVICES[tsdb]:
            raise UserError(f"--port {item!r}: write SERVICE=PORT with SERVICE one of {', '.join(SERVICES[tsdb])}")
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise UserError(f"--port {item!r}: the port must be a number from 1 to 65535")
        out[name] = int(value)
    taken: dict[int, str] = {}
    for name in SERVICES[tsdb]:
        port = out.get(name, SERVICE_PORTS[name])
        if port in taken:  # compose would fail at `up` with "port is already allocated"
            raise UserError(f"--port: {taken[port]} and {name} would both publish host port {port}: "
                            f"give one another port, e.g. --port {name}={port + 1}")
        taken[port] = name
    return out


def check_api_key_file(path: Path) -> Path:
    p = path.expanduser().resolve()
    if not p.is_file():
        raise UserError(f"--api-key-file {path}: no such file; write a viewer API key into it "
                        "(gpufleet apikey create --user prometheus --role viewer) with mode 0600")
    return p


def check_ca_file(path: Path) -> Path:
    p = path.expanduser().resolve()
    if not p.is_file() or b"-----BEGIN CERTIFICATE-----" not in p.read_bytes()[:65536]:
        raise UserError(f"--ca-file {path}: not a PEM certificate file (e.g. the ca.pem of `gpufleet tls selfsigned`)")
    return p


def mounted_files(opts: StackOptions) -> list[Path]:
    """Files outside the stack folder the scrapers read: mounted read-only at the same path."""
    return [p for p in (opts.api_key_file, opts.ca_file) if p is not None]
