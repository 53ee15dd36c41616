"""Per-interface traffic counters from /proc/net/dev (loopback included, as node_exporter)."""

from __future__ import annotations

from .. import procfs
from ..snapshot import NetInterface, NodeSnapshot
from .base import CollectContext


def interface_values(d: procfs.NetDev) -> dict[str, float]:
    return {
        "receive_bytes_total": float(d.receive_bytes),
        "transmit_bytes_total": float(d.transmit_bytes),
        "receive_packets_total": float(d.receive_packets),
        "transmit_packets_total": float(d.transmit_packets),
        "receive_errors_total": float(d.receive_errors),
        "transmit_errors_total": float(d.transmit_errors),
        "receive_drops_total": float(d.receive_drops),
        "transmit_drops_total": float(d.transmit_drops),
    }


class NetworkCollector:
    name = "network"

    def __init__(self, ctx: CollectContext) -> None:
        self._path = ctx.procfs / "net" / "dev"

    def collect(self, snap: NodeSnapshot) -> None:
        text = procfs.read_text(self._path)
        if text is None:
            raise RuntimeError(f"cannot read {self._path}")
        snap.networks = [
            NetInterface(interface=d.interface, values=interface_values(d)) for d in procfs.parse_net_dev(text)
        ]
