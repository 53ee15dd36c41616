"""Live-update streams and the hub's memory: open many `/api/v1/events` streams, close them, watch RSS.

Run: .venv/bin/python benchmarks/bench_streams.py [--nodes 1000] [--streams 1000] [--wave 500]

A real `gpufleet hub` process with `--nodes` simulated 8-GPU nodes (benchmarks/_hubload.py, one
push each, then a push every few seconds from one thread so the broker publishes deltas). Streams
open in waves of `--wave` (the hub allows 512 at once, 16 per client address: each stream comes
from its own 127.0.x.y address), each reads its first events, and the wave stays open over a few
publishing ticks; then every stream closes. Half of each wave reads on (a live page), half
never reads past its first bytes (a page left in a background tab, a stuck proxy), and
`--abandon` more connect, send the request and hang up before the answer (a page closed while
loading). Prints the hub's RSS at each step and the streams it still counts as open.
"""

from __future__ import annotations

import argparse
import gzip
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import free_port, machine_line, proc_cpu_seconds, proc_rss_bytes, wait_http  # noqa: E402
import _hubload  # noqa: E402
from bench_hub import Http, bench_key, register  # noqa: E402

PY = sys.executable
MiB = 1 << 20


def address(i: int) -> str:
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def open_stream(port: int, key: str, i: int, read: bool) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(address(i), 0))
    s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
              "Accept: text/event-stream\r\n\r\n".encode())
    first = s.recv(4096)
    if not first.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"stream {i}: {first[:200]!r}")
    if read:
        s.settimeout(30)
        got = first
        while b"event: fleet" not in got:  # the full state of the fleet
            got = got[-64:] + s.recv(1 << 16)
    return s


def drain(socks: list[socket.socket], stop: threading.Event) -> None:
    """What a live page does: read whatever arrives."""
    for s in socks:
        s.setblocking(False)
    while not stop.is_set():
        for s in socks:
            try:
                while s.recv(1 << 16):
                    pass
            except (BlockingIOError, OSError):
                pass
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--wave", type=int, default=500)
    ap.add_argument("--abandon", type=int, default=200)
    ap.add_argument("--hold", type=float, default=8.0, help="seconds each wave stays open")
    ap.add_argument("--control", action="store_true",
                    help="the same steps and pauses with no stream opened: the hub's growth from the pushes alone")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    print(f"# bench_streams: {machine_line()}")
    work = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    port = free_port()
    hub = subprocess.Popen([PY, "-m", "gpufleet", "hub", "--listen", f"127.0.0.1:{port}", "--data", str(work),
                            "--log-level", "warning"], stdout=subprocess.DEVNULL,
                           stderr=open(work / "hub.log", "wb"), start_new_session=True)
    stop = threading.Event()
    try:
        wait_http("127.0.0.1", port, "/healthz", hub, timeout=60)
        tok = subprocess.run([PY, "-m", "gpufleet", "token", "create", "--data", str(work)],
                             capture_output=True, text=True, check=True).stdout.split()[-1]
        key = bench_key(work)
        creds = register(Http(port, key), tok, a.nodes)
        tmpl = _hubload.build_templates(4, "hub")
        names = [_hubload.node_name(i) for i in range(a.nodes)]

        def push_round(k: int, conn: Http) -> None:
            for i, name in enumerate(names):
                ts = repr(round(time.time() - 1 + i * 1e-6, 6)).encode()
                body = _hubload.stamp(tmpl[_hubload.profile_of(i)][k % 4], name.encode(), ts)
                status, reply = conn.call("POST", "/api/v1/push", gzip.compress(body, 1, mtime=0), {
                    "Authorization": f"Bearer {creds[name]}", "Content-Type": "application/json",
                    "Content-Encoding": "gzip"})
                if status != 200:
                    raise RuntimeError(f"push {name}: {status} {reply[:200]!r}")

        conn = Http(port, key)
        push_round(0, conn)

        def pusher() -> None:  # keeps the broker publishing deltas while streams are open
            c, k = Http(port, key), 1
            while not stop.is_set():
                try:
                    push_round(k, c)
                except OSError:
                    return  # the hub is gone: the run is over
                k += 1

        threading.Thread(target=pusher, daemon=True).start()
        time.sleep(25)  # the hub's first memory trim after the join
        out: dict[str, float] = {"nodes": a.nodes, "streams": 0 if a.control else a.streams, "rss_before_mib": proc_rss_bytes(hub.pid) / MiB}
        print(f"# {a.nodes} nodes, before any stream: RSS {out['rss_before_mib']:.0f} MiB")
        c0 = proc_cpu_seconds(hub.pid)
        peak = 0.0
        opened = 0
        while opened < a.streams:
            n = min(a.wave, a.streams - opened)
            socks = [] if a.control else [open_stream(port, key, opened + j, read=j % 2 == 0) for j in range(n)]
            live = [s for j, s in enumerate(socks) if j % 2 == 0]
            t = threading.Thread(target=drain, args=(live, stop), daemon=True)
            t.start()
            for j in range(0 if a.control else min(a.abandon, n)):
                s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(address(opened + j), 0))
                s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
                s.close()
            time.sleep(a.hold)
            rss = proc_rss_bytes(hub.pid) / MiB
            peak = max(peak, rss)
            print(f"# {n} streams open (wave from {opened}): RSS {rss:.0f} MiB")
            for s in socks:
                s.close()
            opened += n
            time.sleep(2)
        out["rss_open_max_mib"] = peak
        out["rss_closed_mib"] = proc_rss_bytes(hub.pid) / MiB
        time.sleep(25)  # one memory trim later
        out["rss_closed_trimmed_mib"] = proc_rss_bytes(hub.pid) / MiB
        out["cpu_s"] = proc_cpu_seconds(hub.pid) - c0
        status, body = Http(port, key).call("GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("gpufleet_hub_ui_streams_open"):
                out["streams_still_open"] = float(line.split()[-1])
        print(f"# all closed: RSS {out['rss_closed_mib']:.0f} MiB, after a trim {out['rss_closed_trimmed_mib']:.0f} MiB "
              f"(before {out['rss_before_mib']:.0f}, peak open {peak:.0f}); still open by the hub's count: "
              f"{out.get('streams_still_open', 'n/a')}")
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    finally:
        stop.set()
        hub.terminate()
        hub.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
