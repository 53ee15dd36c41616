"""TLS with real processes: `gpufleet tls selfsigned`, a hub and an agent serving HTTPS, and an
agent that pushes only when it trusts the hub's certificate (--ca)."""

from __future__ import annotations

import ssl
import stat
import subprocess
from pathlib import Path

import httpx

import pytest

from access import bearer, make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


KEY: dict[str, str] = {}  # a viewer's API key, made once the hub's data directory exists


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpufleet(*args), capture_output=True, text=True, timeout=60)


def _wait(cond, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    return eventually(cond, timeout, what, interval=0.2)  # conftest's, with this file's defaults


def test_selfsigned_hub_and_agents(tmp_path: Path) -> None:
    certs, other = tmp_path / "certs", tmp_path / "other"
    r = _run("tls", "selfsigned", "--out", str(certs), "--host", "127.0.0.1", "--host", "localhost")
    assert r.returncode == 0, r.stderr
    assert _run("tls", "selfsigned", "--out", str(other)).returncode == 0  # a CA the hub did not use
    for name in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((certs / name).stat().st_mode) == 0o600
    again = _run("tls", "selfsigned", "--out", str(certs))
    assert again.returncode == 2 and "already holds" in again.stderr

    data = tmp_path / "data"
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    tls = ["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem")]
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data), *tls), tmp_path / "hub.log")
    agents: list[Proc] = []
    ca = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    try:
        _wait(lambda: b"web UI and API at https://" in (tmp_path / "hub.log").read_bytes(), what="hub up")
        _wait(lambda: _get(f"{url}/healthz", ca) == 200, what="hub answering over TLS")
        token = _run("token", "create", "--data", str(data)).stdout.split()[-1]
        KEY["key"] = make_api_key(data, "viewer")

        def agent(node: str, *extra: str) -> Proc:
            p = Proc(gpufleet("agent", "--hub", url, "--token", token, "--node", node, "--simulate", "2xRTX4090",
                              "--interval", "0.5", "--spool", str(tmp_path / f"spool-{node}"),
                              "--listen", f"127.0.0.1:{free_port()}", *extra), tmp_path / f"{node}.log")
            agents.append(p)
            return p

        good = agent("trusting", "--ca", str(certs / "ca.pem"), "--advertise", "127.0.0.1", *tls)
        plain = agent("no-ca")
        wrong = agent("wrong-ca", "--ca", str(other / "ca.pem"))
        _wait(lambda: _node_seen(url, ca, "trusting"), what="the agent with --ca pushing over TLS")
        for p in (plain, wrong):
            _wait(lambda p=p: "TLS certificate is not trusted" in p.log(), what="a clear refusal")
            assert "pass --ca FILE" in p.log() and "Traceback" not in p.log()
        nodes = httpx.get(f"{url}/api/v1/nodes", verify=ca, headers=bearer(KEY["key"]), timeout=5).json()["nodes"]
        assert {n["name"] for n in nodes} == {"trusting"}
        # the agent serves its own /metrics over TLS too, and registered an https:// URL for Prometheus
        sd = httpx.get(f"{url}/api/v1/sd/prometheus", verify=ca, headers=bearer(KEY["key"]), timeout=5).json()
        assert sd[0]["labels"]["__scheme__"] == "https"
        assert _get(f"https://{sd[0]['targets'][0]}/metrics", ca) == 200
        # plain HTTP to the TLS hub gets nothing
        try:
            plain_answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
        except httpx.HTTPError:
            plain_answer = None
        assert plain_answer != 200
    finally:
        for a in agents:
            a.stop()
        hub.stop()


def _get(url: str, ca: ssl.SSLContext) -> int | None:
    try:
        return httpx.get(url, verify=ca, timeout=5).status_code
    except httpx.HTTPError:
        return None


def _node_seen(url: str, ca: ssl.SSLContext, node: str) -> bool:
    try:
        r = httpx.get(f"{url}/api/v1/nodes/{node}/snapshot", verify=ca, headers=bearer(KEY["key"]), timeout=5)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def test_tls_flag_errors(tmp_path: Path) -> None:
    r = _run("hub", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "x.pem"))
    assert r.returncode == 2 and "--tls-cert and --tls-key go together" in r.stderr
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    r = _run("hub", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
             "--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", str(tmp_path / "junk.pem"))
    assert r.returncode == 2 and "not a matching PEM certificate and key" in r.stderr
    r = _run("agent", "--ca", str(tmp_path / "missing.pem"))
    assert r.returncode == 2 and "--ca:" in r.stderr and "does not exist" in r.stderr
    r = _run("agent", "--ca", str(tmp_path / "junk.pem"))
    assert r.returncode == 2 and "holds no PEM certificate" in r.stderr
