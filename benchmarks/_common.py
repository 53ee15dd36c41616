"""Helpers shared by the agent benchmarks: process CPU and RSS from /proc, percentiles,
the machine line, servers on loopback, and the verdict line.

Every figure a benchmark prints is measured in the same run as its peer, so ratios
survive a noisy, shared machine better than absolute numbers do.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT / "src", ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---- /proc ----------------------------------------------------------------------------------

def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_rss_bytes(pid: int) -> int:
    """VmRSS of one process in bytes, from /proc/PID/status (0 when absent, e.g. a zombie)."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def host_process_count() -> int:
    return sum(1 for n in os.listdir("/proc") if n.isdigit())


# ---- statistics -----------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# ---- reporting ------------------------------------------------------------------------------

def machine_line() -> str:
    model = platform.processor() or "?"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"{now}; nproc {os.cpu_count()}; {model}; Linux {platform.release()}; "
            f"Python {platform.python_version()}; load avg {os.getloadavg()[0]:.2f}")


def verdict(goal: str, ok: bool, detail: str) -> str:
    line = f"VERDICT {goal}: {'met' if ok else 'NOT MET'} ({detail})"
    print(line)
    return line


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable on a terminal too)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for j, r in enumerate(cells):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if j == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


# ---- servers --------------------------------------------------------------------------------

def wait_http(host: str, port: int, path: str, proc: subprocess.Popen | None = None,
              timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {path}")
        try:
            c = http.client.HTTPConnection(host, port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return
            last = f"HTTP {r.status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError(f"http://{host}:{port}{path} not ready after {timeout}s ({last})")


@contextmanager
def server(args: Sequence[str], port: int, ready_path: str, log: Path,
           timeout: float = 30.0) -> Iterator[subprocess.Popen]:
    """Start a server process on 127.0.0.1:port in its own session; stop it by its pid group."""
    with open(log, "wb") as logf:
        p = subprocess.Popen(list(args), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        wait_http("127.0.0.1", port, ready_path, p, timeout)
        yield p
    finally:
        if p.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def agent_cmd(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "gpufleet", "agent", "--listen", f"127.0.0.1:{port}", *args]


def node_exporter_cmd(port: int) -> list[str]:
    from realparts import require

    return [require("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{port}",
            "--no-collector.systemd"]


def free_port() -> int:
    from realparts import free_port as fp

    return fp()


@contextmanager
def hub_with_token(tmp: Path) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """A real hub process (data in tmp/hub) on a free port: (process, its URL, a join token)."""
    port = free_port()
    hub_cmd = [sys.executable, "-m", "gpufleet", "hub", "--listen", f"127.0.0.1:{port}", "--data", str(tmp / "hub")]
    with server(hub_cmd, port, "/healthz", tmp / "hub.log") as hub:
        token = subprocess.run([sys.executable, "-m", "gpufleet", "token", "create", "--data", str(tmp / "hub")],
                               capture_output=True, text=True, check=True).stdout.split()[-1]
        yield hub, f"http://127.0.0.1:{port}", token


@contextmanager
def command_nodes(url: str, token: str, nodes: int, hosts: int, tmp: Path) -> Iterator[list[subprocess.Popen]]:
    """`nodes` command-polling nodes (benchmarks/_cmdagents.py) in `hosts` processes, each host
    ready (its nodes registered and polling) before this yields; the hosts are stopped after."""
    procs: list[subprocess.Popen] = []
    try:
        share = -(-nodes // hosts)
        for h in range(hosts):
            first, count = h * share, min(share, nodes - h * share)
            if count <= 0:
                break
            with open(tmp / f"agents-{h}.log", "wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, str(ROOT / "benchmarks" / "_cmdagents.py"), "--hub", url, "--token", token,
                     "--first", str(first), "--nodes", str(count), "--dir", str(tmp / "agents")],
                    stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True))
        for h, p in enumerate(procs):
            if '"ready"' not in (p.stdout.readline() if p.stdout else ""):
                sys.exit(f"node host {h} did not start: {(tmp / f'agents-{h}.log').read_text()[-2000:]}")
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def count_series(body: bytes) -> int:
    """Sample lines of a Prometheus text exposition (comments and blank lines excluded)."""
    return sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))


@contextmanager
def host_processes(target: int, seconds: float = 600) -> Iterator[int]:
    """Spawn `sleep` processes until the host has about `target` processes; always kill them."""
    sleepers: list[subprocess.Popen] = []
    try:
        want = max(0, min(target - host_process_count(), 2000)) if target else 0
        for _ in range(want):
            sleepers.append(subprocess.Popen(["sleep", str(int(seconds))], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if sleepers:
            time.sleep(0.5)
        yield len(sleepers)
    finally:
        for p in sleepers:
            if p.poll() is None:
                p.kill()
        for p in sleepers:
            p.wait(10)
