"""What a new user (or a typo) gives the new commands: one line naming the problem, exit 2, no
traceback, nothing left half-written (the QA pass over issues 10, 12 and 15)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpufleet.cli import main

BAD_URLS = ["http://[::1", "http://hub:99999", "http://hub:abc"]


Run = Callable[..., tuple[int, str]]


@pytest.fixture()
def run(capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    """gpufleet's own entry point in-process: exit code and what it printed (stdout + stderr)."""
    def go(*argv: str) -> tuple[int, str]:
        try:
            main(list(argv))
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return code, out + err
    yield go


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("cmd", [["status", "--hub"], ["report", "--hub"], ["jobs", "--hub"],
                                 ["k8s", "manifests", "--out", "OUT", "--hub-url"],
                                 ["service", "install", "agent", "--dry-run", "--hub"]])
def test_bad_hub_url_is_one_line(run: Run, tmp_path: Path, cmd: list[str], url: str) -> None:
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in cmd]
    code, out = run(*argv, url)
    assert code == 2, out
    assert "Traceback" not in out and out.count("\n") == 1 and "is not a URL" in out, out
    assert not (tmp_path / "out").exists()


def test_stack_bad_hub_url_is_one_line(run: Run, tmp_path: Path) -> None:
    code, out = run("stack", "generate", "--out", str(tmp_path / "s"), "--hub", "http://[::1")
    assert code == 2 and out.count("\n") == 1 and "Invalid IPv6 URL" in out, out
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("cmd", [["k8s", "manifests", "--out", "OUT", "--hub-url"],
                                 ["service", "install", "agent", "--dry-run", "--hub"]])
def test_no_password_in_generated_files(run: Run, tmp_path: Path, cmd: list[str]) -> None:
    # A unit is 0644 and its ExecStart shows in `ps`; a manifest's args are in the DaemonSet for
    # anyone who can read it: a password in the hub URL must not be written there.
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in cmd]
    code, out = run(*argv, "http://agent:s3cret@hub:8080")
    assert code == 2 and "no user or password in the URL" in out and "s3cret" not in out, out
    assert not (tmp_path / "out").exists()


def test_k8s_out_under_a_file_is_one_line(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    code, out = run("k8s", "manifests", "--out", str(tmp_path / "f" / "sub"))
    assert code == 2 and out.startswith("gpufleet: error: --out ") and "cannot write there" in out, out


def test_service_unit_dir_that_cannot_be_made(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    unit_dir = tmp_path / "f" / "units"
    code, out = run("service", "install", "agent", "--unit-dir", str(unit_dir), "--config-dir",
                     str(tmp_path / "cfg"), "--hub", "http://hub:8080")
    assert code == 2 and "cannot write" in out and "Traceback" not in out, out


def test_stress_refuses_a_control_dir_others_can_write(run: Run, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The default control directory has a guessable name in /tmp: one another user made first
    # (here: world-writable) is refused, not written through (a planted symlink) or read.
    from gpufleet.backends import sim_control

    d = tmp_path / "ctl"
    d.mkdir()
    d.chmod(0o777)
    (d / "stress.json").write_text('{"load": 1.0, "until": 9e12}')
    monkeypatch.setenv(sim_control.ENV, str(d))
    code, out = run("stress", "--simulate", "--seconds", "1")
    assert code == 2 and "is not a directory only you can write" in out and "Traceback" not in out, out
    assert sim_control.Reader(d).current(0.0) is None  # a request planted there is not obeyed
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(victim, d / f".stress.json.{os.getpid()}")
    with pytest.raises(sim_control.ControlDirError):
        sim_control.write(sim_control.Stress(1.0, 9e12), d)
    assert victim.read_text() == "keep"


@pytest.mark.parametrize(("args", "says"), [
    (["--hub", "http://[::1"], "--hub http://[::1: give the hub's URL as http(s)://HOST[:PORT]"),
    (["--hub", "http://hub:8080 --enable"], "--hub http://hub:8080 --enable: give the hub's URL"),
    (["--hub", "http://hub:8080", "--version", "1.0; echo"], "--version 1.0; echo is not a version number"),
])
def test_install_script_refuses_before_the_venv(args: list[str], says: str) -> None:
    # Caught at the checks, not at the last step after a venv was made and pip ran.
    import subprocess

    from realparts import ROOT

    r = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), *args, "--dry-run"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.startswith(f"install.sh: error: {says}") and r.stderr.count("\n") == 1, r.stderr


@pytest.fixture()
def not_a_hub() -> Iterator[str]:
    """A server that is not this gpufleet hub: another version's JSON, or an HTML 404 page."""
    import http.server
    import threading

    answers = {"/api/v1/status": (200, b'{"status": "healthy"}'),
               "/api/v1/jobs": (200, b'{"jobs": [{"job": "slurm:1"}]}'),
               "/api/v1/usage": (404, b"<!DOCTYPE HTML>\n<html>\n<body>Not Found</body>\n</html>\n")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            code, body = answers.get(self.path.split("?")[0], (404, b"nope"))
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("cmd", [["status"], ["jobs"], ["report"], ["report", "--format", "csv"]])
def test_an_answer_that_is_not_this_hubs_is_one_line(run: Run, not_a_hub: str, cmd: list[str]) -> None:
    code, out = run(*cmd, "--hub", not_a_hub, "--api-key", "k")
    assert code == 2 and "Traceback" not in out and out.count("\n") == 1, out
    assert out.startswith("gpufleet: error: ") and "gpufleet hub" in out, out


def test_gpu_check_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gpufleet import gpucheck

    assert gpucheck.main(["--agent-args", '"unterminated']) == 2
    assert capsys.readouterr().err.startswith("gpu-check: --agent-args '\"unterminated': No closing quotation")
    smi = tmp_path / "nvidia-smi"  # one GPU, so the check gets as far as reading --url
    smi.write_text("#!/bin/sh\necho 0, NVIDIA H100, GPU-1\n")
    smi.chmod(0o755)
    assert gpucheck.main(["--url", "http://[::1", "--nvidia-smi", str(smi)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu-check: http://[::1: ") and err.count("\n") == 1, err


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--storage", "20 GB; rm", "is not a Kubernetes quantity"),
    ("--runtime-class", "Nvidia Runtime", "is not a Kubernetes name"),
    ("--storage-class", "fast/ssd", "is not a Kubernetes name"),
])
def test_k8s_values_kubectl_would_refuse(run: Run, tmp_path: Path, flag: str, value: str, says: str) -> None:
    code, out = run("k8s", "manifests", "--out", str(tmp_path / "m"), flag, value)
    assert code == 2 and says in out and out.count("\n") == 1, out
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(("argv", "says"), [
    (["k8s", "manifests", "--out", "OUT", "--token-file", "BIN"], "--token-file: BIN is not a text file"),
    (["stack", "generate", "--out", "OUT", "--hub", "http://hub:8080", "--rules", "BIN"], "not a text file"),
    (["agent", "--simulate", "2xRTX4090", "--groups", "BIN"], "--groups: groups file BIN is not a text file"),
])
def test_a_binary_file_given_by_mistake(run: Run, tmp_path: Path, argv: list[str], says: str) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe")
    args = [str(tmp_path / "out") if a == "OUT" else str(binary) if a == "BIN" else a for a in argv]
    code, out = run(*args)
    assert code == 2 and says.replace("BIN", str(binary)) in out and "Traceback" not in out, out
    assert not (tmp_path / "out").exists()


def test_stack_two_services_on_one_host_port(run: Run, tmp_path: Path) -> None:
    code, out = run("stack", "generate", "--out", str(tmp_path / "s"), "--hub", "http://hub:8080",
                    "--port", "grafana=9090")
    assert code == 2 and "prometheus and grafana would both publish host port 9090" in out, out
    assert not (tmp_path / "s").exists()


def test_stack_on_an_ipv6_loopback(run: Run, tmp_path: Path) -> None:
    # Compose reads '::1:3000:3000' as something else: an IPv6 address goes in brackets.
    import yaml

    code, out = run("stack", "generate", "--out", str(tmp_path / "s"), "--hub", "http://hub:8080", "--bind", "::1")
    assert code == 0 and "Grafana on http://[::1]:3000" in out, out
    compose = yaml.safe_load((tmp_path / "s" / "compose.yaml").read_text())
    assert compose["services"]["grafana"]["ports"] == ["[::1]:3000:3000"]


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_status_never_prints_a_password_in_the_hub_url(run: Run, not_a_hub: str, as_json: list[str]) -> None:
    url = not_a_hub.replace("://", "://ops:s3cret@")
    code, out = run("status", "--hub", url, *as_json)
    assert "s3cret" not in out and "ops:***@" in out, out
    code, out = run("status", "--hub", "http://ops:s3cret@127.0.0.1:1", *as_json)
    assert code == 2 and "s3cret" not in out, out


# Eight lines of nested YAML aliases that spell out 9**8 (43 million) values once expanded.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh"))


@pytest.mark.parametrize("argv", [["rules", "check", "FILE"], ["rules", "export", "--out", "OUT", "--rules", "FILE"],
                                  ["rules", "test-notify", "--notify", "FILE"],
                                  ["agent", "--config", "FILE"]])
def test_a_yaml_alias_bomb_is_refused_at_once(run: Run, tmp_path: Path, argv: list[str]) -> None:
    # Building every expanded value (each with its line) would take hours and all memory.
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    code, out = run(*[str(bomb) if a == "FILE" else str(tmp_path / "out") if a == "OUT" else a for a in argv])
    assert code in (1, 2) and "Traceback" not in out, out
    assert "expands to more than 200,000 values through its aliases" in out and str(bomb) in out, out

