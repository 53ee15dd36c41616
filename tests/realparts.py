"""Start real servers (gpufleet processes, Debian's Prometheus, VictoriaMetrics, ...) on loopback.

Every server gets a free port and a temporary directory, is waited for until it answers,
and is stopped by its pid when the test ends. Nothing here talks beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require(binary: str) -> str:
    """Path of a server binary; the test command installs them, so absence is a failure."""
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} not found: run `make test` (it installs Debian's packages)")
    return path


class Proc:
    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.args = list(args)
        self.log_path = log
        self._log = open(log, "wb")
        self.p = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True, cwd=cwd,
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 30.0, ok: Sequence[int] = (200,)) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited with {self.p.returncode}:\n{self.log()[-3000:]}")
            try:
                r = httpx.get(url, timeout=2)
                if r.status_code in ok:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                last = str(e)
            time.sleep(0.1)
        raise RuntimeError(f"{url} not ready after {timeout}s ({last}):\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self._log.close()
        return self.p.returncode


@contextlib.contextmanager
def running(args: Sequence[str], log: Path, ready_url: str | None = None, timeout: float = 30.0,
            env: dict[str, str] | None = None, ok: Sequence[int] = (200,), cwd: Path | None = None) -> Iterator[Proc]:
    proc = Proc(args, log, env, cwd)
    try:
        if ready_url:
            proc.wait_http(ready_url, timeout, ok)
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A small HTTP server in this process (a peer exporter, a receiver): its http://127.0.0.1:PORT."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def json_reply(handler: BaseHTTPRequestHandler, body: object, code: int = 200) -> None:
    """Answer a request to a test server with `body` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def gpufleet(*args: str) -> list[str]:
    return [PYTHON, "-m", "gpufleet", *args]


def hub_proc(tmp: Path, data: Path, port: int, *extra: str, name: str = "hub", ok: Sequence[int] = (200,)) -> Proc:
    """A real `gpufleet hub` on 127.0.0.1:port keeping its data in `data`, once /healthz answers one of `ok`."""
    p = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data), *extra), tmp / f"{name}.log")
    try:
        p.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, ok=ok)
    except BaseException:
        p.stop()  # the caller never gets it to stop
        raise
    return p


def join_token(data: Path, *extra: str) -> str:
    """A join token for agents, made by `gpufleet token create` on the hub's data directory."""
    out = subprocess.run(gpufleet("token", "create", "--data", str(data), *extra), capture_output=True, text=True,
                         check=True).stdout
    return out.split()[-1]


@contextlib.contextmanager
def agent(tmp: Path, *args: str, name: str = "agent") -> Iterator[tuple[Proc, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = gpufleet("agent", "--listen", f"127.0.0.1:{port}", *args)
    with running(cmd, tmp / f"{name}.log", f"{url}/healthz") as proc:
        yield proc, url


@contextlib.contextmanager
def prometheus(tmp: Path, config: str) -> Iterator[tuple[Proc, str]]:
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(config)
    data = tmp / "prom-data"
    data.mkdir(exist_ok=True)
    cmd = [require("prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={data}",
           f"--web.listen-address=127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    with running(cmd, tmp / "prometheus.log", f"{url}/-/ready", timeout=60) as proc:
        yield proc, url


def scrape_config(*jobs: str) -> str:
    """A Prometheus config that scrapes these jobs (see static_job, hub_sd_job) every second."""
    return "global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" + "".join(jobs)


def static_job(job: str, *urls: str, key_file: Path | None = None) -> str:
    """A scrape job for fixed targets, given as the http:// URLs the test started them on."""
    targets = ", ".join(f'"{u.removeprefix("http://")}"' for u in urls)
    auth = f"    authorization: {{type: Bearer, credentials_file: \"{key_file}\"}}\n" if key_file else ""
    return f"  - job_name: {job}\n{auth}    static_configs: [{{targets: [{targets}]}}]\n"


def hub_sd_job(job: str, hub_url: str, key_file: Path) -> str:
    """A scrape job whose targets come from the hub's service discovery, read with the API key in key_file."""
    return (f"  - job_name: {job}\n    http_sd_configs:\n      - url: \"{hub_url}/api/v1/sd/prometheus\"\n"
            f"        refresh_interval: 1s\n"
            f"        authorization: {{type: Bearer, credentials_file: \"{key_file}\"}}\n")


@contextlib.contextmanager
def node_exporter(tmp: Path) -> Iterator[tuple[Proc, str]]:
    port = free_port()
    cmd = [require("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{port}",
           "--no-collector.systemd"]
    url = f"http://127.0.0.1:{port}"
    with running(cmd, tmp / "node_exporter.log", f"{url}/metrics") as proc:
        yield proc, url


@contextlib.contextmanager
def victoria_metrics(tmp: Path, *extra: str) -> Iterator[tuple[Proc, str]]:
    port = free_port()
    data = tmp / "vm-data"
    cmd = [require("victoria-metrics"), f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
           "-retentionPeriod=100y", *extra]
    url = f"http://127.0.0.1:{port}"
    with running(cmd, tmp / "vm.log", f"{url}/health", timeout=60) as proc:
        yield proc, url


@contextlib.contextmanager
def alertmanager(tmp: Path, config: str) -> Iterator[tuple[Proc, str]]:
    port = free_port()
    cfg = tmp / "alertmanager.yml"
    cfg.write_text(config)
    data = tmp / "am-data"
    data.mkdir(exist_ok=True)
    cmd = [require("prometheus-alertmanager"), f"--config.file={cfg}", f"--storage.path={data}",
           f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    url = f"http://127.0.0.1:{port}"
    with running(cmd, tmp / "alertmanager.log", f"{url}/-/ready", timeout=60) as proc:
        yield proc, url


def promtool_check_metrics(text: bytes) -> tuple[int, str]:
    r = subprocess.run([require("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def prom_query(url: str, query: str) -> list[dict]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]
