"""What AMD SMI says that matches NVML's health and link readings: the PCIe replay counter,
and XGMI links as gpu_link records (the same scope NVLink fills on NVIDIA).

XGMI per link comes from the GPU metrics table (`amdsmi_get_gpu_metrics_info`):
`xgmi_read_data_acc` / `xgmi_write_data_acc` are per-link lists of kilobytes moved since the
driver loaded (unused slots read "N/A" or all ones), `xgmi_link_speed` is Gb/s per lane and
`xgmi_link_width` the lanes. AMD SMI has no XGMI error counters per link, so those keys stay
absent. Its throttle residency counters (`ppt_residency_acc`, `socket_thm_residency_acc`) count
firmware accumulation cycles of an unstated length, so they are not turned into seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..snapshot import GpuLink

Getter = Callable[..., Any]
_KB = 1024.0
_ALL_ONES = (1 << 64) - 1


def _count(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x >= _ALL_ONES or x < 0:
        return None
    return float(x)


class AmdLinks:
    """Per-GPU memory of the previous XGMI reading, for each link's utilisation."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._prev: dict[tuple[int, int], tuple[float, float, float]] = {}

    def read(self, get: Getter, index: int, h: Any, v: dict[str, float]) -> list[GpuLink]:
        replays = _count(get("amdsmi_get_gpu_pci_replay_counter", h))
        if replays is None:
            pcie = get("amdsmi_get_pcie_info", h) or {}
            replays = _count((pcie.get("pcie_metric") or {}).get("pcie_replay_count"))
        if replays is not None:
            v["pcie_replays_total"] = replays
        metrics = get("amdsmi_get_gpu_metrics_info", h) or {}
        reads, writes = metrics.get("xgmi_read_data_acc"), metrics.get("xgmi_write_data_acc")
        if not isinstance(reads, list) or not isinstance(writes, list):
            return []
        speed = None
        gbps, width = _count(metrics.get("xgmi_link_speed")), _count(metrics.get("xgmi_link_width"))
        if gbps and width:
            speed = gbps * width * 1e9 / 8.0
        now = self._clock()
        links: list[GpuLink] = []
        for n, (rx_kb, tx_kb) in enumerate(zip(reads, writes)):
            rx, tx = _count(rx_kb), _count(tx_kb)
            if rx is None or tx is None:
                continue  # an unused slot
            lv = {"up": 1.0, "transmit_bytes_total": tx * _KB, "receive_bytes_total": rx * _KB}
            if speed is not None:
                lv["speed_bytes_per_second"] = speed
                before = self._prev.get((index, n))
                if before is not None and now > before[0] and tx * _KB >= before[1] and rx * _KB >= before[2]:
                    busiest = max(tx * _KB - before[1], rx * _KB - before[2])
                    lv["utilization_ratio"] = min(1.0, busiest / (now - before[0]) / speed)
            self._prev[(index, n)] = (now, tx * _KB, rx * _KB)
            links.append(GpuLink(link=n, values=lv))
        if links:
            v["nvlink_links_active"] = float(len(links))
            v["nvlink_transmit_bytes_total"] = sum(x.values["transmit_bytes_total"] for x in links)
            v["nvlink_receive_bytes_total"] = sum(x.values["receive_bytes_total"] for x in links)
            v["nvlink_bytes_total"] = v["nvlink_transmit_bytes_total"] + v["nvlink_receive_bytes_total"]
        return links
