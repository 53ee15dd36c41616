"""NVLink per link through NVML: state, data counters, error counters, and a utilisation.

The links of a GPU are found once (NVML answers "not supported" or "invalid argument" past the
last one, and for link 0 on a GPU without NVLink). Each collection then reads every link's state
(one call each) and both data counters of all links in one nvmlDeviceGetFieldValues call;
the four error counters per link (four calls each) are read on the backend's slow cadence, as
they rarely move and a GPU with 18 links would otherwise cost 72 calls per collection.
Utilisation is the busier direction's rate since the previous collection over the link speed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ..snapshot import GpuLink
from .nvml_lib import Absent, NvmlLib

MAX_LINKS = 18  # NVLink 4 (H100/H200) has 18; probing stops at the first link NVML refuses
_FI_SPEED_COMMON = 90  # NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON, MB/s of each active link
_FI_TX, _FI_RX = 138, 139  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX / _RX, KiB since the driver loaded
_KIB = 1024.0

# nvmlNvLinkErrorCounter_t -> gpu_link key (the gpu scope's total is "nvlink_" + key).
ERROR_COUNTERS: tuple[tuple[int, str], ...] = (
    (0, "replay_errors_total"),  # NVML_NVLINK_ERROR_DL_REPLAY
    (1, "recovery_errors_total"),  # NVML_NVLINK_ERROR_DL_RECOVERY
    (2, "crc_flit_errors_total"),  # NVML_NVLINK_ERROR_DL_CRC_FLIT
    (3, "crc_data_errors_total"),  # NVML_NVLINK_ERROR_DL_CRC_DATA
)
_SUMMED = ("transmit_bytes_total", "receive_bytes_total") + tuple(key for _, key in ERROR_COUNTERS)

FieldValue = Callable[[Any], "float | None"]


@dataclass(slots=True)
class Links:
    """What one GPU's links are, and what the previous collection read from them."""

    count: int = 0
    speed: float | None = None  # bytes/s per direction
    prev: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # link -> (t, tx, rx)
    errors: dict[int, dict[str, float]] = field(default_factory=dict)  # link -> last error counters
    errors_at: float = float("-inf")


def discover(lib: NvmlLib, handle: Any, field_value: FieldValue) -> Links:
    """Count the GPU's links and read their speed (once, when the GPU is opened)."""
    count = 0
    for link in range(MAX_LINKS):
        try:
            lib.call("nvmlDeviceGetNvLinkState", handle, link)
        except Absent:
            break
        count += 1
    links = Links(count=count)
    if count:
        got = lib.query("nvmlDeviceGetFieldValues", handle, [_FI_SPEED_COMMON])
        mbps = field_value(got[0]) if got else None
        if mbps:
            links.speed = mbps * 1e6
    return links


def read(lib: NvmlLib, handle: Any, links: Links, now: float, errors_due: bool, field_value: FieldValue,
         sticky: Callable[[str], Hashable]) -> tuple[list[GpuLink], dict[str, float]]:
    """Each link's readings and the GPU's totals over its links. DeviceLost propagates."""
    if not links.count:
        return [], {}
    q = lib.query
    ids: list[tuple[int, int]] = []
    for link in range(links.count):
        ids += [(_FI_TX, link), (_FI_RX, link)]
    data = q("nvmlDeviceGetFieldValues", handle, ids, sticky=sticky("nvlink_data"))
    if errors_due:
        links.errors_at = now
        for link in range(links.count):
            counters: dict[str, float] = {}
            for counter, key in ERROR_COUNTERS:
                n = q("nvmlDeviceGetNvLinkErrorCounter", handle, link, counter, sticky=sticky(f"nvlink{link}.{key}"))
                if n is not None:
                    counters[key] = float(n)
            links.errors[link] = counters
    out: list[GpuLink] = []
    for link in range(links.count):
        v: dict[str, float] = {}
        state = q("nvmlDeviceGetNvLinkState", handle, link, sticky=sticky(f"nvlink{link}.state"))
        if state is not None:
            v["up"] = 1.0 if int(state) else 0.0
        if links.speed is not None:
            v["speed_bytes_per_second"] = links.speed
        if data is not None:
            tx, rx = field_value(data[2 * link]), field_value(data[2 * link + 1])
            if tx is not None and rx is not None:
                tx, rx = tx * _KIB, rx * _KIB
                v["transmit_bytes_total"], v["receive_bytes_total"] = tx, rx
                _utilization(links, link, now, tx, rx, v)
        v.update(links.errors.get(link, {}))
        out.append(GpuLink(link=link, values=v))
    return out, totals(out)


def _utilization(links: Links, link: int, now: float, tx: float, rx: float, v: dict[str, float]) -> None:
    before = links.prev.get(link)
    links.prev[link] = (now, tx, rx)
    if before is None or links.speed is None:
        return
    t0, tx0, rx0 = before
    dt = now - t0
    if dt <= 0 or tx < tx0 or rx < rx0:  # no time passed, or the counters restarted
        return
    v["utilization_ratio"] = min(1.0, max(tx - tx0, rx - rx0) / dt / links.speed)


def totals(links: list[GpuLink]) -> dict[str, float]:
    """The gpu scope's nvlink_* readings: sums over the links that report each one."""
    out: dict[str, float] = {}
    ups = [x.values["up"] for x in links if "up" in x.values]
    if ups:
        out["nvlink_links_active"] = float(sum(ups))
    for key in _SUMMED:
        got = [x.values[key] for x in links if key in x.values]
        if got:
            out[f"nvlink_{key}"] = float(sum(got))
    if "nvlink_transmit_bytes_total" in out and "nvlink_receive_bytes_total" in out:
        out["nvlink_bytes_total"] = out["nvlink_transmit_bytes_total"] + out["nvlink_receive_bytes_total"]
    return out
