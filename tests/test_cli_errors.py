"""What a new user meets at the command line: one line naming the problem, exit 2, nothing left behind."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from gpufleet.hub.service import Hub, HubOptions
from realparts import free_port, gpufleet


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpufleet(*args), capture_output=True, text=True, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("gpufleet: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_a_second_hub_on_a_data_directory_in_use(tmp_path: Path) -> None:
    first = Hub(HubOptions(data=tmp_path / "d"))
    try:
        r = run("hub", "--data", str(tmp_path / "d"), "--listen", f"127.0.0.1:{free_port()}")
        one_line_error(r, f"the data directory {tmp_path / 'd'} is in use by another hub", "--data")
    finally:
        first.close()
    Hub(HubOptions(data=tmp_path / "d")).close()  # released with the first


def test_bad_urls_are_refused_before_the_data_directory_is_made(tmp_path: Path) -> None:
    one_line_error(run("hub", "--remote-write", "ftp://x", "--data", str(tmp_path / "a")),
                   "--remote-write: remote write URL 'ftp://x' must start with one of http://, https://")
    one_line_error(run("hub", "--history", "http://u:sekrit@x", "--data", str(tmp_path / "b")),
                   "--history: history URL", "prometheus+http://")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_token_create_refuses_a_directory_that_is_not_the_hubs(tmp_path: Path) -> None:
    typo = tmp_path / "gpufleet-dat"
    one_line_error(run("token", "create", "--data", str(typo)), "no hub data in", "--new")
    assert not typo.exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    one_line_error(run("token", "create", "--new", "--data", str(tmp_path / "other")), "is not empty")
    r = run("token", "create", "--new", "--data", str(typo))
    assert r.returncode == 0 and r.stdout.split()[-1].startswith("gft_")
    r = run("token", "list", "--data", str(typo))  # list and revoke read the same directory
    assert r.returncode == 0 and r.stdout.startswith(r.stdout.split()[0]) and "active" in r.stdout
    assert run("token", "create", "--data", str(typo)).returncode == 0  # a hub directory now: no --new


def test_click_usage_errors_are_one_line() -> None:
    one_line_error(run("hub", "--bogus"), "No such option '--bogus'", "gpufleet hub --help")
    one_line_error(run("hub", "--compat", "dcgm"), "--compat", "'dcgm' is not 'ds01'")  # the agent's, not the hub's
    one_line_error(run("top", "--interval", "x"), "--interval", "gpufleet top --help")
    one_line_error(run("rules", "test-notify"), "give --notify FILE")


def test_test_notify_without_a_hub_shows_the_services_answer(tmp_path: Path) -> None:
    f = tmp_path / "notify.yaml"
    f.write_text(f'receivers:\n  ops:\n    apprise: ["json://127.0.0.1:{free_port()}/hook"]\n')
    r = run("rules", "test-notify", "--notify", str(f))
    assert r.returncode == 1 and r.stdout.startswith("FAIL ops:apprise:json://127.0.0.1:"), r.stdout
    assert "Connection error" in r.stdout and "hub log" not in r.stdout


def test_agent_without_a_token_does_not_say_serving(tmp_path: Path) -> None:
    r = subprocess.run(gpufleet("agent", "--hub", f"http://127.0.0.1:{free_port()}", "--listen", "127.0.0.1:0"),
                       capture_output=True, text=True, timeout=60, env={"XDG_STATE_HOME": str(tmp_path),
                                                                      "PATH": "/usr/bin:/bin"})
    one_line_error(r, "--hub needs --token")
    assert "serving" not in r.stdout + r.stderr


def test_outgoing_requests_are_not_logged_at_info() -> None:
    from gpufleet.cli import _setup_logging

    httpx_log = logging.getLogger("httpx")
    try:
        _setup_logging("info")
        assert httpx_log.getEffectiveLevel() == logging.WARNING
        _setup_logging("debug")
        # not even at debug: httpx logs whole URLs (webhook paths, keys in queries), issue 9
        assert httpx_log.getEffectiveLevel() == logging.WARNING
    finally:
        httpx_log.setLevel(logging.NOTSET)
