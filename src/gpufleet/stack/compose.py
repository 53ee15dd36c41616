"""compose.yaml: the set-up as Docker Compose services, each port published on --bind only.

No secret is written into it: Grafana's admin password comes from the environment
(GRAFANA_ADMIN_PASSWORD, required), and the hub API key file is mounted read-only at the same
absolute path the scrape config names. Images are pinned; change a tag in IMAGES to upgrade.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import victoriametrics as vm
from .options import SERVICE_PORTS, StackOptions, mounted_files
from .prometheus import RULES_DIR
from .yamltext import yaml_file

IMAGES = {
    "prometheus": "prom/prometheus:v2.53.2",
    "alertmanager": "prom/alertmanager:v0.27.0",
    "grafana": "grafana/grafana-oss:10.4.8",
    "victoriametrics": "victoriametrics/victoria-metrics:v1.103.0",
    "vmagent": "victoriametrics/vmagent:v1.103.0",
    "vmalert": "victoriametrics/vmalert:v1.103.0",
}


def _key_mount(opts: StackOptions) -> list[str]:
    return [f"{p}:{p}:ro" for p in mounted_files(opts)]


def _prometheus(opts: StackOptions) -> dict[str, Any]:
    return {"command": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                        "--storage.tsdb.retention.time=400d", f"--web.listen-address=:{SERVICE_PORTS['prometheus']}"],
            "volumes": ["./prometheus:/etc/prometheus:ro", "prometheus-data:/prometheus", *_key_mount(opts)],
            "depends_on": ["alertmanager"]}


def _victoriametrics(opts: StackOptions) -> dict[str, Any]:
    return {"command": vm.victoriametrics_flags(), "volumes": ["victoriametrics-data:/storage"]}


def _vmagent(opts: StackOptions) -> dict[str, Any]:
    return {"command": vm.vmagent_flags("/etc/vmagent/scrape.yml"),
            "volumes": ["./vmagent:/etc/vmagent:ro", "vmagent-data:/vmagentdata", *_key_mount(opts)],
            "depends_on": ["victoriametrics"]}


def _vmalert(opts: StackOptions) -> dict[str, Any]:
    return {"command": vm.vmalert_flags(opts, f"/etc/vmalert/{RULES_DIR}/*.yml"),
            "volumes": ["./vmalert:/etc/vmalert:ro"], "depends_on": ["victoriametrics", "alertmanager"]}


def _alertmanager(opts: StackOptions) -> dict[str, Any]:
    # An empty cluster address turns off the gossip port, which would listen on every interface.
    return {"command": ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager",
                        "--cluster.listen-address=", f"--web.listen-address=:{SERVICE_PORTS['alertmanager']}"],
            "volumes": ["./alertmanager:/etc/alertmanager:ro", "alertmanager-data:/alertmanager"]}


def _grafana(opts: StackOptions) -> dict[str, Any]:
    store = "prometheus" if opts.tsdb == "prometheus" else "victoriametrics"
    return {"environment": {
                "GF_SECURITY_ADMIN_USER": "${GRAFANA_ADMIN_USER:-admin}",
                "GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD}",
                "GF_USERS_ALLOW_SIGN_UP": "false", "GF_ANALYTICS_REPORTING_ENABLED": "false",
                "GF_ANALYTICS_CHECK_FOR_UPDATES": "false"},
            "volumes": ["./grafana/provisioning:/etc/grafana/provisioning:ro", "grafana-data:/var/lib/grafana"],
            "depends_on": [store]}


SERVICE_BUILDERS: dict[str, Callable[[StackOptions], dict[str, Any]]] = {
    "prometheus": _prometheus, "victoriametrics": _victoriametrics, "vmagent": _vmagent, "vmalert": _vmalert,
    "alertmanager": _alertmanager, "grafana": _grafana,
}
VOLUMES = {"prometheus": "prometheus-data", "victoriametrics": "victoriametrics-data", "vmagent": "vmagent-data",
           "alertmanager": "alertmanager-data", "grafana": "grafana-data"}


def config(opts: StackOptions) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for name in opts.services:
        svc = {"image": IMAGES[name], "restart": "unless-stopped", **SERVICE_BUILDERS[name](opts)}
        svc["ports"] = [f"{opts.bind_host}:{opts.host_port(name)}:{SERVICE_PORTS[name]}"]
        services[name] = svc
    return {"name": "gpufleet-stack", "services": services,
            "volumes": {VOLUMES[n]: {} for n in opts.services if n in VOLUMES}}


def files(opts: StackOptions) -> dict[str, str]:
    ports = ", ".join(f"{n} {opts.bind_host}:{opts.host_port(n)}" for n in opts.services)
    return {"compose.yaml": yaml_file(
        config(opts),
        "Written by `gpufleet stack generate`. Start: GRAFANA_ADMIN_PASSWORD=... docker compose up -d",
        f"Published: {ports} (--bind and --port change them).",
        "The containers read the hub API key file as their own users: make it readable to them",
        "(e.g. chown 65534 for Prometheus, vmagent runs as root), and keep it out of this folder.",
    )}
