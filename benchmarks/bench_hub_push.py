"""Hub CPU per push over HTTP and RSS, for A/B comparisons of hub code at 1,000 nodes.

Run: .venv/bin/python benchmarks/bench_hub_push.py [--nodes 1000] [--rounds 6] [--connections 4]
     [--encoding json|compact|both]

A real `gpufleet hub` process; the load generator's snapshots (benchmarks/_hubload.py, 8 GPUs +
a 224-CPU host each, gzip level 1). Round 0 is the join: every node's first push, sent as fast as
`--connections` keep-alive connections allow (each registers the node's series). Rounds 1.. are
steady pushes. Prints the hub's CPU (utime+stime from /proc) per first push and per steady push,
CPU seconds per million samples, and its RSS after the join and at the end. `--profile FILE` also
py-spy records the hub over the steady rounds, `--profile-join FILE` over the join round (`pip install
py-spy`; collapsed stacks of the thread holding the GIL, so time in C that releases it, gzip and
sockets, is not in it).

Unlike bench_hub.py this does not pace pushes in time and runs no peer: it is for comparing two
versions of the hub on the same machine back to back, e.g. an older tree with
`PYTHONPATH=/path/to/old/src` (the hub process inherits it), where bench_hub.py gives the
figures against VictoriaMetrics.

`--encoding compact` sends the agent's compact push (gpufleet/compact.py: series shape once per
node and shape, then the rest of the snapshot and packed values) to /api/v1/push/compact; `both`
runs a fresh hub for each encoding, JSON first, and prints them side by side.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import shutil
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--encoding", choices=("json", "compact", "both"), default="both")
    ap.add_argument("--storeless", action="store_true",
                    help="the hub without its store (--remote-write and --history to a VictoriaMetrics started "
                         "beside it); VictoriaMetrics' CPU and RSS are reported too")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--queries", action="store_true",
                    help="over the steady rounds, also read one GPU's utilisation over the last hour "
                         "(/api/v1/query_range) every 0.2 s and print the answers' latency: do reads wait on ingest?")
    ap.add_argument("--profile", metavar="FILE", help="py-spy record the hub (the thread holding the GIL) over the steady rounds into FILE "
                    "(collapsed stacks)")
    ap.add_argument("--profile-join", metavar="FILE", help="the same over the join round (every node's first push) into FILE")
    a = ap.parse_args()
    print(f"# bench_hub_push: {machine_line()}")
    results: dict[str, dict[str, float]] = {}
    for enc in (("json", "compact") if a.encoding == "both" else (a.encoding,)):
        results[enc] = run(a, enc)
    if len(results) == 2:
        j, c = results["json"], results["compact"]
        print(f"# compact / json: steady CPU per push {c['steady_ms_cpu_per_push']:.2f} / "
              f"{j['steady_ms_cpu_per_push']:.2f} ms ({c['steady_ms_cpu_per_push'] / j['steady_ms_cpu_per_push']:.2f}x), "
              f"join {c['join_ms_cpu_per_first_push']:.2f} / {j['join_ms_cpu_per_first_push']:.2f} ms, "
              f"RSS at the end {c['rss_end_mib']:.0f} / {j['rss_end_mib']:.0f} MiB")
    if a.json:
        # The first encoding's figures at the top (the keys older runs wrote), each one's by name.
        out: dict[str, object] = {**next(iter(results.values())), "by_encoding": results}
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


def _profiler(pid: int, path: str | None) -> subprocess.Popen[bytes] | None:
    """py-spy recording the hub's GIL-holding thread into `path` (collapsed stacks), or None."""
    if not path:
        return None
    prof = subprocess.Popen([shutil.which("py-spy") or str(Path(PY).with_name("py-spy")), "record", "--pid", str(pid), "--format", "raw",
                             "--rate", "250", "--gil", "-o", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached before the round starts
    return prof


def _stop(prof: subprocess.Popen[bytes] | None) -> None:
    if prof is not None:
        prof.send_signal(2)
        prof.wait(30)


def run(a: argparse.Namespace, encoding: str) -> dict[str, float]:
    print(f"# encoding: {encoding}")
    work = Path(tempfile.mkdtemp(prefix="bench-hub-push-"))
    port = free_port()
    extra: list[str] = []
    vm = None
    if a.storeless:
        vport = free_port()
        vm = subprocess.Popen(["victoria-metrics", f"-storageDataPath={work / 'vm'}", f"-httpListenAddr=127.0.0.1:{vport}",
                               "-retentionPeriod=100y", "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL,
                              stderr=open(work / "vm.log", "wb"), start_new_session=True)
        wait_http("127.0.0.1", vport, "/health", vm, timeout=60)
        extra = ["--remote-write", f"http://127.0.0.1:{vport}/api/v1/write", "--history", f"prometheus+http://127.0.0.1:{vport}"]
    hub = subprocess.Popen([PY, "-m", "gpufleet", "hub", "--listen", f"127.0.0.1:{port}", "--data", str(work),
                            "--log-level", "warning", *extra], stdout=subprocess.DEVNULL,
                           stderr=open(work / "hub.log", "wb"), start_new_session=True)
    vm_cpu = (lambda: proc_cpu_seconds(vm.pid)) if vm is not None else (lambda: 0.0)
    try:
        wait_http("127.0.0.1", port, "/healthz", hub, timeout=60)
        tok = subprocess.run([PY, "-m", "gpufleet", "token", "create", "--data", str(work)],
                             capture_output=True, text=True, check=True).stdout.split()[-1]
        creds = register(Http(port, bench_key(work)), tok, a.nodes)
        tmpl = _hubload.build_templates(4, "hub") if encoding == "json" else {}
        ctmpl = _hubload.build_compact_templates(4) if encoding == "compact" else {}
        sent: set[tuple[str, str]] = set()  # (node, shape id) the hub was sent, as the agent keeps it
        base = time.time() - a.rounds * 5 - 10

        def bodies(k: int) -> list[tuple[str, bytes]]:
            out = []
            for i in range(a.nodes):
                name = _hubload.node_name(i)
                ts = repr(round(base + 5 * k + i * 0.001, 3)).encode()
                if encoding == "json":
                    body = _hubload.stamp(tmpl[_hubload.profile_of(i)][k % 4], name.encode(), ts)
                else:
                    row = ctmpl[_hubload.profile_of(i)][k % 4]
                    body = _hubload.compact_body(row, name.encode(), ts, (name, row[3]) not in sent)
                    sent.add((name, row[3]))
                out.append((name, gzip.compress(body, 1, mtime=0)))
            return out

        samples_per_push = [0.0]
        path, ctype = "/api/v1/push", "application/json"
        if encoding == "compact":
            from gpufleet import compact

            path, ctype = compact.PATH, compact.CONTENT_TYPE

        def send(batch: list[tuple[str, bytes]]) -> None:
            todo, lock = list(batch), threading.Lock()

            def worker() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                while True:
                    with lock:
                        if not todo:
                            break
                        name, body = todo.pop()
                    conn.request("POST", path, body=body, headers={
                        "Authorization": f"Bearer {creds[name]}", "Content-Type": ctype,
                        "Content-Encoding": "gzip"})
                    r = conn.getresponse()
                    r.read()
                    if r.status == 503 and a.storeless:
                        # a store-less hub whose remote write is behind refuses until it drains;
                        # an agent keeps the snapshot and retries, so does this
                        time.sleep(0.2)
                        with lock:
                            todo.append((name, body))
                        continue
                    if r.status != 200:
                        raise RuntimeError(f"push answered {r.status}")

            threads = [threading.Thread(target=worker) for _ in range(a.connections)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        def counted(metric: str = "gpufleet_hub_ingest_samples_total") -> float:
            _, body = Http(port, bench_key(work)).call("GET", "/metrics")
            for line in body.decode().splitlines():
                if line.startswith(metric + " "):
                    return float(line.split()[-1])
            return float("nan")

        def drained() -> None:
            """Store-less: the round's CPU includes sending it on (remote write is asynchronous)."""
            deadline = time.monotonic() + 300
            while a.storeless and counted("gpufleet_hub_remote_write_queue_samples") > 0 \
                    and time.monotonic() < deadline:
                time.sleep(0.2)

        first = bodies(0)
        prof = _profiler(hub.pid, a.profile_join)
        c0, t0, v0 = proc_cpu_seconds(hub.pid), time.monotonic(), vm_cpu()
        send(first)
        drained()
        join_cpu, join_wall = proc_cpu_seconds(hub.pid) - c0, time.monotonic() - t0
        _stop(prof)
        vm_join = vm_cpu() - v0
        rss_join = proc_rss_bytes(hub.pid)
        s0 = counted()
        samples_per_push[0] = s0 / a.nodes
        steady = vm_steady = 0.0
        prof = _profiler(hub.pid, a.profile)
        latencies: list[float] = []
        stop_queries = threading.Event()

        def query() -> None:
            h = Http(port, bench_key(work))
            q = (f"/api/v1/query_range?metric=gpufleet_gpu_utilization_ratio&match=node%3D%22{_hubload.node_name(0)}%22"
                 "&match=gpu%3D%220%22&points=1000")
            while not stop_queries.wait(0.2):
                took, status, _ = h.timed_get(q)
                if status != 200:
                    raise RuntimeError(f"query answered {status}")
                latencies.append(took)

        prober = threading.Thread(target=query, daemon=True) if a.queries else None
        if prober is not None:
            prober.start()
        for k in range(1, a.rounds):
            batch = bodies(k)
            c0, v0 = proc_cpu_seconds(hub.pid), vm_cpu()
            send(batch)
            drained()
            steady += proc_cpu_seconds(hub.pid) - c0
            vm_steady += vm_cpu() - v0
        if prober is not None:
            stop_queries.set()
            prober.join(60)
            lat = sorted(latencies)
            if lat:
                print(f"# queries while ingesting: {len(lat)}, p50 {lat[len(lat) // 2] * 1e3:.1f} ms, "
                      f"p95 {lat[int(len(lat) * 0.95)] * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms")
        _stop(prof)
        samples = counted() - s0
        pushes = a.nodes * (a.rounds - 1)
        out = {
            "nodes": a.nodes, "samples_per_push": samples_per_push[0],
            "join_ms_cpu_per_first_push": join_cpu / a.nodes * 1e3, "join_wall_s": join_wall,
            "steady_ms_cpu_per_push": steady / pushes * 1e3,
            "steady_cpu_s_per_million": steady / (samples / 1e6) if samples else float("nan"),
            "rss_after_join_mib": rss_join / MiB, "rss_end_mib": proc_rss_bytes(hub.pid) / MiB,
            "bytes_per_push": sum(len(b) for _, b in bodies(1)) / a.nodes,
        }
        if vm is not None:  # remote write is asynchronous: its last batches land after the round
            out["vm_join_ms_cpu_per_first_push"] = vm_join / a.nodes * 1e3
            out["vm_steady_ms_cpu_per_push"] = vm_steady / pushes * 1e3
            out["vm_rss_end_mib"] = proc_rss_bytes(vm.pid) / MiB
            print(f"# VictoriaMetrics beside the hub: {out['vm_join_ms_cpu_per_first_push']:.2f} ms CPU per first push, "
                  f"{out['vm_steady_ms_cpu_per_push']:.2f} ms per steady push, RSS {out['vm_rss_end_mib']:.0f} MiB")
        print(f"# join: {out['join_ms_cpu_per_first_push']:.2f} ms CPU per first push ({join_wall:.1f} s wall), "
              f"RSS {out['rss_after_join_mib']:.0f} MiB")
        print(f"# steady: {out['steady_ms_cpu_per_push']:.2f} ms CPU per push, "
              f"{out['steady_cpu_s_per_million']:.2f} CPU s per million samples "
              f"({out['samples_per_push']:.0f} per push), RSS at the end {out['rss_end_mib']:.0f} MiB")
        return out
    finally:
        hub.terminate()
        hub.wait(30)
        if vm is not None:
            vm.terminate()
            vm.wait(30)


if __name__ == "__main__":
    sys.exit(main())
