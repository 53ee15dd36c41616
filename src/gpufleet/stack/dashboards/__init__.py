"""gpufleet's Grafana dashboards, built from the metric catalogue with grafana-foundation-sdk.

One module per dashboard, registered in DASHBOARDS (file name -> builder); grafana.py writes
each as JSON into the provisioning folder.
"""

from __future__ import annotations

from collections.abc import Callable

from . import alerts, fleet, gpu, node, users
from .kit import Board

DASHBOARDS: dict[str, Callable[[], Board]] = {
    "fleet-overview.json": fleet.build,
    "node.json": node.build,
    "gpu-detail.json": gpu.build,
    "users.json": users.build,
    "alerts.json": alerts.build,
}
