"""Web UI at 1,000 simulated nodes: first render of the overview in Chromium, frames during live
updates, and bytes per live update (SSE delta) beside re-sending every node's JSON.

    .venv/bin/python benchmarks/bench_ui.py [--nodes 1000] [--interval 5] [--updates 3]

An in-process hub is fed `sim_fleet(N)` collections every interval and served by uvicorn on a
thread; Debian's Chromium (/usr/bin/chromium) loads the pages through Playwright.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from gpufleet.hub.app import create_app
from gpufleet.hub.extensions import load_extensions
from gpufleet.agent.collect import Collection
from gpufleet.backends.sim import SimBackend
from gpufleet.backends.sim_profiles import DEMO_FLEET
from gpufleet.collectors import SIMULATED_NODE, build
from gpufleet.collectors.base import CollectContext
from gpufleet.hub.run import bind
from gpufleet.hub.service import Hub, HubOptions

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Collected in the page from before its first byte: long tasks and the gaps between frames.
PERF_PROBE = """
window.__long = []; window.__gaps = []; window.__events = 0;
new PerformanceObserver(l => l.getEntries().forEach(e => window.__long.push([e.startTime, e.duration])))
  .observe({type: 'longtask', buffered: true});
(function tick(last) { requestAnimationFrame(t => { if (last) window.__gaps.push([t, t - last]); tick(t); }); })(0);
"""


def fleet_of(n: int) -> list[Collection]:
    """n simulated nodes with unique names, 50 to a cluster (as racks would be)."""
    out = []
    for i in range(n):
        base, profile = DEMO_FLEET[i % len(DEMO_FLEET)]
        name = f"{base.rsplit('-', 1)[0]}-{i:04d}"
        ctx = CollectContext(backend=SimBackend(profile, seed=0, node=name), options={"node": name})
        labels = {"cluster": f"rack-{i // 50:02d}", "profile": profile}
        out.append(Collection(name, build(ctx, SIMULATED_NODE), labels=labels, backend="sim"))
    return out


def feed(hub: Hub, fleet: list[Collection], interval: float, stop: threading.Event) -> None:
    next_at = time.monotonic()
    while not stop.is_set():
        for c in fleet:
            hub.ingest([c.run()])
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))


AUTH: dict[str, str] = {}  # a viewer's API key, made when the hub's data directory exists


def bench_key(data: Path) -> str:
    import secrets

    from gpufleet.hub.auth.policy import Role
    from gpufleet.hub.auth.store import AuthStore

    st = AuthStore(data / "hub.db")
    try:
        st.add_user("bench", Role.VIEWER, secrets.token_urlsafe(16))
        return st.create_key("bench")
    finally:
        st.close()


def sse_sizes(url: str, seconds: float) -> tuple[int, list[int], int]:
    """Bytes on the wire of the first (full) fleet event, then of every delta event for `seconds`,
    and how many node updates those deltas carried."""
    full, deltas, node_updates = 0, [], 0
    with httpx.stream("GET", f"{url}/api/v1/events", timeout=seconds + 30, headers=AUTH) as r:
        event, size, until = "", 0, float("inf")
        for line in r.iter_lines():
            size += len(line.encode()) + 1
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "fleet" and full:
                node_updates += len(json.loads(line[6:]).get("d", {}))
            elif line == "":
                if event == "fleet":
                    if not full:
                        full, until = size, time.monotonic() + seconds
                    else:
                        deltas.append(size)
                event, size = "", 0
                if time.monotonic() >= until:
                    break
    return full, deltas, node_updates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--updates", type=int, default=3)
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    hub = Hub(HubOptions(data=tmp))
    AUTH["Authorization"] = f"Bearer {bench_key(tmp)}"
    stop = threading.Event()
    t0 = time.perf_counter()
    fleet = fleet_of(a.nodes)
    for c in fleet:
        hub.fleet.view(c.node).labels = dict(c.labels)
    feeder = threading.Thread(target=feed, args=(hub, fleet, a.interval, stop), daemon=True)
    feeder.start()
    while sum(1 for v in hub.fleet.nodes.values() if v.snapshot) < a.nodes:
        time.sleep(0.1)
    print(f"fleet: {a.nodes} nodes, {sum(len(v.snapshot.gpus) for v in hub.fleet.nodes.values())} GPUs, "
          f"first round ingested in {time.perf_counter() - t0:.1f} s")
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(hub, load_extensions(hub)), log_level="warning", lifespan="on"))
    threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    # ---- bytes per live update -----------------------------------------------------------------
    naive = len(httpx.get(f"{url}/api/v1/snapshots", timeout=30, headers=AUTH).content)
    naive_procs = len(httpx.get(f"{url}/api/v1/snapshots?processes=true", timeout=30, headers=AUTH).content)
    full, deltas, node_updates = sse_sizes(url, a.interval * a.updates)
    # A live update of the whole fleet = every node's delta once (the feeder may need longer than
    # the interval for 1,000 nodes in-process, so count node deltas rather than intervals).
    per_update = sum(deltas) / max(1, node_updates) * a.nodes
    print(f"\nbytes per live update of all {a.nodes} nodes:")
    print(f"  naive: resend GET /api/v1/snapshots                {naive:>12,} B")
    print(f"  naive: resend GET /api/v1/snapshots?processes=true {naive_procs:>12,} B")
    print(f"  SSE full state (sent on connect / resync)          {full:>12,} B")
    print(f"  SSE deltas per update                              {per_update:>12,.0f} B"
          f"  ({naive / per_update:.0f}x smaller; measured: {len(deltas)} events, {node_updates} node deltas,"
          f" {sum(deltas):,} B)")

    # ---- Chromium --------------------------------------------------------------------------------
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        print("\noverview in Chromium (1440x900):")
        for view in ("cards", "heatmap"):
            times = []
            for _ in range(3):
                ctx = browser.new_context(viewport={"width": 1440, "height": 900}, extra_http_headers=AUTH)
                page = ctx.new_page()
                page.add_init_script(PERF_PROBE)
                page.goto(f"{url}/?view={view}")
                page.wait_for_function("() => window.gpufleetPainted", timeout=30000)
                times.append(page.evaluate("window.gpufleetPainted"))
                last = page
                ctx_last = ctx
                if _ < 2:
                    ctx.close()
            print(f"  first render, view={view:<8} navigation start -> cards painted: "
                  f"median {statistics.median(times):7.0f} ms (runs: {', '.join(f'{t:.0f}' for t in times)})")
            # Frames while live updates arrive, after the first render settled.
            start = last.evaluate("performance.now()")
            last.wait_for_timeout(int(a.interval * a.updates * 1000))
            long = last.evaluate(f"window.__long.filter(x => x[0] > {start})")
            gaps = [g for t, g in last.evaluate(f"window.__gaps.filter(x => x[0] > {start})")]
            gaps.sort()
            p99 = gaps[int(len(gaps) * 0.99) - 1] if gaps else 0
            dropped = sum(1 for g in gaps if g > 1000 / 60 * 1.5)
            print(f"  live updates, view={view:<8} {a.updates} updates over {a.interval * a.updates:.0f} s: "
                  f"{len(gaps)} frames, frame gap p99 {p99:.1f} ms, max {max(gaps, default=0):.1f} ms, "
                  f"{dropped} frames > 25 ms; long tasks: {len(long)} (max {max((d for _, d in long), default=0):.0f} ms)")
            ctx_last.close()
        browser.close()
    stop.set()
    server.should_exit = True
    time.sleep(0.5)
    hub.close()


if __name__ == "__main__":
    main()
