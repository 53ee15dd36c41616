"""grafana/provisioning/: the datasource, the dashboard provider and the dashboards' JSON.

Grafana reads the folder at start (mounted at /etc/grafana/provisioning); the dashboards sit
in provisioning/dashboards/gpufleet/, the provider's path. Every panel queries the datasource
uid declared here (dashboards/kit.py's DATASOURCE_UID).
"""

from __future__ import annotations

import json

from .dashboards import DASHBOARDS
from .dashboards.kit import DATASOURCE_TYPE, DATASOURCE_UID
from .options import StackOptions
from .yamltext import yaml_file

PROVISIONING = "grafana/provisioning"
DASHBOARD_DIR = "dashboards/gpufleet"  # under PROVISIONING
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"  # where compose.py mounts it


def datasource(opts: StackOptions) -> dict[str, object]:
    return {"apiVersion": 1, "datasources": [{
        "name": "gpufleet", "type": DATASOURCE_TYPE, "uid": DATASOURCE_UID, "access": "proxy",
        "url": opts.query_url, "isDefault": True, "editable": False,
        # Grafana's $__rate_interval needs the scrape interval to cover at least two samples.
        "jsonData": {"timeInterval": opts.scrape_interval, "httpMethod": "POST"},
    }]}


def provider() -> dict[str, object]:
    return {"apiVersion": 1, "providers": [{
        "name": "gpufleet", "folder": "gpufleet", "type": "file", "disableDeletion": True, "allowUiUpdates": False,
        "updateIntervalSeconds": 60, "options": {"path": f"{GRAFANA_PROVISIONING}/{DASHBOARD_DIR}"},
    }]}


def files(opts: StackOptions) -> dict[str, str]:
    head = "Written by `gpufleet stack generate`; Grafana reads it from " + GRAFANA_PROVISIONING + "."
    out = {
        f"{PROVISIONING}/datasources/gpufleet.yml": yaml_file(datasource(opts), head),
        f"{PROVISIONING}/dashboards/gpufleet.yml": yaml_file(provider(), head),
    }
    for name, build in DASHBOARDS.items():
        out[f"{PROVISIONING}/{DASHBOARD_DIR}/{name}"] = json.dumps(build().build(), indent=2, sort_keys=True) + "\n"
    return out
