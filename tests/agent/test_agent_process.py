"""The agent as a user runs it: a real process, scraped over HTTP."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.snapshot import from_json
from conftest import eventually
from realparts import agent, gpufleet, prom_query, prometheus, scrape_config, static_job

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


def test_endpoints(tmp_path: Path) -> None:
    with agent(tmp_path, "--simulate", "8xH100", "--interval", "0.5", "--node", "sim-a", "--label", "cluster=c1") as (_, url):
        r = httpx.get(f"{url}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        fams = {f.name: f for f in text_string_to_metric_families(r.text)}
        util = fams["gpufleet_gpu_utilization_ratio"].samples
        assert sorted(s.labels["gpu"] for s in util) == [str(i) for i in range(8)]
        assert all(s.labels["node"] == "sim-a" and 0 <= s.value <= 1 for s in util)
        assert fams["gpufleet_node_memory_total_bytes"].samples[0].value > 0

        om = httpx.get(f"{url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.endswith("# EOF\n")

        gz = httpx.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip"

        snap = from_json(httpx.get(f"{url}/api/v1/snapshot").content)
        assert snap.node == "sim-a" and len(snap.gpus) == 8 and snap.labels == {"cluster": "c1"}
        assert snap.processes and snap.cpus and snap.host.kernel
        assert any(p.user for g in snap.gpus for p in g.processes)

        h = httpx.get(f"{url}/healthz").json()
        assert h["status"] == "ok" and h["last_collection_age_seconds"] < 3
        assert httpx.get(f"{url}/nope").status_code == 404
        assert httpx.post(f"{url}/metrics").status_code == 405


def test_raw_http_edge_cases(tmp_path: Path) -> None:
    with agent(tmp_path, "--simulate", "cpu-only") as (_, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            # two pipelined keep-alive requests on one connection
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while data.count(b"HTTP/1.1 200") < 2:
                chunk = s.recv(65536)
                assert chunk
                data += chunk
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 431")
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"garbage\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")


def test_no_accelerator_still_serves_host(tmp_path: Path) -> None:
    with agent(tmp_path, "--backend", "none") as (_, url):
        text = httpx.get(f"{url}/metrics").text
        assert "gpufleet_node_memory_total_bytes" in text and "gpufleet_gpu_utilization_ratio" not in text
        assert 'backend="none"' in text


def test_prometheus_scrape_matches_snapshot(tmp_path: Path) -> None:
    # A long interval keeps the agent's values still while Prometheus scrapes them every second.
    with agent(tmp_path, "--simulate", "8xH100", "--interval", "300", "--node", "prom-node",
               "--compat", "dcgm") as (_, url):
        with prometheus(tmp_path, scrape_config(static_job("gpufleet", url))) as (_, prom):
            eventually(lambda: len(prom_query(prom, "gpufleet_gpu_power_watts")) == 8, timeout=30,
                       what="Prometheus to scrape the agent's 8 GPUs")
            keys = ("power_watts", "temperature_celsius", "memory_used_bytes", "utilization_ratio",
                    "sm_clock_hertz", "energy_joules_total")

            def compare() -> tuple[Any, dict[str, tuple[dict[str, float], dict[str, float]]]]:
                snap = from_json(httpx.get(f"{url}/api/v1/snapshot").content)
                seen = {}
                for key in keys:
                    got = {r["metric"]["gpu"]: float(r["value"][1]) for r in prom_query(prom, f"gpufleet_gpu_{key}")}
                    want = {str(g.index): float(g.values[key]) for g in snap.gpus if key in g.values}
                    seen[key] = (got, want)
                return snap, seen

            # The agent collects twice as it starts; once Prometheus has scraped the second
            # round, its values and the snapshot's agree and stay still (300 s interval).
            eventually(lambda: all(g == pytest.approx(w) for g, w in compare()[1].values()), timeout=30,
                       what="Prometheus' values to equal the agent's snapshot")
            snap, seen = compare()
            for key, (got, want) in seen.items():
                assert got == pytest.approx(want), key
            mem = prom_query(prom, "gpufleet_node_memory_total_bytes")
            assert float(mem[0]["value"][1]) == snap.values["memory_total_bytes"]
            # dcgm names carry the same numbers in dcgm's units
            fb = {r["metric"]["gpu"]: float(r["value"][1]) for r in prom_query(prom, "DCGM_FI_DEV_FB_USED")}
            want_fb = {str(g.index): g.values["memory_used_bytes"] / 2**20 for g in snap.gpus}
            assert fb == pytest.approx(want_fb)
            # the queries of NVIDIA's dcgm-exporter Grafana dashboard (12239), variables set to "all"
            sel = '{instance=~".*", gpu=~".*"}'
            for expr, n in ((f"DCGM_FI_DEV_GPU_TEMP{sel}", 8), (f"avg(DCGM_FI_DEV_GPU_TEMP{sel})", 1),
                            (f"DCGM_FI_DEV_POWER_USAGE{sel}", 8), (f"sum(DCGM_FI_DEV_POWER_USAGE{sel})", 1),
                            (f"DCGM_FI_DEV_SM_CLOCK{sel} * 1000000", 8), (f"DCGM_FI_DEV_GPU_UTIL{sel}", 8),
                            (f"DCGM_FI_DEV_FB_USED{sel}", 8), (f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{sel}", 8),
                            (f"sum(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{sel})", 1)):
                assert len(prom_query(prom, expr)) == n, expr
            assert {r["metric"]["gpu"] for r in prom_query(prom, "DCGM_FI_DEV_GPU_TEMP")} == {str(i) for i in range(8)}
            up = prom_query(prom, 'up{job="gpufleet"}')
            assert up[0]["value"][1] == "1"
            # the agent answers Prometheus in text, so it records dcgm-exporter's counter types
            meta = httpx.get(f"{prom}/api/v1/metadata").json()["data"]
            assert meta["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"][0]["type"] == "counter"
            assert meta["DCGM_FI_DEV_GPU_TEMP"][0]["type"] == "gauge"
            assert meta["gpufleet_gpu_energy_joules_total"][0]["type"] == "counter"


def _run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpufleet(*args), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (("agent", "--simulate", "16xB300"), "unknown simulator profile '16xB300'"),
    (("agent", "--backend", "cuda"), "unknown backend 'cuda'"),
    (("agent", "--backend", "nvml"), "NVIDIA driver library"),
    (("agent", "--interval", "0"), "--interval: 0 s is out of range"),
    (("agent", "--compat", "nvsmi"), "unknown compat mode 'nvsmi'"),
    (("agent", "--listen", "localhost"), "--listen: 'localhost' is not HOST:PORT"),
])
def test_bad_input_is_one_clear_line(args: tuple[str, ...], message: str) -> None:
    r = _run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _run_cli("agent", "--simulate", "cpu-only", "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in r.stderr and "Traceback" not in r.stderr


def test_config_file_errors(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("simulate: 8xH100\nlisten_port: 9000\n")
    r = _run_cli("agent", "--config", str(f))
    assert r.returncode == 2 and "unknown key 'listen_port'" in r.stderr and "Traceback" not in r.stderr
    f.write_text("interval: soon\n")
    r = _run_cli("agent", "--config", str(f))
    assert r.returncode == 2 and "agent.yaml: interval: 'soon' is not a number" in r.stderr


def test_config_file_and_env(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("simulate: 2xMI300X\nnode: from-file\nlabels: {rack: r7}\n")
    import os

    env = {**os.environ, "GPUFLEET_NODE": "from-env"}
    from realparts import free_port

    port = free_port()
    p = subprocess.Popen(gpufleet("agent", "--config", str(f), "--listen", f"127.0.0.1:{port}"), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def snapshot() -> bytes | None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/snapshot")
            except httpx.HTTPError:
                return None  # not listening yet
            return r.content if r.status_code == 200 else None

        snap = from_json(eventually(snapshot, what="the agent's first snapshot"))
        assert snap.node == "from-env" and snap.labels == {"rack": "r7"}
        assert {g.vendor for g in snap.gpus} == {"amd"} and len(snap.gpus) == 2
    finally:
        p.terminate()
        p.wait(10)
