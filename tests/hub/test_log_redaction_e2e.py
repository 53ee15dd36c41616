"""Secrets never reach the logs (issue 9: at INFO httpx logged a webhook's user:pass@.../SECRETPATH
?apikey=... and the remote-write key). A real hub at --log-level debug sends a test notification
to a real webhook receiver and remote-writes to an address that refuses: its whole log is clean."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from gpufleet.logredact import RedactFilter, redact_text
from access import bearer, make_api_key
from realparts import Proc, free_port, gpufleet, join_token

SECRETS = ("WHPASS", "SECRETPATH", "WHAPIKEY", "RWPASS", "RWAPIKEY")


def test_redact_text() -> None:
    line = 'HTTP Request: POST http://user:WHPASS@h:9/hook?apikey=WHAPIKEY "HTTP/1.1 200 OK"'
    assert redact_text(line) == 'HTTP Request: POST http://user:***@h:9/hook?apikey=*** "HTTP/1.1 200 OK"'
    assert redact_text("to slack://TokenA/TokenB/TokenC failed") == "to slack://*** failed"
    assert redact_text("json://u:p@host/SECRETPATH") == "json://***"
    assert redact_text("no url here") == "no url here"


def test_filter_redacts_messages_arguments_and_tracebacks() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    h = Keep()
    h.setFormatter(logging.Formatter("%(message)s"))
    h.addFilter(RedactFilter())
    log = logging.getLogger("gpufleet.test.redact")
    log.addHandler(h)
    log.setLevel(logging.DEBUG)
    try:
        log.info("posting to %s", "http://u:WHPASS@h/x?token=WHAPIKEY")
        try:
            raise RuntimeError("failed for url 'http://u:RWPASS@h/api/v1/write?key=RWAPIKEY'")
        except RuntimeError:
            log.exception("remote write failed")
    finally:
        log.removeHandler(h)
    text = "\n".join(records)
    assert "posting to http://u:***@h/x?token=***" in text and "RuntimeError" in text
    assert not any(s in text for s in SECRETS)


def test_hub_log_at_debug_holds_no_secret(tmp_path: Path) -> None:
    got: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    webhook = f"http://user:WHPASS@127.0.0.1:{receiver.server_address[1]}/SECRETPATH?apikey=WHAPIKEY"
    notify = tmp_path / "notify.yaml"
    notify.write_text(json.dumps({"receivers": {"ops": {"webhook": [webhook]}}, "route": {"receiver": "ops"}}))
    refused = free_port()  # nothing listens: remote write fails and says so
    remote = f"http://rw:RWPASS@127.0.0.1:{refused}/api/v1/write?apikey=RWAPIKEY"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "data"),
                        "--notify", str(notify), "--remote-write", remote, "--log-level", "debug"),
               tmp_path / "hub.log")
    agent = None
    try:
        hub.wait_http(f"{url}/healthz")
        token = join_token(tmp_path / "data")
        agent = Proc(gpufleet("agent", "--hub", url, "--token", token, "--node", "n1", "--simulate", "2xRTX4090",
                              "--interval", "0.5", "--spool", str(tmp_path / "spool"), "--log-level", "debug",
                              "--listen", f"127.0.0.1:{free_port()}"), tmp_path / "agent.log")
        key = make_api_key(tmp_path / "data", "operator")
        r = httpx.post(f"{url}/api/v1/notifications/test", json={}, headers=bearer(key), timeout=30)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not got:
            time.sleep(0.1)
        assert got and got[0].startswith("/SECRETPATH")  # the receiver was really called
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "remote" not in hub.log().lower():
            time.sleep(0.2)
        assert "remote" in hub.log().lower()  # the refused remote write was logged...
        time.sleep(1)
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
        receiver.shutdown()
    for log in (hub.log_path.read_text(), agent.log_path.read_text() if agent else ""):
        for secret in SECRETS:
            assert secret not in log, f"{secret} in the log:\n{log[-3000:]}"  # ...without its secrets
