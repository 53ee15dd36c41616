"""Every accelerator a local all-smi reports (`--backend all-smi --all-smi-url URL`).

all-smi (lablup/all-smi) reads NVIDIA, AMD, Jetson, Apple silicon, Intel Gaudi, Google TPU,
Tenstorrent, Rebellions and Furiosa devices; its API mode serves them as Prometheus text. This
backend reads that page each collection and maps every device onto the catalogue through the
catalogue's `allsmi` names (value_ours = value_theirs / scale), so one agent covers devices
gpufleet has no library for. Each device keeps all-smi's `gpu_index`; its vendor comes from the
model name (gpufleet/vendors.py) and its kind (GPU, NPU, TPU) becomes the `type` info label.

Both label sets all-smi has used are read (`gpu_uuid`/`gpu_index` since v0.25, `uuid`/`index`
before). Vendor families (all_smi_gaudi_*, all_smi_tpu_*, ...) fill what the common families
leave out, such as a power limit. A device absent from a page is gone; an unreachable all-smi
is a failed collection (the agent reports it and keeps serving host metrics), never a crash.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from ..catalogue import CATALOGUE
from ..promtext import ParseError, parse
from ..snapshot import Gpu, GpuProcess
from ..vendors import guess_vendor
from .base import BackendUnavailable

DEFAULT_URL = "http://127.0.0.1:9090/metrics"  # all-smi api's default port
MAX_BYTES = 16 * 1024 * 1024
TIMEOUT_S = 5.0

# all-smi family -> (catalogue key, scale), for the accelerator scope, from the catalogue.
_GPU_NAMES: dict[str, tuple[str, float]] = {
    m.allsmi.name: (m.key, m.allsmi.scale) for m in CATALOGUE if m.scope == "gpu" and m.allsmi is not None
}
# Vendor families (labelled npu_index) for readings the common families lack.
_NPU_EXTRAS: dict[str, tuple[str, float]] = {
    "all_smi_gaudi_power_max_watts": ("power_limit_watts", 1.0),
    "all_smi_tpu_power_max_watts": ("power_limit_watts", 1.0),
    "all_smi_tenstorrent_power_limit_tdp_watts": ("power_limit_watts", 1.0),
    "all_smi_tpu_utilization_percent": ("utilization_ratio", 100.0),
    "all_smi_furiosa_utilization_percent": ("utilization_ratio", 100.0),
    "all_smi_gaudi_aip_utilization_percent": ("utilization_ratio", 100.0),
    "all_smi_tenstorrent_asic_temperature_celsius": ("temperature_celsius", 1.0),
}
_INFO_LABELS = ("driver_version", "pci_bus_id", "serial")

Fetch = Callable[[str], bytes]


def fetch_url(url: str) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:  # noqa: S310 (the operator's URL)
        data: bytes = r.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise OSError(f"all-smi page larger than {MAX_BYTES} bytes")
    return data


def _index(labels: dict[str, str], *names: str) -> int | None:
    for n in names:
        text = labels.get(n)
        if text is not None:
            try:
                return int(text)
            except ValueError:
                return None
    return None


def devices(text: str | bytes) -> list[Gpu]:
    """The devices of one all-smi page, by gpu_index (pure: tested on fixtures)."""
    gpus: dict[int, Gpu] = {}
    extras: dict[int, dict[str, float]] = {}
    saw_processes = False  # all-smi lists processes only when started with --processes

    def gpu(index: int, labels: dict[str, str]) -> Gpu:
        g = gpus.get(index)
        if g is None:
            g = gpus[index] = Gpu(index=index, uuid="", model="", vendor="unknown", values={}, info={})
        g.uuid = g.uuid or labels.get("gpu_uuid", labels.get("uuid", ""))
        g.model = g.model or labels.get("gpu", "")
        return g

    for name, labels, v in parse(text):
        if v != v or v in (float("inf"), float("-inf")):
            continue
        if name in _NPU_EXTRAS:
            i = _index(labels, "npu_index")
            if i is not None:
                key, scale = _NPU_EXTRAS[name]
                extras.setdefault(i, {}).setdefault(key, v / scale)
            continue
        if name == "all_smi_process_memory_used_bytes":
            saw_processes = True
            i = _index(labels, "gpu_index", "device_id")
            pid = _index(labels, "pid")
            if i is not None and pid is not None:
                gpu(i, {}).processes.append(GpuProcess(pid=pid, memory_bytes=int(v)))
            continue
        if name == "all_smi_energy_consumed_joules_total" and labels.get("scope") != "gpu":
            continue  # the CPU and chassis totals are not an accelerator's
        i = _index(labels, "gpu_index", "index") if labels.keys() & {"gpu_index", "gpu_uuid", "uuid"} else None
        if i is None:
            continue
        if name == "all_smi_gpu_info":
            g = gpu(i, labels)
            if labels.get("type"):
                g.info["type"] = labels["type"]
            for key in _INFO_LABELS:
                if labels.get(key):
                    g.info[key] = labels[key]
            if "driver_version" not in g.info and labels.get("lib_version"):
                g.info["driver_version"] = labels["lib_version"]
            continue
        mapped = _GPU_NAMES.get(name)
        if mapped is not None:
            key, scale = mapped
            gpu(i, labels).values[key] = v / scale
    for i, vals in extras.items():
        if i in gpus:
            for key, v in vals.items():
                gpus[i].values.setdefault(key, v)
    for g in gpus.values():
        g.vendor = guess_vendor(g.model)
        g.values.setdefault("up", 1.0)
        if saw_processes:
            g.values["processes"] = float(len(g.processes))
    return [gpus[i] for i in sorted(gpus)]


class AllSmiBackend:
    """Reads a local all-smi's /metrics each collection."""

    name = "all-smi"

    def __init__(self, url: str = "", fetch: Fetch = fetch_url) -> None:
        self.url = url or DEFAULT_URL
        self._fetch = fetch

    def open(self) -> None:
        try:
            self._read()
        except (OSError, ParseError, ValueError) as e:
            raise BackendUnavailable(
                f"all-smi at {self.url} did not answer ({e}): start `all-smi api` there, or pass --all-smi-url"
            ) from e

    def _read(self) -> list[Gpu]:
        return devices(self._fetch(self.url))

    def sample(self) -> list[Gpu]:
        return self._read()  # an error here fails this collection only; the agent reports it

    def close(self) -> None:
        pass
