"""`gpufleet user ...`, `gpufleet apikey ...`, the first-run hint and `top --api-key`, as processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from access import bearer
from realparts import free_port, gpufleet, hub_proc


def _run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpufleet(*args), capture_output=True, text=True, timeout=60, input=stdin,
                          env={**os.environ, **(env or {})})


def test_users_and_keys(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery\n")
    r = _run("user", "add", "alice", "--role", "admin", "--password-file", str(pw), "--data", data)
    assert r.returncode == 0 and "added admin alice" in r.stdout and "correct horse" not in r.stdout + r.stderr
    # no file: asked twice, never echoed
    r = _run("user", "add", "bob", "--role", "viewer", "--data", data, stdin="s3cret-pass\ns3cret-pass\n")
    assert r.returncode == 0, r.stderr
    assert "s3cret-pass" not in r.stdout + r.stderr
    assert "Password:" in r.stderr and "Repeat the password:" in r.stderr
    r = _run("user", "add", "carl", "--role", "viewer", "--data", data, stdin="s3cret-pass\nother-pass\n")
    assert r.returncode != 0  # the two entries differ: nothing is created
    out = _run("user", "list", "--data", data).stdout
    assert "alice" in out and "admin" in out and "bob" in out and "carl" not in out
    assert b"correct horse" not in (tmp_path / "d" / "hub.db").read_bytes()

    # bad input: one line, exit 2
    for args, words in ((("user", "add", "dan", "--role", "viewer", "--password-file", str(tmp_path / "none")),
                         "cannot read"),
                        (("user", "add", "alice", "--role", "viewer", "--password-file", str(pw)), "exists already"),
                        (("user", "add", "bad name", "--role", "viewer", "--password-file", str(pw)), "user name"),
                        (("apikey", "create", "--user", "bob", "--role", "admin"), "a key cannot be admin"),
                        (("apikey", "create", "--user", "nobody"), "no user 'nobody'"),
                        (("apikey", "create", "--user", "bob", "--expires", "soon"), "not a duration"),
                        (("apikey", "revoke", "gfk_nothing"), "no active API key"),
                        (("user", "remove", "nobody"), "no user")):
        r = _run(*args, "--data", data)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    short = tmp_path / "short"
    short.write_text("abc\n")
    r = _run("user", "add", "eve", "--role", "viewer", "--password-file", str(short), "--data", data)
    assert r.returncode == 2 and "shorter than 8" in r.stderr

    r = _run("apikey", "create", "--user", "alice", "--role", "operator", "--expires", "30d", "--data", data)
    assert r.returncode == 0
    key = r.stdout.split()[-1]  # the key is the last word
    assert key.startswith("gfk_")
    listing = _run("apikey", "list", "--data", data).stdout
    assert key[:12] in listing and key not in listing and "operator" in listing and "active" in listing

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, Path(data), port)
    try:
        assert "No accounts yet" not in hub.log()
        assert httpx.get(f"{url}/api/v1/nodes", headers=bearer(key)).status_code == 200
        # the role is the key's, not the user's
        r = httpx.post(f"{url}/api/v1/silences", headers=bearer(key), json={"matchers": {"node": "x"},
                       "duration": "1h", "author": "alice"})
        assert r.status_code == 201
        # gpufleet top with a key (flag or env), and a clear line without one
        r = _run("top", url, "--once", "--api-key", key)
        assert r.returncode == 0 and "0 nodes" in r.stdout, r.stderr
        r = _run("top", url, "--once", env={"GPUFLEET_API_KEY": key})
        assert r.returncode == 0 and "0 nodes" in r.stdout
        r = _run("top", url, "--once", env={"GPUFLEET_API_KEY": ""})
        assert r.returncode == 2 and "--api-key" in r.stderr and "Traceback" not in r.stderr
        # revoke and passwd act on a running hub
        assert _run("apikey", "revoke", key[:12] + "...", "--data", data).returncode == 0
        assert httpx.get(f"{url}/api/v1/nodes", headers=bearer(key)).status_code == 401
        c = httpx.Client(base_url=url)
        assert c.post("/login", data={"name": "bob", "password": "s3cret-pass"}).status_code == 303
        assert c.get("/api/v1/nodes").status_code == 200
        assert _run("user", "passwd", "bob", "--data", data, stdin="new-password-1\nnew-password-1\n").returncode == 0
        assert c.get("/api/v1/nodes").status_code == 401  # its sessions ended
        assert httpx.post(f"{url}/login", data={"name": "bob", "password": "new-password-1"}).status_code == 303
        assert _run("user", "remove", "bob", "--data", data).returncode == 0
        assert "bob" not in _run("user", "list", "--data", data).stdout
    finally:
        hub.stop()


def test_hub_without_accounts_says_how_to_make_one(tmp_path: Path) -> None:
    data = tmp_path / "d"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, data, port)
    try:
        lines = [ln for ln in hub.log().splitlines() if "No accounts yet" in ln]
        assert len(lines) == 1 and f"gpufleet user add NAME --role admin --data {data}" in lines[0]
        assert httpx.get(f"{url}/api/v1/nodes").status_code == 401  # it runs, closed
        assert httpx.get(f"{url}/login").status_code == 200
    finally:
        hub.stop()
