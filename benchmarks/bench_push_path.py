"""The hub's CPU per push outside ingest: HTTP server, routing, credential check, thread hand-off.

Run: .venv/bin/python benchmarks/bench_push_path.py [--pushes 6000] [--connections 4]

One hub app under uvicorn in this process with its ingest replaced by a no-op, so what is
measured is only what a push costs around ingest; a client process sends compact-sized gzip
bodies over keep-alive connections. Two ways, back to back on the same hub:
- `fast`: as the hub runs (hub/pushpath.py ahead of FastAPI, credentials from memory, the
  ingest worker thread);
- `to_thread`: the same with asyncio.to_thread (the default executor) instead of the worker;
- `stack`: as before issue 14's change: FastAPI's middleware and route, asyncio.to_thread, and
  a credential read from hub.db on every push.
Prints the server's CPU (this process: user + system) per push for each, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import free_port, machine_line  # noqa: E402

CLIENT = r"""
import http.client, sys, threading
port, n, conns, cred = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
body = open(sys.argv[5], "rb").read()
left = [n]
lock = threading.Lock()
def run():
    c = http.client.HTTPConnection("127.0.0.1", port)
    while True:
        with lock:
            if not left[0]:
                return
            left[0] -= 1
        c.request("POST", "/api/v1/push/compact", body=body, headers={"Authorization": "Bearer " + cred,
                  "Content-Encoding": "gzip", "Content-Type": "application/octet-stream"})
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
ts = [threading.Thread(target=run) for _ in range(conns)]
[t.start() for t in ts]
[t.join() for t in ts]
"""


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pushes", type=int, default=6000)
    ap.add_argument("--connections", type=int, default=4)
    a = ap.parse_args()
    print(f"# bench_push_path: {machine_line()}")
    import uvicorn

    from gpufleet.hub.app import create_app
    from gpufleet.hub.service import Hub, HubOptions

    work = Path(tempfile.mkdtemp(prefix="bench-push-path-"))
    hub = Hub(HubOptions(data=work / "data"))
    cred = hub.state.register("n1", {}, None, token=hub.state.create_token())
    hub.ingest_compact = lambda body, node, sent_at=None: (1, 0)  # type: ignore[method-assign]
    app: Any = create_app(hub, background=False)
    body_file = work / "body.gz"
    body_file.write_bytes(gzip.compress(os.urandom(16_000) + b"\0" * 60_000, 1))  # ~30 KB like a compact push
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    fast_path, worker_run = app.push_path, app.push_path.worker.run
    unchanged = hub.state._unchanged_elsewhere  # noqa: SLF001

    def way(name: str) -> None:
        app.push_path = None if name == "stack" else fast_path
        fast_path.worker.run = worker_run if name == "fast" else lambda fn, *args: asyncio.to_thread(fn, *args)
        # stack: read hub.db on every push
        hub.state._unchanged_elsewhere = (lambda: False) if name == "stack" else unchanged  # noqa: SLF001

    results: dict[str, float] = {}
    for name in ("fast", "to_thread", "stack") * 2:
        way(name)
        c0, t0 = cpu(), time.monotonic()
        subprocess.run([sys.executable, "-c", CLIENT, str(port), str(a.pushes), str(a.connections), cred,
                        str(body_file)], check=True)
        per = (cpu() - c0) / a.pushes * 1e3
        results[name] = min(results.get(name, per), per)
        print(f"# {name}: {per:.3f} ms CPU per push ({time.monotonic() - t0:.1f} s wall)")
    print(f"# best of two each: fast {results['fast']:.3f}, to_thread {results['to_thread']:.3f}, "
          f"stack {results['stack']:.3f} ms; fast / stack {results['fast'] / results['stack']:.2f}x")
    server.should_exit = True
    thread.join(10)
    hub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
