"""Addresses other machines can reach: this node's primary address, and loopback tests.

A server listening on a wildcard address (0.0.0.0, ::) must tell others a concrete address
(the agent registers it for Prometheus, the hub prints it in its join command). The primary
address is the source address of the default route: connecting a UDP socket picks it
without sending a packet. Standard library only: the agent uses it.
"""

from __future__ import annotations

import ipaddress
import socket

WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
# Documentation ranges (RFC 5737 / RFC 3849): routed like any remote address, never reached.
_PROBE: dict[int, tuple[str, int]] = {socket.AF_INET: ("192.0.2.1", 9), socket.AF_INET6: ("2001:db8::1", 9)}


def is_wildcard(host: str) -> bool:
    return host in WILDCARDS


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and the name localhost: reachable from this machine only."""
    h = host.strip("[]").lower().rstrip(".")
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _route_source(family: int) -> str | None:
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(_PROBE[family])  # UDP connect: a route lookup, no traffic
            addr = str(s.getsockname()[0])
    except OSError:
        return None
    ip = ipaddress.ip_address(addr)
    return None if ip.is_unspecified or ip.is_loopback or ip.is_link_local else addr


def primary_address(prefer_ipv6: bool = False) -> str:
    """The default route's source address; else an address the host name resolves to; else the name."""
    families = [socket.AF_INET6, socket.AF_INET] if prefer_ipv6 else [socket.AF_INET, socket.AF_INET6]
    for family in families:
        addr = _route_source(family)
        if addr is not None:
            return addr
    name = socket.gethostname()
    try:
        for *_, sockaddr in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM):
            addr = str(sockaddr[0])
            if not is_loopback(addr) and not ipaddress.ip_address(addr.split("%")[0]).is_link_local:
                return addr
    except (OSError, ValueError):
        pass
    return name  # no route and no resolvable address: the name is the best guess left


def host_port(host: str, port: int) -> str:
    """`host:port`, with brackets around an IPv6 address."""
    h = host.strip("[]")
    return f"[{h}]:{port}" if ":" in h else f"{h}:{port}"


def reachable_host(listen_host: str) -> str:
    """The address to tell others for a server bound to `listen_host`."""
    if is_wildcard(listen_host):
        return primary_address(prefer_ipv6=listen_host in ("::", "[::]"))
    return listen_host
