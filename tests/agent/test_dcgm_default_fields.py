"""A real Prometheus scraping an agent with `--compat dcgm`: every field dcgm-exporter exports
by default is answered, under its name, with dcgm-exporter's type and labels
(facts: shared/reference/dcgm-exporter-default-fields.md, etc/default-counters.csv at d5e5f51)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import eventually
from realparts import agent, prom_query, prometheus, scrape_config, static_job

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes

# dcgm-exporter's default fields and the type it gives each (DCGM_FI_DRIVER_VERSION is a label).
DEFAULT_FIELDS: dict[str, str] = {
    "DCGM_FI_DEV_SM_CLOCK": "gauge", "DCGM_FI_DEV_MEM_CLOCK": "gauge", "DCGM_FI_DEV_MEMORY_TEMP": "gauge",
    "DCGM_FI_DEV_GPU_TEMP": "gauge", "DCGM_FI_DEV_POWER_USAGE": "gauge",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "counter",
    "DCGM_FI_DEV_GPU_UTIL": "gauge", "DCGM_FI_DEV_MEM_COPY_UTIL": "gauge", "DCGM_FI_DEV_ENC_UTIL": "gauge",
    "DCGM_FI_DEV_DEC_UTIL": "gauge", "DCGM_FI_DEV_XID_ERRORS": "gauge", "DCGM_FI_DEV_FB_FREE": "gauge",
    "DCGM_FI_DEV_FB_USED": "gauge", "DCGM_FI_DEV_FB_RESERVED": "gauge",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": "counter", "DCGM_FI_DEV_VGPU_LICENSE_STATUS": "gauge",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "counter", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "gauge", "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gauge",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "gauge", "DCGM_FI_PROF_DRAM_ACTIVE": "gauge",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "gauge", "DCGM_FI_PROF_PCIE_RX_BYTES": "gauge",
}
# Off by default there; users turn them on for health and profiling.
OPTIONAL_FIELDS: dict[str, str] = {
    **{f"DCGM_FI_DEV_{r}_VIOLATION": "counter" for r in ("POWER", "THERMAL", "SYNC_BOOST", "BOARD_LIMIT",
                                                        "LOW_UTIL", "RELIABILITY")},
    **{f"DCGM_FI_DEV_ECC_{e}_TOTAL": "counter" for e in ("SBE_VOL", "DBE_VOL", "SBE_AGG", "DBE_AGG")},
    **{f"DCGM_FI_DEV_NVLINK_{e}_COUNT_TOTAL": "counter" for e in ("CRC_FLIT_ERROR", "CRC_DATA_ERROR",
                                                                 "REPLAY_ERROR", "RECOVERY_ERROR")},
    "DCGM_FI_PROF_SM_ACTIVE": "gauge", "DCGM_FI_PROF_SM_OCCUPANCY": "gauge",
    **{f"DCGM_FI_PROF_PIPE_{p}_ACTIVE": "gauge" for p in ("FP64", "FP32", "FP16")},
}
# A bare-metal GPU has no vGPU license to report (NVML: licensing not supported), so the H100s
# leave it absent, as the NVML backend does; a second agent simulates a VM with licensed vGPUs.
VGPU_ONLY = {"DCGM_FI_DEV_VGPU_LICENSE_STATUS"}
LABELS = {"gpu", "UUID", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION", "pci_bus_id"}


def test_prometheus_gets_every_default_dcgm_field_with_its_type_and_labels(tmp_path: Path) -> None:
    with agent(tmp_path, "--simulate", "8xH100", "--interval", "300", "--node", "dcgm-node",
               "--compat", "dcgm") as (_, url), \
            agent(tmp_path, "--simulate", "2xA100-vgpu", "--interval", "300", "--node", "vgpu-vm",
                  "--compat", "dcgm", name="vgpu-agent") as (_, vgpu_url):
        with prometheus(tmp_path, scrape_config(static_job("gpufleet", url, vgpu_url))) as (_, prom):
            want = {**DEFAULT_FIELDS, **OPTIONAL_FIELDS}

            def metadata() -> dict[str, list[dict[str, str]]]:
                data: dict[str, list[dict[str, str]]] = httpx.get(f"{prom}/api/v1/metadata").json()["data"]
                return data

            eventually(lambda: set(want) <= set(metadata()), timeout=30,
                       what="Prometheus to have scraped every dcgm-exporter field")
            meta = metadata()
            # every DCGM series of each node in one query, grouped by name here
            by_node: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for node in ("dcgm-node", "vgpu-vm"):
                rows = by_node[node] = {}
                for r in prom_query(prom, f'{{__name__=~"DCGM_FI_.+", Hostname="{node}"}}'):
                    rows.setdefault(r["metric"]["__name__"], []).append(r)
            for name in sorted(want):
                assert meta[name][0]["type"] == want[name], name
                h100, vm = by_node["dcgm-node"].get(name, []), by_node["vgpu-vm"].get(name, [])
                assert len(vm if name in VGPU_ONLY else h100) == (2 if name in VGPU_ONLY else 8), name
                if name in VGPU_ONLY:
                    assert not h100 and {r["value"][1] for r in vm} == {"1"}
                labels = set((h100 or vm)[0]["metric"]) - {"__name__", "instance", "job"}
                assert labels == LABELS, (name, labels)
            driver = {r["metric"]["DCGM_FI_DRIVER_VERSION"]
                      for r in prom_query(prom, 'DCGM_FI_DEV_GPU_TEMP{Hostname="dcgm-node"}')}
            assert driver == {"550.90.07"}
