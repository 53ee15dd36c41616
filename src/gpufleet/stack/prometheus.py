"""prometheus/prometheus.yml: agents found through the hub's http_sd, the hub's own metrics, rules, Alertmanager.

The same scrape jobs feed vmagent in the VictoriaMetrics set-up (victoriametrics.py). Paths in
the file are relative to its folder (rule files) or absolute (the API key file, mounted at that
same path in the container), so Prometheus run from the folder and the compose service read
the same file unchanged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .options import StackOptions
from .yamltext import yaml_file

# Job names: the exported node-down rule watches `up{job=~"gpufleet.*"}` (builtin.yaml's
# node_down), so the agents' job matches it and the hub's own job must not.
AGENTS_JOB = "gpufleet-agents"
HUB_JOB = "hub"
SD_PATH = "/api/v1/sd/prometheus"  # the hub route (hub/app.py); any viewer API key may read it
SD_REFRESH = "30s"
RULES_DIR = "rules"


def _auth(opts: StackOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if opts.api_key_file is not None:
        # `type: Bearer` explicitly: Prometheus 2.42 sends a credentials_file's key bare without it.
        out["authorization"] = {"type": "Bearer", "credentials_file": str(opts.api_key_file)}
    out.update(_tls(opts))
    return out


def _tls(opts: StackOptions) -> dict[str, Any]:
    return {"tls_config": {"ca_file": str(opts.ca_file)}} if opts.ca_file is not None else {}


def scrape_configs(opts: StackOptions, sd_refresh: bool = True) -> list[dict[str, Any]]:
    """The agents (http_sd) and hub jobs; vmagent sets the refresh by a flag, not in the file."""
    hub = opts.hub
    sd: dict[str, Any] = {"url": hub.base + SD_PATH, **({"refresh_interval": SD_REFRESH} if sd_refresh else {}),
                          **_auth(opts)}
    # Agents serving TLS come labelled __scheme__=https by the hub; they are trusted with the same CA.
    agents: dict[str, Any] = {"job_name": AGENTS_JOB, "http_sd_configs": [sd], **_tls(opts)}
    own: dict[str, Any] = {
        "job_name": HUB_JOB, "scheme": hub.scheme, "metrics_path": hub.path + "/metrics", **_auth(opts),
        "static_configs": [{"targets": [hub.netloc]}],
    }
    return [agents, own]


def alertmanager_target(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    am: dict[str, Any] = {"scheme": parts.scheme or "http", "static_configs": [{"targets": [parts.netloc]}]}
    if parts.path.strip("/"):
        am["path_prefix"] = parts.path
    return am


def files(opts: StackOptions) -> dict[str, str]:
    if opts.tsdb != "prometheus":
        return {}
    doc = {
        "global": {"scrape_interval": opts.scrape_interval, "evaluation_interval": opts.scrape_interval},
        "rule_files": [f"{RULES_DIR}/*.yml"],
        "alerting": {"alertmanagers": [alertmanager_target(opts.alertmanager_url)]},
        "scrape_configs": scrape_configs(opts),
    }
    text = yaml_file(
        doc,
        "Written by `gpufleet stack generate`: run it again (with --force) rather than editing by hand.",
        f"Agents are found through the hub's http_sd ({opts.hub.base}{SD_PATH}); the API key is read",
        "from the file it names (a viewer key is enough). Check: promtool check config prometheus.yml",
    )
    return {"prometheus/prometheus.yml": text}
