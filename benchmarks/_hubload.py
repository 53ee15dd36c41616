"""Load generator for bench_hub.py: N simulated 8-GPU nodes pushing every INTERVAL seconds.

Payloads are built once (a few distinct simulated snapshots per profile, with the host's
process table), then every push only re-stamps node name and timestamp in the JSON bytes
(joined from pre-split parts) and gzips it (level 1), so the generator's own CPU stays low.
Pushes are spread evenly over each interval (node i at phase i/N of it) and sent over a small
pool of keep-alive http.client connections, one per worker thread.

    python benchmarks/_hubload.py --target hub --url http://127.0.0.1:P --creds creds.json ...
    python benchmarks/_hubload.py --target vm  --url http://127.0.0.1:P --nodes 1000 ...

`--target vm` sends the same samples (the hub's own series of each snapshot, from
gpufleet.series.snapshot_series) as Prometheus text to VictoriaMetrics'
/api/v1/import/prometheus, without timestamps (VM stamps them on arrival).

Progress goes to stdout as JSON lines: {"event": "ready"}, {"event": "measure_start"},
{"event": "measure_end"}, then {"event": "result", ...} with push latencies of the window.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import queue
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

PROFILES = ("8xH100", "8xA100")  # the 8-GPU profiles of the simulated demo fleet
NODE_MARK = "zzqnodemarkzz"
TS_MARK = b"\x00TS\x00"
NODE_BMARK = b"\x00NODE\x00"


def node_name(i: int) -> str:
    return f"bench-{i:05d}"


def profile_of(i: int) -> str:
    return PROFILES[i % len(PROFILES)]


def node_labels(i: int) -> dict[str, str]:
    return {"cluster": "bench", "profile": profile_of(i), "simulated": "true"}


def _split(data: bytes) -> list[bytes]:
    """Template parts: text, NODE_BMARK, text, TS_MARK, ... (markers kept as separate items)."""
    out: list[bytes] = []
    for i, piece in enumerate(data.split(NODE_BMARK)):
        if i:
            out.append(NODE_BMARK)
        for j, sub in enumerate(piece.split(TS_MARK)):
            if j:
                out.append(TS_MARK)
            out.append(sub)
    return out


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def build_snapshots(variants: int) -> dict[str, list]:
    """`variants` distinct simulated NodeSnapshots per 8-GPU profile, named NODE_MARK."""
    from gpufleet.agent.collect import Collection
    from gpufleet.backends.sim import SimBackend
    from gpufleet.collectors import SIMULATED_NODE, build
    from gpufleet.collectors.base import CollectContext

    out: dict[str, list] = {}
    for profile in PROFILES:
        # One node identity per profile (GPU UUIDs stay put), sampled at `variants` moments
        # a minute apart on a simulated clock: distinct values, the same series every push.
        clock = [time.time() - 60.0 * (variants + 1)]
        backend = SimBackend(profile, seed=1, node=NODE_MARK, clock=lambda: clock[0])
        ctx = CollectContext(backend=backend, options={"node": NODE_MARK})
        labels = {"cluster": "bench", "profile": profile, "simulated": "true"}
        c = Collection(NODE_MARK, build(ctx, SIMULATED_NODE), labels=labels, backend="sim")
        c.run(clock[0])
        snaps = []
        for _ in range(variants):
            clock[0] += 60.0
            snaps.append(c.run(clock[0]))
        out[profile] = snaps
    return out


def build_templates(variants: int, target: str) -> dict[str, list[list[bytes]]]:
    from gpufleet.series import snapshot_series
    from gpufleet.snapshot import to_json

    out: dict[str, list[list[bytes]]] = {}
    for profile, snaps in build_snapshots(variants).items():
        parts = []
        for snap in snaps:
            if target == "hub":
                body = b'{"snapshots":[' + to_json(snap) + b"]}"
                body = body.replace(repr(snap.timestamp).encode(), TS_MARK)
                body = body.replace(NODE_MARK.encode(), NODE_BMARK)
            else:
                keys, values = snapshot_series(snap, dict(snap.labels))
                lines = []
                for (metric, labels), v in zip(keys, values):
                    lab = ",".join(f'{k}="{_esc(val)}"' for k, val in labels)
                    lines.append(f"{metric}{{{lab}}} {v!r}\n")
                body = "".join(lines).encode().replace(NODE_MARK.encode(), NODE_BMARK)
            parts.append(_split(body))
        out[profile] = parts
    return out


def build_compact_templates(variants: int) -> dict[str, list[tuple[list[bytes], list[bytes], bytes, str]]]:
    """The agent's compact push (gpufleet/compact.py) of each variant: the frame's JSON head with
    and without its series shape (template parts), the packed values, and the shape id."""
    from gpufleet import compact
    from gpufleet.snapshot import from_json, to_json

    out: dict[str, list[tuple[list[bytes], list[bytes], bytes, str]]] = {}
    for profile, snaps in build_snapshots(variants).items():
        rows = []
        for snap in snaps:
            rest = from_json(to_json(snap))
            shape, values = compact.split(rest)
            sid = compact.shape_id(shape)
            heads = []
            for with_shape in (True, False):
                frame = compact.encode_frame(sid, rest, values, shape if with_shape else None)
                (hlen,) = compact.LENGTH.unpack_from(frame, 0)
                head = frame[4:4 + hlen].replace(repr(snap.timestamp).encode(), TS_MARK)
                heads.append(_split(head.replace(NODE_MARK.encode(), NODE_BMARK)))
            rows.append((heads[0], heads[1], frame[4 + hlen:], sid))
        out[profile] = rows
    return out


def compact_body(row: tuple[list[bytes], list[bytes], bytes, str], node: bytes, ts: bytes, with_shape: bool) -> bytes:
    """One snapshot's compact push body from a template row of build_compact_templates."""
    from gpufleet import compact

    full, bare, values, _ = row
    head = stamp(full if with_shape else bare, node, ts)
    return compact.MAGIC + compact.LENGTH.pack(len(head)) + head + values


def stamp(parts: list[bytes], node: bytes, ts: bytes) -> bytes:
    return b"".join(node if p is NODE_BMARK else ts if p is TS_MARK else p for p in parts)


def emit(event: str, **kw: object) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **kw}) + "\n")
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=("hub", "vm"), required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--creds", help="JSON {node: credential} (target hub)")
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--variants", type=int, default=20)
    ap.add_argument("--gzip-level", type=int, default=1, help="0 sends uncompressed bodies")
    ap.add_argument("--encoding", choices=("json", "compact"), default="json",
                    help="target hub: JSON pushes, or the agent's compact push (shape once, then values)")
    a = ap.parse_args()

    packed = a.target == "hub" and a.encoding == "compact"
    templates: Any = build_compact_templates(a.variants) if packed else build_templates(a.variants, a.target)
    creds = json.load(open(a.creds)) if a.creds else {}
    names = [node_name(i) for i in range(a.nodes)]
    nodes = [(n.encode(), templates[profile_of(i)], creds.get(n, "")) for i, n in enumerate(names)]
    # VM's text: one sample a line (the node and time markers hold no newline)
    variant_lines = {id(v): sum(p.count(b"\n") for p in v) for vs in templates.values() for v in vs} \
        if a.target == "vm" else {}
    u = urlsplit(a.url)
    path = "/api/v1/push" if a.target == "hub" else "/api/v1/import/prometheus"
    ctype = "application/json" if a.target == "hub" else "text/plain"
    if packed:
        from gpufleet import compact

        path, ctype = compact.PATH, compact.CONTENT_TYPE
    shapes_sent: set[tuple[bytes, str]] = set()  # as the agent: a shape described until the hub took it
    jobs: queue.Queue = queue.Queue()
    lock = threading.Lock()
    records: list[tuple[float, float, float, int, int]] = []  # (due, slip, latency, status, lines)
    errors: list[str] = []
    wall_minus_mono = time.time() - time.monotonic()

    def worker() -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        count = 0
        while True:
            job = jobs.get()
            if job is None:
                break
            i, k, due = job
            name, variants, cred = nodes[i]
            ts = repr(round(due + wall_minus_mono, 3)).encode()
            variant = variants[(i + k) % len(variants)]
            headers = {"Content-Type": ctype}
            if cred:
                headers["Authorization"] = f"Bearer {cred}"
            if a.gzip_level:
                headers["Content-Encoding"] = "gzip"

            def encoded(with_shape: bool) -> bytes:
                b = compact_body(variant, name, ts, with_shape) if packed else stamp(variant, name, ts)
                return gzip.compress(b, compresslevel=a.gzip_level, mtime=0) if a.gzip_level else b

            with_shape = packed and (name, variant[3]) not in shapes_sent
            body = encoded(with_shape)
            # Samples sent to VM: the text's lines, counted before gzip (counting newline bytes in
            # the compressed body gave ~1/25 of them: the "VM answers for 7,800 samples/s" of
            # earlier runs, which made vm_cpu_s_per_million ~25x too high).
            lines = variant_lines[id(variant)] if a.target == "vm" else 0
            t0 = time.monotonic()
            status = 0
            for attempt in range(3):
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    status = r.status
                    if packed and status == 409 and not with_shape:  # the hub let the shape go: describe it
                        with_shape, body = True, encoded(True)
                        continue
                    if packed and status < 300:
                        shapes_sent.add((name, variant[3]))
                    if status >= 300:
                        with lock:
                            errors.append(f"{status} {data[:200]!r}")
                    break
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                    if attempt:
                        with lock:
                            errors.append(f"{type(e).__name__}: {e}")
            t1 = time.monotonic()
            count += 1
            with lock:
                records.append((due, t0 - due, t1 - t0, status, lines))
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.connections)]
    first = nodes[0][1][0]
    emit("ready", nodes=a.nodes, payload_bytes=len(compact_body(first, nodes[0][0], b"1800000000.123", False) if packed
                                                   else stamp(first, nodes[0][0], b"1800000000.123")))
    for t in threads:
        t.start()
    start = time.monotonic() + 0.5
    m_start, m_end = start + a.warmup, start + a.warmup + a.seconds
    started = ended = False
    k = 0
    while True:
        base = start + k * a.interval
        if base >= m_end:
            break
        for i in range(a.nodes):
            due = base + a.interval * i / a.nodes
            now = time.monotonic()
            if not started and due >= m_start:
                if m_start > now:
                    time.sleep(m_start - now)
                emit("measure_start")
                started = True
            if not ended and due >= m_end:
                break
            if due > now:
                time.sleep(due - now)
            jobs.put((i, k, due))
        k += 1
    time.sleep(max(0.0, m_end - time.monotonic()))
    emit("measure_end", backlog=jobs.qsize())
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join(60)
    window = [r for r in records if m_start <= r[0] < m_end]
    lat = sorted(r[2] for r in window)
    slip = sorted(r[1] for r in window)

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p / 100)))] if xs else float("nan")

    emit("result", pushes=len(window), ok=sum(1 for r in window if 200 <= r[3] < 300),
         samples_ok=sum(r[4] for r in window if 200 <= r[3] < 300),
         latency_p50=pct(lat, 50), latency_p99=pct(lat, 99), latency_max=lat[-1] if lat else float("nan"),
         done_max=max((r[1] + r[2] for r in window), default=float("nan")),
         slip_p50=pct(slip, 50), slip_p99=pct(slip, 99), slip_max=slip[-1] if slip else float("nan"),
         errors=errors[:5], error_count=len(errors),
         pushes_total=len(records), ok_total=sum(1 for r in records if 200 <= r[3] < 300))
    return 0


if __name__ == "__main__":
    sys.exit(main())
