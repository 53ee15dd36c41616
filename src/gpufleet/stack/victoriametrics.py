"""The VictoriaMetrics set-up: vmagent/scrape.yml (the same scrape jobs as prometheus.yml) and the
flags of vmagent, vmalert and VictoriaMetrics, which compose.py puts on their command lines.

vmagent scrapes and remote-writes into VictoriaMetrics; vmalert evaluates the exported rules
against it, sends alerts to Alertmanager and writes its ALERTS series back (the alerts
dashboard reads them), restoring pending state from it after a restart.
"""

from __future__ import annotations

from .options import SERVICE_PORTS, StackOptions
from .prometheus import RULES_DIR, SD_REFRESH, scrape_configs
from .yamltext import yaml_file

SCRAPE_FILE = "vmagent/scrape.yml"
VM_URL = f"http://victoriametrics:{SERVICE_PORTS['victoriametrics']}"


def vmagent_flags(config: str, vm_url: str = VM_URL, data: str = "/vmagentdata",
                  listen: str = f":{SERVICE_PORTS['vmagent']}") -> list[str]:
    """vmagent's command line (compose.py's defaults: the containers' paths and network)."""
    return [f"-promscrape.config={config}", f"-promscrape.httpSDCheckInterval={SD_REFRESH}",
            f"-remoteWrite.url={vm_url}/api/v1/write", f"-remoteWrite.tmpDataPath={data}", f"-httpListenAddr={listen}"]


def vmalert_flags(opts: StackOptions, rules_glob: str) -> list[str]:
    return [f"-rule={rules_glob}", f"-datasource.url={VM_URL}", f"-notifier.url={opts.alertmanager_url}",
            f"-remoteWrite.url={VM_URL}", f"-remoteRead.url={VM_URL}",
            f"-evaluationInterval={opts.scrape_interval}", f"-httpListenAddr=:{SERVICE_PORTS['vmalert']}"]


def victoriametrics_flags() -> list[str]:
    return ["-storageDataPath=/storage", "-retentionPeriod=400d", f"-httpListenAddr=:{SERVICE_PORTS['victoriametrics']}"]


def files(opts: StackOptions) -> dict[str, str]:
    if opts.tsdb != "victoriametrics":
        return {}
    doc = {"global": {"scrape_interval": opts.scrape_interval}, "scrape_configs": scrape_configs(opts, sd_refresh=False)}
    text = yaml_file(
        doc,
        "Written by `gpufleet stack generate`: vmagent's scrape jobs (vmagent -promscrape.config=scrape.yml).",
        "Agents are found through the hub's http_sd; rules live in ../vmalert/" + RULES_DIR + "/.",
        "Check: vmagent -promscrape.config=scrape.yml -dryRun",
    )
    return {SCRAPE_FILE: text}
