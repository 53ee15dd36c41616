"""`gpufleet service install|uninstall`: the units systemd-analyze accepts, and sd_notify from real processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpufleet.sdnotify import Notifier
from realparts import Proc, free_port, gpufleet, require


def _run(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *gpufleet(*args)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def _verify(unit: Path) -> None:
    r = subprocess.run([require("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values too: any line it prints is a finding
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def _service(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_agent_unit_written_verified_and_removed(tmp_path: Path) -> None:
    units, etc = tmp_path / "units", tmp_path / "etc"
    token = tmp_path / "token"
    token.write_text("gft_0123456789abcdefghijklmnop\n")
    where = ("--unit-dir", str(units), "--config-dir", str(etc))
    r = _run("service", "install", "agent", "--hub", "http://hub.lab:8080/", "--dry-run", *where)
    assert r.returncode == 0 and not units.exists() and not etc.exists()
    assert "step: systemctl enable --now gpufleet-agent.service" in r.stdout
    assert "ExecStart=" in r.stdout and "--hub http://hub.lab:8080 --token-file %d/token" in r.stdout

    r = _run("service", "install", "agent", "--hub", "http://hub.lab:8080", "--token-file", str(token), *where)
    assert r.returncode == 0, r.stderr
    unit = units / "gpufleet-agent.service"
    lines = _service(unit.read_text())
    for key in ("Type=notify", "Restart=always", "WatchdogSec=60", "NoNewPrivileges=yes", "ProtectSystem=strict",
                "PrivateTmp=yes", "ProtectHome=read-only", "User=gpufleet", "DevicePolicy=closed",
                "DeviceAllow=char-nvidia* rw", "AmbientCapabilities=CAP_SYS_PTRACE",
                f"LoadCredential=token:{etc / 'agent.token'}", "StateDirectory=gpufleet-agent",
                "WantedBy=multi-user.target"):
        assert key in lines, key
    start = next(line for line in lines if line.startswith("ExecStart="))
    assert start.endswith("agent --listen 0.0.0.0:9401 --hub http://hub.lab:8080 --token-file %d/token "
                          "--spool %S/gpufleet-agent/spool")
    assert "gft_" not in unit.read_text()  # the secret never sits in the unit
    assert (etc / "agent.token").read_text() == "gft_0123456789abcdefghijklmnop\n"
    assert (etc / "agent.token").stat().st_mode & 0o777 == 0o600 and unit.stat().st_mode & 0o777 == 0o644
    assert f"to do: useradd --system" in r.stdout or "useradd" not in r.stdout  # a review copy adds no user
    _verify(unit)

    r = _run("service", "uninstall", "agent", "--unit-dir", str(units))
    assert r.returncode == 0 and not unit.exists() and "kept: /var/lib/gpufleet-agent" in r.stdout
    r = _run("service", "uninstall", "agent", "--unit-dir", str(units))
    assert r.returncode == 0 and "not installed" in r.stdout


def test_hub_unit_and_refusals(tmp_path: Path) -> None:
    units, etc = tmp_path / "units", tmp_path / "etc"
    where = ("--unit-dir", str(units), "--config-dir", str(etc))
    r = _run("service", "install", "hub", "--listen", "10.0.0.5:8443", *where)
    assert r.returncode == 0, r.stderr
    unit = units / "gpufleet-hub.service"
    lines = _service(unit.read_text())
    for key in ("Type=notify", "Restart=always", "PrivateDevices=yes", "ProtectHome=yes", "CapabilityBoundingSet=",
                "StateDirectory=gpufleet-hub", "StateDirectoryMode=0700", "User=gpufleet"):
        assert key in lines, key
    assert next(x for x in lines if x.startswith("ExecStart=")).endswith("hub --listen 10.0.0.5:8443 "
                                                                          "--data %S/gpufleet-hub")
    assert not any(x.startswith(("DeviceAllow", "AmbientCapabilities=CAP")) for x in lines)
    _verify(unit)

    # on an agent-only install the hub's unit would restart a hub that cannot start: refused, saying why
    agent_only = Path(__file__).parent / "packaging" / "agent_only.py"
    r = subprocess.run([sys.executable, str(agent_only), "service", "install", "hub", "--dry-run"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pip install 'gpufleet[hub]'" in r.stderr and "Traceback" not in r.stderr

    fresh = tmp_path / "fresh"
    for args, says in [
        (("hub", "--hub", "http://x:1"), "--hub is for the agent"),
        (("agent", "--listen", "nope"), "--listen"),
        (("agent", "--hub", "ftp://x"), "is not a URL"),
        (("agent", "--hub", "http://x:1", "--token-file", str(tmp_path / "none")), "--token-file"),
        (("agent", "--enable"), "--enable: systemd does not read units from"),
        (("router",), "'router' is not one of"),
    ]:
        r = _run("service", "install", *args, "--unit-dir", str(fresh), "--config-dir", str(fresh))
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert not fresh.exists()
    if os.geteuid() == 0 and shutil.which("setpriv"):
        # not root: one line saying what to run, and nothing written
        r = _run("service", "install", "agent", prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"),
                 env={"HOME": "/nonexistent"})
        assert r.returncode == 2 and "needs root: run `sudo gpufleet service install agent`" in r.stderr, r.stderr


def _datagrams(sock: socket.socket, want: str, timeout: float = 30.0) -> list[str]:
    """Messages received until one contains `want`."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if want in got[-1]:
            return got
    raise AssertionError(f"no {want!r} from the process; got {got}")


@pytest.mark.realparts
@pytest.mark.parametrize("kind", ["agent", "hub"])
def test_sd_notify_ready_watchdog_stopping(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    port = free_port()
    args = (["agent", "--simulate", "2xRTX4090", "--interval", "0.5"] if kind == "agent"
            else ["hub", "--data", str(tmp_path / "data")])
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
    p = Proc(gpufleet(*args, "--listen", f"127.0.0.1:{port}"), tmp_path / f"{kind}.log", env=env)
    try:
        first = _datagrams(sock, "READY=1")
        assert "STATUS=serving" in first[-1]
        pings = _datagrams(sock, "WATCHDOG=1")
        pings += _datagrams(sock, "WATCHDOG=1")  # again: a loop pings, not a one-off
        assert sum(m == "WATCHDOG=1" for m in pings) >= 2
        os.kill(p.pid, signal.SIGTERM)
        _datagrams(sock, "STOPPING=1")
    finally:
        p.stop()
        sock.close()


def test_notifier_outside_systemd_and_abstract_sockets() -> None:
    assert not Notifier({}).ready() and Notifier({}).ping_every() is None
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).ping_every() is None  # another process's
    name = f"gpufleet-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert n.ready("ok") and n.ping_every() == 1.0
        assert s.recv(100) == b"READY=1\nSTATUS=ok"
    assert not n.watchdog()  # the socket is gone: ignored, never raised


def test_agent_unit_with_several_hubs(tmp_path: Path) -> None:
    where = ("--unit-dir", str(tmp_path / "units"), "--config-dir", str(tmp_path / "etc"))
    r = _run("service", "install", "agent", "--hub", "http://hub-a:8080/, http://HUB-B:8080", "--dry-run", *where)
    assert r.returncode == 0, r.stderr
    assert "--hub http://hub-a:8080,http://hub-b:8080 --token-file %d/token" in r.stdout
    r = _run("service", "install", "agent", "--hub", "http://hub-a:8080,http://u:secret@hub-b:8080", "--dry-run", *where)
    assert r.returncode == 2 and "no user or password" in r.stderr and "secret" not in r.stderr
