"""Scraping targets: fixture texts from a tiny local server, a real node_exporter, agent JSON."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import msgspec
import pytest

from gpufleet.exposition import render
from gpufleet.hub.scrape import ScrapeError, ScrapeState, detect_kind, scrape_async, to_snapshot
from gpufleet.hub.targets import Target
from gpufleet.promtext import parse
from gpufleet.snapshot import NodeSnapshot, to_json
from conftest import FIXTURES as ALL_FIXTURES

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
import realparts  # noqa: E402
from sample_snapshot import sample_snapshot  # noqa: E402

FIXTURES = ALL_FIXTURES / "exporters"
MiB = 1024 * 1024

Route = tuple[int, str, bytes]  # status, content type, body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    delay: float
    hits: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hits.append(self.path)
        if self.server.delay:
            time.sleep(self.server.delay)
        status, ctype, body = self.server.routes.get(self.path, (404, "text/plain", b"not found\n"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(routes: dict[str, Route], delay: float = 0.0) -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.delay, srv.hits = routes, delay, []
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def text_route(name: str) -> Route:
    return (200, "text/plain; version=0.0.4; charset=utf-8", (FIXTURES / name).read_bytes())


def target_for(srv: _Server, kind: str = "auto", **labels: str) -> Target:
    port = srv.server_address[1]
    return Target(node=labels.pop("node", "n-test"), address=f"127.0.0.1:{port}", kind=kind,
                  labels={"cluster": "c1", **labels})


def scrape(target: Target, *, state: ScrapeState | None = None, timeout: float | None = None) -> NodeSnapshot:
    """The hub's scrape (it runs on asyncio), driven to completion for a test."""
    async def go() -> NodeSnapshot:
        async with httpx.AsyncClient() as ac:
            return await scrape_async(target, ac, state=state, timeout=timeout)
    return asyncio.run(go())


# ---- dcgm-exporter --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dcgm", "auto"])
def test_dcgm_fixture_maps_exact_values(kind: str) -> None:
    with serve({"/metrics": text_route("dcgm.txt")}) as srv:
        state = ScrapeState()
        snap = scrape(target_for(srv, kind, datacenter="dc1"), state=state)
    assert snap.node == "n-test" and snap.backend == "pull:dcgm"
    assert snap.labels == {"cluster": "c1", "datacenter": "dc1"}
    assert snap.host.hostname == "gpu-node-07"
    assert [g.index for g in snap.gpus] == [0, 1] and snap.values["gpus"] == 2.0
    g0, g1 = snap.gpus
    assert (g0.uuid, g0.model, g0.vendor) == ("GPU-5b2e1a3c-7f41-9a0d-3c61-0e2a9b8f4d17", "NVIDIA H100 80GB HBM3",
                                              "nvidia")
    assert g0.info == {"driver_version": "550.54.15", "pci_bus_id": "00000000:18:00.0"}
    assert g0.values == {
        "sm_clock_hertz": 1980e6, "memory_clock_hertz": 2619e6, "memory_temperature_celsius": 58.0,
        "temperature_celsius": 67.0, "power_watts": 612.348, "energy_joules_total": 98765432.101,
        "utilization_ratio": 0.97, "memory_bandwidth_utilization_ratio": 0.41, "last_xid": 0.0,
        "memory_free_bytes": 79115 * MiB, "memory_used_bytes": 2147483648.0,
        "memory_total_bytes": (2048 + 79115 + 396) * MiB, "power_limit_watts": 700.0,
        "graphics_engine_active_ratio": 0.962341, "tensor_active_ratio": 0.412007,
        "dram_active_ratio": 0.385102, "up": 1.0,
        # the default fields gpufleet also reads (issue 15)
        "pcie_replays_total": 0.0, "encoder_utilization_ratio": 0.0, "decoder_utilization_ratio": 0.0,
        "memory_reserved_bytes": 396 * MiB, "vgpu_licensed": 0.0, "remapped_rows_uncorrectable_total": 0.0,
        "pcie_transmit_bytes_per_second": 184720311.0,
    }
    assert g1.values["last_xid"] == 79.0 and g1.values["memory_used_bytes"] == 1 * MiB
    assert g1.values["memory_total_bytes"] == 81559 * MiB
    assert state.samples == 44 and state.ignored == 0
    if kind == "auto":
        assert state.kind == "dcgm" and state.snapshot_api is False
        assert srv.hits == ["/api/v1/snapshot", "/metrics"]


def test_dcgm_mig_rows_become_instances() -> None:
    with serve({"/metrics": text_route("dcgm-mig.txt")}) as srv:
        snap = scrape(target_for(srv, "dcgm"))
    g0, g1 = snap.gpus
    assert g0.values["mig_instances"] == 2.0 and "mig_instances" not in g1.values
    # Device-wide readings repeated on each MIG row belong to the parent GPU, once.
    assert g0.values["temperature_celsius"] == 44.0 and g0.values["power_watts"] == 183.216
    assert "memory_used_bytes" not in g0.values
    by_gi = {m.gpu_instance: m for m in g0.mig}
    assert sorted(by_gi) == [1, 5]
    assert by_gi[1].profile == "3g.20gb" and by_gi[5].profile == "2g.10gb"
    assert by_gi[1].values == {"memory_used_bytes": 10240.0 * MiB, "memory_total_bytes": (10240 + 9715) * MiB,
                               "graphics_engine_active_ratio": 0.871234}
    assert by_gi[5].values["memory_total_bytes"] == (3 + 9716) * MiB
    assert g1.values["memory_total_bytes"] == 40326 * MiB and g1.values["memory_used_bytes"] == 0.0
    assert g1.info == {}


# ---- all-smi -------------------------------------------------------------------------------------------


def test_allsmi_fixture_maps_exact_values() -> None:
    with serve({"/metrics": text_route("all-smi.txt")}) as srv:
        state = ScrapeState()
        snap = scrape(target_for(srv, "all-smi", platform="nvidia"), state=state)
    assert snap.backend == "pull:all-smi" and snap.labels["platform"] == "nvidia"
    assert snap.host.hostname == "node-0058"
    assert snap.values == {"cpu_utilization_ratio": 0.375, "memory_total_bytes": 2164040089600.0,
                           "memory_used_bytes": 412316860416.0, "memory_available_bytes": 1751723229184.0,
                           "gpus": 2.0}
    g0, g1 = snap.gpus
    assert (g0.index, g0.uuid, g0.model, g0.vendor) == (0, "GPU-9f1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
                                                        "NVIDIA H200", "nvidia")
    assert g0.info == {"driver_version": "570.124.06", "type": "GPU"}
    assert g0.values == {"utilization_ratio": 0.215, "memory_used_bytes": 2147483648.0,
                         "memory_total_bytes": 150754820096.0, "temperature_celsius": 46.0,
                         "power_watts": 126.75, "sm_clock_hertz": 345e6, "up": 1.0}
    assert g1.values["utilization_ratio"] == 1.0 and g1.values["sm_clock_hertz"] == 1980e6
    assert state.ignored == 3  # pcie_gen_current x2, cpu_socket_count


def test_allsmi_v025_labels_map_the_same_devices() -> None:
    # all-smi v0.25 labels devices gpu_uuid / gpu_index and adds energy by scope (its exact page form:
    # HELP and TYPE before every sample, rows grouped per device).
    page = (ALL_FIXTURES / "all-smi-v0.25" / "nvidia.txt").read_bytes()
    with serve({"/metrics": (200, "text/plain; version=0.0.4", page)}) as srv:
        state = ScrapeState()
        snap = scrape(target_for(srv, "all-smi"), state=state)
    g0, g1 = snap.gpus
    assert (g0.index, g0.uuid, g0.model, g0.vendor) == (0, "GPU-9f1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
                                                        "NVIDIA H200", "nvidia")
    assert g0.values["utilization_ratio"] == 0.215 and g0.values["power_limit_watts"] == 700.0
    assert g0.values["energy_joules_total"] == 58213.25 and g1.values["energy_joules_total"] == 301877.5
    assert g1.values["memory_used_bytes"] == 140123456512.0 and g0.values["sm_clock_max_hertz"] == 1980e6
    assert snap.values["cpu_utilization_ratio"] == 0.375 and snap.values["memory_total_bytes"] == 2164040089600.0


# ---- gpufleet agent ----------------------------------------------------------------------------------


def _comparable(s: NodeSnapshot) -> NodeSnapshot:
    """What a pull may legitimately change: node name, labels, backend, time."""
    return msgspec.structs.replace(s, node="", labels={}, backend="", timestamp=0.0)


def test_agent_json_preferred_and_lossless() -> None:
    original = sample_snapshot("gpu-node-12")
    routes = {"/api/v1/snapshot": (200, "application/json", to_json(original)),
              "/metrics": (500, "text/plain", b"must not be needed\n")}
    with serve(routes) as srv:
        state = ScrapeState()
        snap = scrape(target_for(srv, "auto", node="gpu-node-12", rack="r4"), state=state)
        again = scrape(target_for(srv, "auto", node="gpu-node-12", rack="r4"), state=state)
    assert srv.hits == ["/api/v1/snapshot", "/api/v1/snapshot"]
    assert state.kind == "gpufleet" and state.snapshot_api is True
    assert snap.backend == "pull:gpufleet/sim"
    assert snap.labels == {"cluster": "c1", "rack": "r4"}
    assert snap.node == "gpu-node-12" and snap.timestamp == original.timestamp
    assert _comparable(snap) == _comparable(original)
    assert again == snap


def test_agent_text_read_back_through_the_catalogue() -> None:
    # An agent reachable only through /metrics (a proxy that exposes nothing else).
    with serve({"/metrics": text_route("gpufleet.txt")}) as srv:
        state = ScrapeState()
        snap = scrape(target_for(srv, "gpufleet"), state=state)
    assert srv.hits == ["/api/v1/snapshot", "/metrics"] and state.snapshot_api is False
    assert snap.backend == "pull:gpufleet/sim"
    original = sample_snapshot("gpu-node-12")
    assert snap.values == original.values
    assert snap.host.cpu_model == 'Xeon "Gold"' and snap.host.kernel == "6.1.0"
    assert snap.gpus[0].values == original.gpus[0].values
    assert snap.gpus[0].info == original.gpus[0].info
    assert snap.gpus[1].mig[0].values == {"memory_used_bytes": 3 * MiB}
    proc = snap.gpus[0].processes[0]
    assert (proc.pid, proc.memory_bytes, proc.user, proc.owner.pod) == (4242, 1024**3, "alice", "train-0")
    # The --compat dcgm copies are the same readings again: ignored, counted.
    assert state.ignored == sum(1 for n, _, _ in parse((FIXTURES / "gpufleet.txt").read_text())
                                if not n.startswith("gpufleet_"))


def test_agent_text_round_trip_keeps_every_exposed_field() -> None:
    original = sample_snapshot("n1")
    samples = parse(render(original, compat=("dcgm", "all-smi")))
    snap = to_snapshot(Target(node="n1", address="n1:9101"), samples, "auto", now=original.timestamp)
    # What the text form does not carry: collector error strings, and the host's boot time
    # unless the node reports boot_time_seconds (this sample does not).
    expected = _comparable(original)
    for c in expected.collectors:
        c.error = ""
    expected.host = msgspec.structs.replace(expected.host, boot_time=0.0)
    got = _comparable(snap)
    assert got.values == expected.values and got.host == expected.host
    assert got.cpus == expected.cpus and got.disks == expected.disks and got.networks == expected.networks
    assert got.gpus == expected.gpus and got.usage == expected.usage
    assert got.collectors == expected.collectors and got.agent == expected.agent


# ---- node_exporter (real, from Debian) ----------------------------------------------------------------


@pytest.mark.realparts
def test_real_node_exporter_scraped_twice(tmp_path: Path) -> None:
    with realparts.node_exporter(tmp_path) as (_, url):
        address = url.removeprefix("http://")
        target = Target(node="host-a", address=address, kind="auto", labels={"cluster": "c"})
        state = ScrapeState()
        first = scrape(target, state=state)
        time.sleep(0.3)
        second = scrape(target, state=state)
        raw = parse(httpx.get(f"{url}/metrics", timeout=10).content)
    assert state.kind == "node_exporter" and state.snapshot_api is False
    assert second.backend == "pull:node_exporter"
    mem_total = next(v for n, _, v in raw if n == "node_memory_MemTotal_bytes")
    assert second.values["memory_total_bytes"] == mem_total
    assert 0 < second.values["memory_used_bytes"] < mem_total
    cores = {lbl["cpu"] for n, lbl, _ in raw if n == "node_cpu_seconds_total"}
    assert second.values["cpu_cores"] == len(cores) == len(second.cpus)
    # Utilisation needs a delta: none on the first scrape, one per core on the second.
    assert all("utilization_ratio" not in c.values for c in first.cpus)
    assert "cpu_utilization_ratio" not in first.values
    ratios = [c.values.get("utilization_ratio") for c in second.cpus]
    assert ratios and all(r is not None and 0.0 <= r <= 1.0 for r in ratios), ratios
    assert 0.0 <= second.values["cpu_utilization_ratio"] <= 1.0
    assert second.host.boot_time == second.values["boot_time_seconds"] > 1e9
    assert second.host.kernel and second.host.arch and second.host.hostname
    assert {"load1", "load5", "load15", "uptime_seconds"} <= set(second.values)
    root = [d for d in second.disks if d.mountpoint == "/"]
    assert root and root[0].values["size_bytes"] > 0 and "free_bytes" in root[0].values
    ifaces = {lbl["device"] for n, lbl, _ in raw if n == "node_network_receive_bytes_total"}
    assert ifaces and {n.interface for n in second.networks} == ifaces
    assert all("transmit_bytes_total" in n.values for n in second.networks)
    assert state.ignored > 0  # node_exporter offers far more than we map


def test_node_exporter_counter_reset_gives_no_ratio() -> None:
    t = Target(node="n", address="n:9100", kind="node_exporter")
    state = ScrapeState()
    text = ('node_cpu_seconds_total{{cpu="0",mode="idle"}} {idle}\n'
            'node_cpu_seconds_total{{cpu="0",mode="iowait"}} {iowait}\n'
            'node_cpu_seconds_total{{cpu="0",mode="user"}} {user}\n')
    first = to_snapshot(t, parse(text.format(idle=100, iowait=10, user=50)), "node_exporter", state)
    assert "utilization_ratio" not in first.cpus[0].values
    snap = to_snapshot(t, parse(text.format(idle=103, iowait=11, user=51)), "node_exporter", state)
    # busy = user; idle and iowait are not busy: 1 / (3 + 1 + 1)
    assert snap.cpus[0].values["utilization_ratio"] == 0.2 == snap.values["cpu_utilization_ratio"]
    reset = to_snapshot(t, parse(text.format(idle=1, iowait=1, user=1)), "node_exporter", state)
    assert "utilization_ratio" not in reset.cpus[0].values


# ---- failures -----------------------------------------------------------------------------------------


def test_connection_refused_names_target() -> None:
    t = Target(node="gone", address=f"127.0.0.1:{realparts.free_port()}", kind="dcgm")
    with pytest.raises(ScrapeError) as e:
        scrape(t, timeout=5)
    assert t.url in str(e.value) and "gone" in str(e.value) and "connect" in str(e.value).lower()


def test_http_status_and_parse_error() -> None:
    bad = b"# HELP ok fine\nok 1\nbroken{x=\"1\" 2\n"
    with serve({"/metrics": (200, "text/plain", bad), "/down": (500, "text/plain", b"oops")}) as srv:
        with pytest.raises(ScrapeError) as e:
            scrape(target_for(srv, "dcgm"))
        assert "line 3" in str(e.value) and srv.server_address[1] and "/metrics" in str(e.value)
        down = Target(node="d", address=f"127.0.0.1:{srv.server_address[1]}", kind="dcgm", path="/down")
        with pytest.raises(ScrapeError) as e2:
            scrape(down)
        assert "HTTP 500" in str(e2.value)


def test_timeout_is_bounded() -> None:
    with serve({"/metrics": text_route("dcgm.txt")}, delay=3.0) as srv:
        t0 = time.monotonic()
        with pytest.raises(ScrapeError) as e:
            scrape(target_for(srv, "dcgm"), timeout=0.4)
        assert time.monotonic() - t0 < 2.0
    assert "timed out after 0.4s" in str(e.value)


def test_unknown_exporter_is_counted_not_fatal() -> None:
    text = b"# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 5\nprocess_open_fds 7\n"
    with serve({"/metrics": (200, "text/plain", text)}) as srv:
        state = ScrapeState()
        snap = scrape(target_for(srv), state=state)
    assert snap.backend == "pull:unknown" and snap.gpus == [] and state.ignored == 2 and state.kind is None


def test_detect_kind_priority() -> None:
    assert detect_kind([("node_load1", {}, 1.0), ("DCGM_FI_DEV_GPU_UTIL", {}, 1.0)]) == "dcgm"
    assert detect_kind([("all_smi_gpu_utilization", {}, 1.0), ("gpufleet_node_load1", {}, 1.0)]) == "gpufleet"
    assert detect_kind([("go_goroutines", {}, 1.0)]) is None


# ---- asyncio ------------------------------------------------------------------------------------------


def test_auto_detection_matches_the_named_kind() -> None:
    with serve({"/metrics": text_route("dcgm.txt"), "/slow": text_route("all-smi.txt")}) as srv:
        named_snap = scrape(target_for(srv, "dcgm"))

        async def go() -> tuple[NodeSnapshot, ScrapeState]:
            state = ScrapeState()
            async with httpx.AsyncClient() as ac:
                return await scrape_async(target_for(srv, "auto"), ac, state=state), state

        anamed_snap, state = asyncio.run(go())
    assert state.kind == "dcgm" and state.scrapes == 1
    anamed_snap.timestamp = named_snap.timestamp
    assert anamed_snap == named_snap


def test_async_timeout_and_refused() -> None:
    async def go(t: Target, timeout: float) -> None:
        async with httpx.AsyncClient() as ac:
            await scrape_async(t, ac, timeout=timeout)

    with serve({"/metrics": text_route("dcgm.txt")}, delay=3.0) as srv:
        t0 = time.monotonic()
        with pytest.raises(ScrapeError, match="timed out after 0.3s"):
            asyncio.run(go(target_for(srv, "dcgm"), 0.3))
        assert time.monotonic() - t0 < 2.0
    refused = Target(node="r", address=f"127.0.0.1:{realparts.free_port()}", kind="all-smi")
    with pytest.raises(ScrapeError, match="connect"):
        asyncio.run(go(refused, 5))


def test_every_scope_a_snapshot_holds_is_read_back_from_gpufleet_text() -> None:
    """scopes.py names the records; the text mapper must map back every one an agent exposes."""
    from gpufleet.scopes import SCOPES, records

    original = sample_snapshot("n1")
    held = {name for name, s in SCOPES.items() if s.read is not None and any(True for _ in records(original, name))}
    assert {"node", "gpu", "mig", "gpu_process", "user", "collector", "agent", "cpu", "disk", "net"} <= held
    state = ScrapeState()
    to_snapshot(Target(node="n1", address="n1:9101"), parse(render(original)), "gpufleet", state)
    assert state.samples > 0 and state.ignored == 0  # nothing the agent wrote was left unread
