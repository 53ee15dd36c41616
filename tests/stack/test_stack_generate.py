"""`gpufleet stack generate`: what it writes passes the real tools' own checks (promtool, amtool,
vmagent, vmalert), holds no secret, binds loopback, and bad input is one line with nothing written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import eventually
from realparts import alertmanager, gpufleet, require

from gpufleet.stack.dashboards.kit import DATASOURCE_UID

pytestmark = pytest.mark.realparts  # runs Debian's promtool, amtool, vmagent, vmalert, Alertmanager

KEY = "gfk_not-a-real-key-but-shaped-like-one"


def generate(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpufleet("stack", "generate", "--out", str(out), *args), capture_output=True, text=True,
                          timeout=60)


def generate_here(capsys: pytest.CaptureFixture[str], out: Path, *args: str) -> tuple[int, str]:
    """The same command in this process (exit code, stderr): bad-input cases without a Python start each."""
    from gpufleet.cli import main

    capsys.readouterr()
    try:
        main(["stack", "generate", "--out", str(out), *args])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def check(*cmd: str, cwd: Path) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=60)
    assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stdout}\n{r.stderr}"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    f = tmp_path / "hub.key"
    f.write_text(KEY + "\n")
    f.chmod(0o600)
    return f


def test_prometheus_setup_passes_promtool_and_amtool(tmp_path: Path, key_file: Path) -> None:
    out = tmp_path / "stack"
    mine = tmp_path / "alerts.yaml"
    mine.write_text("rules:\n  - alert: LabGpuBusy\n    expr: gpufleet_gpu_utilization_ratio > 0.99\n"
                    "    for: 1h\n    severity: info\n")
    r = generate(out, "--hub", "http://10.1.2.3:8080", "--api-key-file", str(key_file), "--rules", str(mine))
    assert r.returncode == 0, r.stderr
    check(require("promtool"), "check", "config", "prometheus.yml", cwd=out / "prometheus")
    check(require("promtool"), "check", "rules", "rules/gpufleet.rules.yml", cwd=out / "prometheus")
    check(require("amtool"), "check-config", "alertmanager/alertmanager.yml", cwd=out)
    prom = yaml.safe_load((out / "prometheus/prometheus.yml").read_text())
    sd = prom["scrape_configs"][0]["http_sd_configs"][0]
    assert sd["url"] == "http://10.1.2.3:8080/api/v1/sd/prometheus"
    assert sd["authorization"] == {"type": "Bearer", "credentials_file": str(key_file.resolve())}
    am = yaml.safe_load((out / "alertmanager/alertmanager.yml").read_text())
    assert [r["receiver"] for r in am["route"]["routes"]] == ["critical", "warning", "info"]
    # node down silences the node's other alerts; overheating silences hot on the same GPU
    inhibit = {(tuple(i["source_matchers"]), tuple(i["target_matchers"])): i["equal"] for i in am["inhibit_rules"]}
    assert inhibit[(('alertname="GpufleetNodeDown"',), ('alertname!="GpufleetNodeDown"', 'node=~".+"'))] == ["node"]
    assert "gpu" in inhibit[(('alertname="GpufleetGpuOverheating"',), ('alertname="GpufleetGpuHot"',))]
    _check_common(out, key_file, {"prometheus", "alertmanager", "grafana"})
    # the rules are exactly those of `gpufleet rules export`
    exported = tmp_path / "exported.yml"
    subprocess.run(gpufleet("rules", "export", "--out", str(exported), "--rules", str(mine)), check=True,
                   capture_output=True)
    written = yaml.safe_load((out / "prometheus/rules/gpufleet.rules.yml").read_text())
    assert written == yaml.safe_load(exported.read_text())
    assert "LabGpuBusy" in {r["alert"] for r in written["groups"][0]["rules"]}


def test_victoriametrics_setup_passes_vmagent_vmalert_and_amtool(tmp_path: Path, key_file: Path) -> None:
    out, certs = tmp_path / "vm", tmp_path / "certs"
    # an https hub with its own CA (gpufleet tls selfsigned): the scrape jobs trust that CA
    subprocess.run(gpufleet("tls", "selfsigned", "--out", str(certs), "--host", "hub.lab"), check=True,
                   capture_output=True, timeout=60)
    ca = (certs / "ca.pem").resolve()
    r = generate(out, "--hub", "https://hub.lab:8443/gpufleet", "--api-key-file", str(key_file), "--ca-file", str(ca),
                 "--tsdb", "victoriametrics", "--bind", "0.0.0.0", "--port", "grafana=3001")
    assert r.returncode == 0, r.stderr
    assert not (out / "prometheus").exists()
    check(require("vmagent"), "-promscrape.config=vmagent/scrape.yml", "-dryRun", cwd=out)
    check(require("vmalert"), "-rule=vmalert/rules/gpufleet.rules.yml", "-dryRun", cwd=out)
    check(require("promtool"), "check", "rules", "vmalert/rules/gpufleet.rules.yml", cwd=out)
    check(require("amtool"), "check-config", "alertmanager/alertmanager.yml", cwd=out)
    scrape = yaml.safe_load((out / "vmagent/scrape.yml").read_text())
    hub_job = scrape["scrape_configs"][1]
    assert hub_job["scheme"] == "https" and hub_job["metrics_path"] == "/gpufleet/metrics"
    assert hub_job["static_configs"] == [{"targets": ["hub.lab:8443"]}]
    agents_job = scrape["scrape_configs"][0]
    for tls in (hub_job["tls_config"], agents_job["tls_config"], agents_job["http_sd_configs"][0]["tls_config"]):
        assert tls == {"ca_file": str(ca)}
    compose = _check_common(out, key_file, {"victoriametrics", "vmagent", "vmalert", "alertmanager", "grafana"},
                            bind="0.0.0.0", mounted=[ca])
    assert compose["services"]["grafana"]["ports"] == ["0.0.0.0:3001:3000"]
    ds = yaml.safe_load((out / "grafana/provisioning/datasources/gpufleet.yml").read_text())["datasources"][0]
    assert ds["url"] == "http://victoriametrics:8428"


def _check_common(out: Path, key_file: Path, services: set[str], bind: str = "127.0.0.1",
                  mounted: list[Path] = []) -> dict:
    # No secret in any file; the key file is mounted read-only at the path the config names.
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY not in f.read_text(), f
            assert f.stat().st_mode & 0o777 == 0o644, f
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert set(compose["services"]) == services
    for name, svc in compose["services"].items():
        assert all(p.startswith(f"{bind}:") for p in svc["ports"]), (name, svc["ports"])
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (out / src).is_dir(), f"{name} mounts {src}, which the stack lacks"
            elif src.startswith("/"):
                assert vol in {f"{p}:{p}:ro" for p in (key_file.resolve(), *mounted)}, vol
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    # Grafana: the provider's folder holds the dashboards; each is valid JSON with unique panel ids
    # that all query the datasource the provisioning file declares.
    prov = out / "grafana/provisioning"
    ds = yaml.safe_load((prov / "datasources/gpufleet.yml").read_text())["datasources"]
    assert [d["uid"] for d in ds] == [DATASOURCE_UID]
    provider = yaml.safe_load((prov / "dashboards/gpufleet.yml").read_text())["providers"][0]
    folder = provider["options"]["path"].removeprefix("/etc/grafana/provisioning/")
    boards = sorted((prov / folder).glob("*.json"))
    assert [b.name for b in boards] == ["alerts.json", "fleet-overview.json", "gpu-detail.json", "node.json",
                                        "users.json"]
    uids = set()
    for b in boards:
        d = json.loads(b.read_text())
        uids.add(d["uid"])
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)) and 0 not in ids, b.name
        for p in d["panels"]:
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == DATASOURCE_UID and p["targets"], (b.name, p["title"])
            assert all(t["datasource"]["uid"] == DATASOURCE_UID and t["expr"] for t in p["targets"])
        for v in d["templating"]["list"]:
            assert v["datasource"]["uid"] == DATASOURCE_UID and v["id"] == v["name"]
    assert len(uids) == len(boards)
    return compose


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, key_file: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    r = generate(out, "--hub", "hub:8080")  # once as a user runs it: a process, exit 2, one line
    assert r.returncode == 2 and r.stderr.startswith("gpufleet: error: --hub") and not out.exists(), r.stderr
    cases = [
        (["--hub", "hub:8080"], "--hub 'hub:8080': give the hub's address as http://HOST:PORT"),
        (["--hub", "http://h:8080", "--api-key-file", str(tmp_path / "missing.key")], "--api-key-file"),
        (["--hub", "http://h:8080", "--bind", "everywhere"], "--bind 'everywhere': give an IP address"),
        (["--hub", "http://h:8080", "--port", "grafana=99999"], "from 1 to 65535"),
        (["--hub", "http://h:8080", "--port", "vmagent=1"], "SERVICE one of prometheus, alertmanager, grafana"),
        (["--hub", "http://h:8080", "--scrape-interval", "soon"], "--scrape-interval"),
        (["--hub", "http://user:pw@h:8080"], "no credentials"),
        (["--hub", "https://h:8443", "--ca-file", str(key_file)], "--ca-file"),
        (["--hub", "http://h:8080", "--alertmanager-url", "http://[::1"], "--alertmanager-url"),
        (["--hub", "http://h:8080", "--datasource-url", "http://vm:port"], "--datasource-url"),
        (["--hub", "http://h:8080", "--datasource-url", "vm:8428"], "--datasource-url"),
    ]
    for args, message in cases:
        code, err = generate_here(capsys, out, *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    # a bad alerts.yaml: its first error, located
    bad = tmp_path / "alerts.yaml"
    bad.write_text("rules:\n  - alert: X\n    expr: gpufleet_no_such_metric > 1\n")
    code, err = generate_here(capsys, out, "--hub", "http://h:8080", "--rules", str(bad))
    assert code == 2 and f"--rules: {bad}:" in err and not out.exists(), err
    # a non-empty folder is refused; --force replaces only a folder the command wrote
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for extra in ([], ["--force"]):
        code, err = generate_here(capsys, mine, "--hub", "http://h:8080", *extra)
        assert code == 2 and "not empty" in err, err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert generate_here(capsys, out, "--hub", "http://h:8080")[0] == 0
    (out / "compose.yaml").write_text("edited")
    code, err = generate_here(capsys, out, "--hub", "http://h:8080")
    assert code == 2 and "add --force" in err
    code, err = generate_here(capsys, out, "--hub", "http://h:9090", "--force")
    assert code == 0, err
    assert "h:9090" in (out / "prometheus/prometheus.yml").read_text()
    assert (out / "compose.yaml").read_text() != "edited"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left
    assert "--anonymous-read" in err  # no --api-key-file: says what that needs


def test_alertmanager_routes_by_severity_and_inhibits(tmp_path: Path) -> None:
    """The generated alertmanager.yml in a real Alertmanager: alerts posted to it are silenced by
    the node-down alert of their node and by the critical alert over the same GPU, and no others."""
    out = tmp_path / "stack"
    assert generate(out, "--hub", "http://10.1.2.3:8080").returncode == 0
    config = out / "alertmanager/alertmanager.yml"
    for labels, receiver in ((["severity=critical"], "critical"), (["severity=warning"], "warning"),
                             (["severity=info"], "info"), ([], "info")):
        r = subprocess.run([require("amtool"), "config", "routes", "test", f"--config.file={config}", "alertname=A",
                            *labels], capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() == receiver, (labels, r.stdout, r.stderr)
    gpu = {"uuid": "GPU-1", "model": "NVIDIA H100 80GB HBM3", "vendor": "nvidia"}
    alerts = {
        "down": {"alertname": "GpufleetNodeDown", "severity": "critical", "node": "n1"},
        "hot-on-down-node": {"alertname": "GpufleetGpuHot", "severity": "warning", "node": "n1", "gpu": "0", **gpu},
        "disk-on-down-node": {"alertname": "GpufleetDiskSpaceLow", "severity": "warning", "node": "n1",
                              "mountpoint": "/"},
        "overheating": {"alertname": "GpufleetGpuOverheating", "severity": "critical", "node": "n2", "gpu": "1", **gpu},
        "hot-same-gpu": {"alertname": "GpufleetGpuHot", "severity": "warning", "node": "n2", "gpu": "1", **gpu},
        "hot-other-gpu": {"alertname": "GpufleetGpuHot", "severity": "warning", "node": "n2", "gpu": "2", **gpu},
    }
    silenced = {"hot-on-down-node", "disk-on-down-node", "hot-same-gpu"}
    with alertmanager(tmp_path, config.read_text()) as (_, url):
        r = httpx.post(f"{url}/api/v2/alerts", json=[{"labels": labels} for labels in alerts.values()], timeout=10)
        assert r.status_code == 200, r.text

        def states() -> dict[str, str] | None:
            got = {a["labels"]["alertname"] + a["labels"]["node"] + a["labels"].get("gpu", ""): a["status"]["state"]
                   for a in httpx.get(f"{url}/api/v2/alerts", timeout=10).json()}
            named = {k: got.get(v["alertname"] + v["node"] + v.get("gpu", ""), "") for k, v in alerts.items()}
            want = {k: "suppressed" if k in silenced else "active" for k in alerts}
            return named if named == want else None

        eventually(states, timeout=30, interval=0.2, what="the inhibit rules to silence exactly the expected alerts")
