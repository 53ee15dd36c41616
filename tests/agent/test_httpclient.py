"""gpufleet.httpclient, the agent's standard-library HTTP client, against small real servers:
keep-alive and a connection the server closed meanwhile, close() ending a held request, the
proxy variables (absolute URL, Proxy-Authorization, CONNECT for https, NO_PROXY), errors."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gpufleet.httpclient import Client, HTTPError

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in PROXY_VARS:
        monkeypatch.delenv(v, raising=False)


class Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]]
    hold = threading.Event()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append({"line": self.requestline, "headers": dict(self.headers), "body": body,
                          "port": self.client_address[1]})
        if self.path.endswith("/hold"):
            self.hold.wait(10)
        out = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer

    def do_CONNECT(self) -> None:
        self.seen.append({"line": self.requestline, "headers": dict(self.headers), "body": b"", "port": 0})
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def server() -> Iterator[tuple[str, list[dict[str, Any]], http.server.ThreadingHTTPServer]]:
    seen: list[dict[str, Any]] = []
    handler = type("H", (Recorder,), {"seen": seen, "hold": threading.Event()})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen, srv
    finally:
        handler.hold.set()
        srv.shutdown()
        srv.server_close()


def test_get_post_json_and_keep_alive() -> None:
    with server() as (url, seen, _):
        c = Client(timeout=5, headers={"User-Agent": "t/1"})
        r = c.post(url + "/a", json={"x": 1}, headers={"Authorization": "Bearer k"})
        assert r.status_code == 200 and r.json() == {"ok": True} and r.headers.get("content-type") == "application/json"
        r = c.get(url + "/b", params={"wait": 2.5})
        assert r.status_code == 200
        c.close()
    assert seen[0]["line"] == "POST /a HTTP/1.1" and seen[0]["body"] == b'{"x":1}'
    assert seen[0]["headers"]["Authorization"] == "Bearer k" and seen[0]["headers"]["User-Agent"] == "t/1"
    assert seen[0]["headers"]["Content-Type"] == "application/json"
    assert seen[1]["line"] == "GET /b?wait=2.5 HTTP/1.1"
    assert seen[0]["port"] == seen[1]["port"]  # one connection, kept alive


def test_a_connection_the_server_closed_is_replaced() -> None:
    """An idle keep-alive connection the hub dropped (uvicorn does after 5 s) costs no failure."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    lines: list[bytes] = []

    def serve() -> None:
        for _ in range(2):  # each connection: one request answered as keep-alive, then closed
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                lines.append(data.split(b"\r\n", 1)[0])
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
                time.sleep(0.2)  # the answer is read before the close

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    c = Client(timeout=5)
    assert c.get(f"http://127.0.0.1:{port}/one").content == b"ok"
    time.sleep(0.5)  # the server has closed that connection by now
    assert c.get(f"http://127.0.0.1:{port}/two").content == b"ok"
    c.close()
    t.join(5)
    listener.close()
    assert lines == [b"GET /one HTTP/1.1", b"GET /two HTTP/1.1"]


def test_close_ends_a_request_in_flight() -> None:
    with server() as (url, _, _):
        c = Client(timeout=30)
        errors: list[BaseException] = []

        def poll() -> None:
            try:
                c.get(url + "/hold")
            except HTTPError as e:
                errors.append(e)

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.3)
        started = time.monotonic()
        c.close()
        t.join(5)
        assert not t.is_alive() and time.monotonic() - started < 5
        assert errors
        with pytest.raises(HTTPError, match="closed"):
            c.get(url + "/after")


def test_errors_are_http_errors_with_the_cause() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(HTTPError, match="ConnectionRefusedError"):
            Client(timeout=2).get(f"http://127.0.0.1:{port}/")
    with pytest.raises(HTTPError, match="not an http"):
        Client(timeout=2).get("ftp://example/")


def test_http_proxy_absolute_url_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with server() as (proxy, seen, _):
        monkeypatch.setenv("HTTP_PROXY", proxy.replace("http://", "http://user:p%40ss@"))
        r = Client(timeout=5).get("http://hub.invalid:8080/api/v1/x")
        assert r.status_code == 200
    assert seen[0]["line"] == "GET http://hub.invalid:8080/api/v1/x HTTP/1.1"
    assert seen[0]["headers"]["Proxy-Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss


def test_https_goes_through_a_connect_tunnel(monkeypatch: pytest.MonkeyPatch) -> None:
    with server() as (proxy, seen, _):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        with pytest.raises(HTTPError, match="502"):
            Client(timeout=5).get("https://hub.invalid/api")
    assert seen[0]["line"] == "CONNECT hub.invalid:443 HTTP/1.0"


def test_no_proxy_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    with server() as (url, seen, _):
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing there: used, it would fail
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert Client(timeout=5).get(url + "/direct").status_code == 200
    assert seen[0]["line"] == "GET /direct HTTP/1.1"
