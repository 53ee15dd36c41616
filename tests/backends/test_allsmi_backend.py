"""--backend all-smi: every device kind all-smi v0.25 reports, read from hand-written pages of its
exact form, and an agent process reading a local all-smi over HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from gpufleet.backends import BackendUnavailable, resolve
from gpufleet.backends.allsmi import AllSmiBackend, devices
from conftest import FIXTURES, eventually
from realparts import agent, free_port, serving

PAGES = FIXTURES / "all-smi-v0.25"


@pytest.mark.parametrize("page,vendor,kind,model,values", [
    ("nvidia.txt", "nvidia", "GPU", "NVIDIA H200",
     {"utilization_ratio": 0.215, "power_limit_watts": 700.0, "energy_joules_total": 58213.25,
      "sm_clock_hertz": 345e6, "performance_state": 0.0}),
    ("amd.txt", "amd", "GPU", "AMD Instinct MI300X", {"utilization_ratio": 0.64, "power_watts": 612.0}),
    ("jetson.txt", "nvidia", "GPU", "NVIDIA Jetson AGX Orin", {"utilization_ratio": 0.435, "power_watts": 14.2}),
    ("apple.txt", "apple", "GPU", "Apple M2 Ultra GPU", {"utilization_ratio": 0.31, "sm_clock_hertz": 1398e6}),
    ("gaudi.txt", "intel", "NPU", "Intel Gaudi 3", {"utilization_ratio": 0.88, "power_limit_watts": 900.0}),
    ("tpu.txt", "google", "TPU", "Google TPU v5e",
     {"utilization_ratio": 0.54, "memory_used_bytes": 10737418240.0, "power_limit_watts": 250.0}),
    ("tenstorrent.txt", "tenstorrent", "NPU", "Tenstorrent Wormhole n300",
     {"temperature_celsius": 52.0, "power_limit_watts": 300.0, "memory_total_bytes": 25769803776.0}),
    ("rebellions.txt", "rebellions", "NPU", "Rebellions ATOM", {"utilization_ratio": 0.35, "power_watts": 62.0}),
    ("furiosa.txt", "furiosa", "NPU", "Furiosa RNGD", {"utilization_ratio": 0.71, "sm_clock_hertz": 1e9}),
])
def test_each_device_kind_maps_onto_the_catalogue(page: str, vendor: str, kind: str, model: str,
                                                  values: dict[str, float]) -> None:
    gpus = devices((PAGES / page).read_text())
    g = gpus[0]
    assert (g.index, g.model, g.vendor, g.info["type"]) == (0, model, vendor, kind)
    assert g.uuid and g.values["up"] == 1.0
    for key, want in values.items():
        assert g.values[key] == pytest.approx(want), key
    # what a device does not report stays absent, never 0
    if page == "apple.txt":
        assert "temperature_celsius" not in g.values
    if page == "tpu.txt":
        assert "power_watts" not in g.values and "temperature_celsius" not in g.values


def test_two_devices_and_the_cpu_energy_row() -> None:
    g0, g1 = devices((PAGES / "nvidia.txt").read_text())
    assert (g0.index, g1.index) == (0, 1) and g0.uuid != g1.uuid
    assert g1.values["energy_joules_total"] == 301877.5  # the scope="cpu" row is no accelerator's
    assert g0.info["driver_version"] == "570.124.06"
    assert "processes" not in g0.values  # all-smi without --processes says nothing about them


def test_labels_before_v025_are_read_too() -> None:
    gpus = devices((FIXTURES / "exporters" / "all-smi.txt").read_text())
    assert [(g.index, g.model, g.vendor) for g in gpus] == [(0, "NVIDIA H200", "nvidia"), (1, "NVIDIA H200", "nvidia")]
    assert gpus[1].values["power_watts"] == 689.123


def test_processes_when_all_smi_lists_them() -> None:
    page = (PAGES / "nvidia.txt").read_text() + (
        "# HELP all_smi_process_memory_used_bytes Process GPU memory used in bytes\n"
        "# TYPE all_smi_process_memory_used_bytes gauge\n"
        'all_smi_process_memory_used_bytes{pid="4242", name="python", user="alice", device_id="1", gpu_index="1", '
        'device_uuid="GPU-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d", command="python train.py"} 1073741824\n')
    g0, g1 = devices(page)
    assert [(p.pid, p.memory_bytes) for p in g1.processes] == [(4242, 1073741824)]
    assert g1.values["processes"] == 1.0 and g0.values["processes"] == 0.0


def test_unreachable_all_smi_is_unavailable_with_a_clear_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    with pytest.raises(BackendUnavailable, match=r"all-smi at http://127\.0\.0\.1:\d+/metrics did not answer"):
        resolve("all-smi", all_smi_url=url)
    b = AllSmiBackend(url, fetch=lambda _: b"not a metrics page {{{\n")
    with pytest.raises(BackendUnavailable, match="--all-smi-url"):
        b.open()


class _Page(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def all_smi_page(page: Path) -> Iterator[str]:
    handler = type("Handler", (_Page,), {"body": page.read_bytes()})
    with serving(handler) as url:
        yield f"{url}/metrics"


@pytest.mark.realparts
def test_agent_reads_a_local_all_smi(tmp_path: Path) -> None:
    with all_smi_page(PAGES / "gaudi.txt") as url, \
            agent(tmp_path, "--backend", "all-smi", "--all-smi-url", url, "--interval", "0.5",
                  "--node", "gaudi-01") as (_, agent_url):
        def served() -> str | None:
            t = httpx.get(f"{agent_url}/metrics").text
            return t if "gpufleet_gpu_power_watts{" in t else None

        text = eventually(served, timeout=20, what="the agent to serve the all-smi devices")
        assert 'gpufleet_gpu_power_watts{node="gaudi-01",gpu="0",uuid="01P4-HL3090A0-18-U4V193-22-07-00",' \
               'model="Intel Gaudi 3",vendor="intel"} 612' in text
        assert 'type="NPU"' in text and 'backend="all-smi"' in text
        assert "gpufleet_gpu_power_limit_watts{" in text and "gpufleet_collector_success" in text
