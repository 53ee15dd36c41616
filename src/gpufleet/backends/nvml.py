"""NVIDIA GPUs through NVML: NVML readings mapped to catalogue keys in base units.

All NVML access goes through `NvmlLib` (nvml_lib.py); this module only decides what to
read, how often, and how to convert it. Static facts (identity, PCI address, max clocks)
are read once in `open()`; slow-changing ones (power limit, compute and MIG mode) on a
short TTL; the rest every `sample()`.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ..snapshot import Gpu, GpuProcess, MigInstance
from . import nvml_health, nvml_links
from .base import BackendUnavailable
from .nvml_lib import Absent, DeviceLost, NvmlLib

log = logging.getLogger("gpufleet.backends.nvml")

VENDOR = "nvidia"

# NVML constants: part of NVML's stable C ABI (nvml.h), spelled here so a pynvml that lacks
# a newer name still works.
_TEMPERATURE_GPU = 0
_CLOCK_SM, _CLOCK_MEM = 1, 2
_PCIE_TX, _PCIE_RX = 0, 1
_MIG_ENABLED = 1
_PSTATE_UNKNOWN = 32
_EVENT_XID_CRITICAL = 0x8
_NOT_AVAILABLE_U32 = 0xFFFFFFFF
_NOT_AVAILABLE_U64 = 0xFFFFFFFFFFFFFFFF
_MAX_EVENTS_PER_SAMPLE = 256  # bounds the drain loop if the driver floods us

# nvidia-smi's spelling, which the simulator uses too.
_COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}

# nvmlClocksEventReason* bits, in NVML's encoding (the bitmask itself is exported as is).
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

# Read together in one nvmlDeviceGetFieldValues call: (field id, catalogue key, scale).
_FIELDS: tuple[tuple[int, str, float], ...] = (
    (82, "memory_temperature_celsius", 1.0),  # NVML_FI_DEV_MEMORY_TEMP
    (83, "energy_joules_total", 1e-3),  # NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, mJ
    (3, "ecc_corrected_errors_total", 1.0),  # NVML_FI_DEV_ECC_SBE_VOL_TOTAL
    (4, "ecc_uncorrected_errors_total", 1.0),  # NVML_FI_DEV_ECC_DBE_VOL_TOTAL
) + nvml_health.FIELDS
_FIELD_IDS = [f[0] for f in _FIELDS]
# nvmlValue_t union member per nvmlValueType_t.
_VALUE_MEMBER = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}

# GPM metric ids (NVML_GPM_METRIC_*), reported in percent.
_GPM_METRICS: tuple[tuple[int, str], ...] = (
    (1, "graphics_engine_active_ratio"),  # GRAPHICS_UTIL
    (2, "sm_active_ratio"),  # SM_UTIL
    (3, "sm_occupancy_ratio"),  # SM_OCCUPANCY
    (5, "tensor_active_ratio"),  # ANY_TENSOR_UTIL
    (10, "dram_active_ratio"),  # DRAM_BW_UTIL
    (11, "fp64_active_ratio"),  # FP64_UTIL
    (12, "fp32_active_ratio"),  # FP32_UTIL
    (13, "fp16_active_ratio"),  # FP16_UTIL
    (20, "pcie_transmit_bytes_per_second"),  # PCIE_TX_PER_SEC, MiB/s
    (21, "pcie_receive_bytes_per_second"),  # PCIE_RX_PER_SEC, MiB/s
)
# GPM metrics reported as a rate in MiB/s rather than a percentage.
_GPM_MIB_PER_S = frozenset({20, 21})
_GPM_MIG_METRICS: tuple[tuple[int, str], ...] = ((1, "graphics_engine_active_ratio"),)

_COMPUTE_PROCS = (
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2",
    "nvmlDeviceGetComputeRunningProcesses",
)
_GRAPHICS_PROCS = (
    "nvmlDeviceGetGraphicsRunningProcesses_v3",
    "nvmlDeviceGetGraphicsRunningProcesses_v2",
    "nvmlDeviceGetGraphicsRunningProcesses",
)
_THROTTLE = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")
_TEMPERATURE = ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature")
_PCI_INFO = ("nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo")
_EVENT_WAIT = ("nvmlEventSetWait_v2", "nvmlEventSetWait")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).rstrip("\x00").strip()


def handle_key(handle: Any) -> Hashable:
    """A stable key for a device handle: its address for real ctypes handles."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except Exception:  # not a ctypes pointer (a fake in tests)
        return handle if isinstance(handle, Hashable) else id(handle)


def field_value(fv: Any) -> float | None:
    """One nvmlFieldValue_t as a float, or None when NVML reported an error for it."""
    if fv.nvmlReturn != 0:
        return None
    member = _VALUE_MEMBER.get(int(fv.valueType))
    return None if member is None else float(getattr(fv.value, member))


def throttle_names(mask: int) -> list[str]:
    names = [name for bit, name in THROTTLE_REASONS if mask & bit]
    known = 0
    for bit, _ in THROTTLE_REASONS:
        known |= bit
    names += [f"bit_{b}" for b in range(64) if mask & ~known & (1 << b)]
    return names


def mig_profile(name: str) -> str:
    """'NVIDIA H100 80GB HBM3 MIG 1g.10gb' -> '1g.10gb' (NVML names MIG devices so)."""
    _, sep, tail = name.rpartition("MIG ")
    return tail.strip() if sep else name


def gpm_request(nvml: Any, older: Any, newer: Any, metric_ids: list[int]) -> Any:
    """An nvmlGpmMetricsGet_t asking for `metric_ids` over the interval older -> newer."""
    req = nvml.c_nvmlGpmMetricsGet_t()
    req.version = getattr(nvml, "NVML_GPM_METRICS_GET_VERSION", 1)
    req.numMetrics = len(metric_ids)
    req.sample1, req.sample2 = older, newer
    for k, metric_id in enumerate(metric_ids):
        req.metrics[k].metricId = metric_id
    return req


def _ratio(percent: float) -> float:
    return min(max(percent / 100.0, 0.0), 1.0)


@dataclass(slots=True)
class _GpmPair:
    """Two GPM sample buffers: metrics are the difference between consecutive samples."""

    prev: Any
    cur: Any
    primed: bool = False


@dataclass(slots=True)
class _Device:
    index: int
    handle: Any = None
    uuid: str = ""
    model: str = ""
    info: dict[str, str] = field(default_factory=dict)
    static: dict[str, float] = field(default_factory=dict)  # max clocks
    slow: dict[str, float] = field(default_factory=dict)  # power limit
    slow_at: float = -math.inf
    up: bool = True
    mig_enabled: bool = False
    mig_slots: int = 0
    mig_ident: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # uuid -> gi, ci, profile
    gpm: _GpmPair | None = None
    gpm_mig: dict[int, _GpmPair] = field(default_factory=dict)
    gpm_pcie: bool = False  # GPM measures PCIe traffic: the blocking throughput calls are skipped
    links: nvml_links.Links = field(default_factory=nvml_links.Links)
    xid: bool = False
    xid_total: int = 0
    last_xid: int = 0
    events: list[str] = field(default_factory=list)


class NvmlBackend:
    """NVIDIA GPUs via NVML. `nvml` injects a pynvml-shaped module (tests use a fake)."""

    name = "nvml"

    def __init__(
        self,
        nvml: Any | None = None,
        *,
        slow_refresh_s: float = 10.0,
        read_pcie: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lib = NvmlLib(nvml)
        # nvmlDeviceGetPcieThroughput measures over a 20 ms window per call (two per GPU):
        # the one costly reading, so it can be turned off.
        self._read_pcie = read_pcie
        self._slow_refresh_s = slow_refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._opened = False
        self._devices: list[_Device] = []
        self._by_handle: dict[Hashable, _Device] = {}
        self._by_uuid: dict[str, _Device] = {}
        self._event_set: Any = None
        self._driver_version = ""

    # ---- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            self._open_locked()

    def _open_locked(self) -> None:
        if self._opened:
            return
        self._lib.init()
        try:
            try:
                count = int(self._lib.call("nvmlDeviceGetCount"))
            except (Absent, DeviceLost) as exc:
                raise BackendUnavailable(f"NVML could not list the GPUs: {exc}") from exc
            if count <= 0:
                raise BackendUnavailable("NVML is running but sees no NVIDIA GPU on this node")
            self._driver_version = _text(self._lib.query("nvmlSystemGetDriverVersion"))
            # One event set for all devices, polled without blocking each sample.
            self._event_set = self._lib.query("nvmlEventSetCreate")
            self._devices = [_Device(i) for i in range(count)]
            for dev in self._devices:
                self._attach(dev)
        except BaseException:
            self._release()
            raise
        self._opened = True

    def close(self) -> None:
        with self._lock:
            self._release()

    def _release(self) -> None:
        """Free what NVML gave us, then shut it down; tolerant of every failure."""
        if self._lib.started:
            for dev in self._devices:
                for pair in [dev.gpm, *dev.gpm_mig.values()]:
                    if pair is not None:
                        self._free_pair(pair)
            if self._event_set is not None:
                self._quietly("nvmlEventSetFree", self._event_set)
        self._event_set = None
        self._devices, self._by_handle, self._by_uuid = [], {}, {}
        self._opened = False
        self._lib.shutdown()

    def _quietly(self, name: str, *args: Any) -> None:
        try:
            self._lib.call(name, *args)
        except Exception as exc:
            log.debug("%s failed while closing: %s", name, exc)

    def _free_pair(self, pair: _GpmPair) -> None:
        self._quietly("nvmlGpmSampleFree", pair.prev)
        self._quietly("nvmlGpmSampleFree", pair.cur)

    def _new_pair(self) -> _GpmPair | None:
        first = self._lib.query("nvmlGpmSampleAlloc")
        second = self._lib.query("nvmlGpmSampleAlloc") if first is not None else None
        if second is None:
            if first is not None:
                self._quietly("nvmlGpmSampleFree", first)
            return None
        return _GpmPair(first, second)

    def _attach(self, dev: _Device) -> None:
        """Get the handle and read what does not change; a failure leaves the device down."""
        q = self._lib.query
        try:
            handle = self._lib.call("nvmlDeviceGetHandleByIndex", dev.index)
            dev.uuid = _text(q("nvmlDeviceGetUUID", handle)) or dev.uuid
            dev.model = _text(q("nvmlDeviceGetName", handle)) or dev.model
            info = {"driver_version": self._driver_version, "type": "GPU"}
            pci = q(_PCI_INFO, handle)
            info["pci_bus_id"] = _text(getattr(pci, "busId", None)) if pci is not None else ""
            info["serial"] = _text(q("nvmlDeviceGetSerial", handle))
            info["vbios_version"] = _text(q("nvmlDeviceGetVbiosVersion", handle))
            dev.info.update({k: v for k, v in info.items() if v})
            for key, clock in (("sm_clock_max_hertz", _CLOCK_SM), ("memory_clock_max_hertz", _CLOCK_MEM)):
                mhz = q("nvmlDeviceGetMaxClockInfo", handle, clock)
                if mhz:
                    dev.static[key] = mhz * 1e6
            dev.mig_slots = int(q("nvmlDeviceGetMaxMigDeviceCount", handle) or 0)
            dev.links = nvml_links.discover(self._lib, handle, field_value)
            support = q("nvmlGpmQueryDeviceSupport", handle)
            if support is not None and getattr(support, "isSupportedDevice", False) and dev.gpm is None:
                dev.gpm = self._new_pair()
            if self._event_set is not None and not dev.xid:
                try:
                    self._lib.call("nvmlDeviceRegisterEvents", handle, _EVENT_XID_CRITICAL, self._event_set)
                    dev.xid = True
                except Absent as exc:
                    log.info("GPU %d: XID events not available (%s)", dev.index, exc)
        except (Absent, DeviceLost) as exc:
            if dev.up:  # once, not every collection while it stays broken
                log.warning("GPU %d cannot be opened (%s): reported down", dev.index, exc)
            dev.handle, dev.up = None, False
            return
        dev.handle = handle
        self._by_handle[handle_key(handle)] = dev
        if dev.uuid:
            self._by_uuid[dev.uuid] = dev

    # ---- sampling ------------------------------------------------------------------------
    def sample(self) -> list[Gpu]:
        with self._lock:
            self._open_locked()
            self._drain_events()
            return [self._sample_device(dev) for dev in self._devices]

    def _sample_device(self, dev: _Device) -> Gpu:
        try:
            if dev.handle is None:
                self._attach(dev)  # not opened yet (failed at open, or lost before)
                if dev.handle is None:
                    return self._down(dev)
            gpu = self._read(dev)
        except DeviceLost as exc:
            if dev.up:
                log.warning("GPU %d (%s) stopped answering: %s", dev.index, dev.uuid, exc)
            return self._down(dev)
        except Exception:
            if dev.up:
                log.exception("GPU %d (%s): unexpected failure reading NVML", dev.index, dev.uuid)
            return self._down(dev)
        if not dev.up:
            log.warning("GPU %d (%s) answers again", dev.index, dev.uuid)
        dev.up = True
        return gpu

    def _down(self, dev: _Device) -> Gpu:
        dev.up = False
        for pair in [dev.gpm, *dev.gpm_mig.values()]:
            if pair is not None:
                pair.primed = False  # never difference across an outage
        events, dev.events = dev.events, []
        return Gpu(index=dev.index, uuid=dev.uuid, model=dev.model, vendor=VENDOR, up=False,
                   info=dict(dev.info), values={"up": 0.0}, events=events)

    def _refresh_slow(self, dev: _Device, sticky: Callable[[str], Hashable]) -> None:
        """Power limit, compute and MIG mode (admins change them, but rarely) and PCIe throughput."""
        now = self._clock()
        if now - dev.slow_at < self._slow_refresh_s:
            return
        q, h = self._lib.query, dev.handle
        dev.slow_at = now
        limit_mw = q("nvmlDeviceGetEnforcedPowerLimit", h, sticky=sticky("power_limit"))
        dev.slow = {} if limit_mw is None else {"power_limit_watts": limit_mw / 1000.0}
        nvml_health.read_slow(self._lib, h, dev.slow, sticky)
        # Each PCIe throughput call blocks ~20 ms while the driver measures, so it is read
        # on this slow cadence: 40 ms per GPU on every collection would dominate it. Where GPM
        # measures PCIe (Hopper and newer) it is not called at all.
        pcie = self._read_pcie and not dev.gpm_pcie
        for key, counter in (("pcie_transmit_bytes_per_second", _PCIE_TX),
                             ("pcie_receive_bytes_per_second", _PCIE_RX)) if pcie else ():
            kbps = q("nvmlDeviceGetPcieThroughput", h, counter, sticky=sticky(key))
            if kbps is not None:
                dev.slow[key] = kbps * 1000.0  # NVML counts KB/s; 1 KB = 1000 bytes, as DCGM's scale assumes
        mode = q("nvmlDeviceGetComputeMode", h, sticky=sticky("compute_mode"))
        if mode is not None:
            dev.info["compute_mode"] = _COMPUTE_MODES.get(int(mode), str(mode))
        mig = q("nvmlDeviceGetMigMode", h, sticky=sticky("mig_mode"))
        if mig is not None:
            dev.mig_enabled = int(mig[0]) == _MIG_ENABLED
            dev.info["mig_mode"] = "Enabled" if dev.mig_enabled else "Disabled"
            if dev.mig_enabled and not dev.mig_slots:
                dev.mig_slots = int(q("nvmlDeviceGetMaxMigDeviceCount", h) or 0)

    def _read(self, dev: _Device) -> Gpu:
        q, h, i = self._lib.query, dev.handle, dev.index

        def sticky(reading: str) -> Hashable:
            # Support depends on the MIG mode (utilization is unsupported in MIG mode), so
            # a remembered "not supported" holds only for the mode it was seen in.
            return (i, dev.mig_enabled, reading)

        self._refresh_slow(dev, sticky)
        v: dict[str, float] = {"up": 1.0}
        util = q("nvmlDeviceGetUtilizationRates", h, sticky=sticky("util"))
        if util is not None:
            v["utilization_ratio"] = _ratio(util.gpu)
            v["memory_bandwidth_utilization_ratio"] = _ratio(util.memory)
        mem = self._lib.memory_info(h, sticky=sticky("memory"))
        if mem is not None:
            v["memory_used_bytes"] = float(mem.used)
            v["memory_free_bytes"] = float(mem.free)
            v["memory_total_bytes"] = float(mem.total)
            reserved = getattr(mem, "reserved", None)  # v2 only
            if reserved is not None:
                v["memory_reserved_bytes"] = float(reserved)
        temp = q(_TEMPERATURE, h, _TEMPERATURE_GPU, sticky=sticky("temp"))
        if temp is not None:
            v["temperature_celsius"] = float(temp)
        self._read_fields(dev, v, sticky)
        nvml_health.read(self._lib, h, v, sticky)
        now = self._clock()
        links, link_totals = nvml_links.read(self._lib, h, dev.links, now,
                                             now - dev.links.errors_at >= self._slow_refresh_s, field_value, sticky)
        v.update(link_totals)
        fan = q("nvmlDeviceGetFanSpeed", h, sticky=sticky("fan"))
        if fan is not None:
            v["fan_speed_ratio"] = fan / 100.0  # may exceed 1 briefly: NVML reports >100% too
        power_mw = q("nvmlDeviceGetPowerUsage", h, sticky=sticky("power"))
        if power_mw is not None:
            v["power_watts"] = power_mw / 1000.0
        v.update(dev.slow)
        for key, clock in (("sm_clock_hertz", _CLOCK_SM), ("memory_clock_hertz", _CLOCK_MEM)):
            mhz = q("nvmlDeviceGetClockInfo", h, clock, sticky=sticky(key))
            if mhz is not None:
                v[key] = mhz * 1e6
        v.update(dev.static)
        pstate = q("nvmlDeviceGetPerformanceState", h, sticky=sticky("pstate"))
        if pstate is not None and int(pstate) != _PSTATE_UNKNOWN:
            v["performance_state"] = float(pstate)
        reasons = q(_THROTTLE, h, sticky=sticky("throttle"))
        names: list[str] = []
        if reasons is not None:
            v["clock_throttle_reasons"] = float(reasons)
            names = throttle_names(int(reasons))
        if dev.xid:
            v["xid_errors_total"] = float(dev.xid_total)
            v["last_xid"] = float(dev.last_xid)
        migs = self._read_mig(dev) if dev.mig_enabled else []
        v["mig_instances"] = float(len({m.gpu_instance for m, _ in migs}))
        procs = self._read_processes(dev, migs, sticky)
        if procs is not None:
            v["processes"] = float(len(procs))
        self._read_gpm(dev, v, migs)
        events, dev.events = dev.events, []
        return Gpu(index=i, uuid=dev.uuid, model=dev.model, vendor=VENDOR, up=True, info=dict(dev.info),
                   values=v, throttle_reasons=names, processes=procs or [],
                   mig=[m for m, _ in migs], links=links, events=events)

    def _read_fields(self, dev: _Device, v: dict[str, float], sticky: Callable[[str], Hashable]) -> None:
        """Memory temperature, energy and ECC totals in one nvmlDeviceGetFieldValues call."""
        q, h = self._lib.query, dev.handle
        values = q("nvmlDeviceGetFieldValues", h, _FIELD_IDS, sticky=sticky("fields"))
        if values is not None:
            for fv, (_, key, scale) in zip(values, _FIELDS):
                x = field_value(fv)
                if x is not None:
                    v[key] = x * scale
            return
        # Drivers without field values: the same readings one call each (no memory temp).
        energy_mj = q("nvmlDeviceGetTotalEnergyConsumption", h, sticky=sticky("energy"))
        if energy_mj is not None:
            v["energy_joules_total"] = energy_mj / 1000.0
        for key, error_type in (("ecc_corrected_errors_total", 0), ("ecc_uncorrected_errors_total", 1)):
            count = q("nvmlDeviceGetTotalEccErrors", h, error_type, 0, sticky=sticky(key))  # 0 = volatile
            if count is not None:
                v[key] = float(count)
        nvml_health.read_without_fields(self._lib, h, v, sticky)

    def _read_mig(self, dev: _Device) -> list[tuple[MigInstance, Any]]:
        """MIG devices present now; identity cached by UUID (instances come and go)."""
        q, out = self._lib.query, []
        for slot in range(dev.mig_slots):
            mh = q("nvmlDeviceGetMigDeviceHandleByIndex", dev.handle, slot)
            if mh is None:
                continue  # empty slot (NVML_ERROR_NOT_FOUND)
            uuid = _text(q("nvmlDeviceGetUUID", mh))
            ident = dev.mig_ident.get(uuid)
            if ident is None:
                gi = q("nvmlDeviceGetGpuInstanceId", mh)
                if gi is None:
                    continue
                ci = q("nvmlDeviceGetComputeInstanceId", mh)
                ident = (int(gi), int(ci or 0), mig_profile(_text(q("nvmlDeviceGetName", mh))))
                if uuid:
                    dev.mig_ident[uuid] = ident
            values: dict[str, float] = {}
            mem = self._lib.memory_info(mh)
            if mem is not None:
                values["memory_used_bytes"] = float(mem.used)
                values["memory_total_bytes"] = float(mem.total)
            out.append((MigInstance(gpu_instance=ident[0], compute_instance=ident[1], profile=ident[2],
                                    uuid=uuid, values=values), mh))
        return out

    def _read_processes(self, dev: _Device, migs: list[tuple[MigInstance, Any]],
                        sticky: Callable[[str], Hashable]) -> list[GpuProcess] | None:
        found: dict[int, GpuProcess] = {}
        try:
            compute = self._lib.call(_COMPUTE_PROCS, dev.handle, sticky=sticky("procs"))
            for p in compute or []:
                self._add_process(found, p, "compute", dev.mig_enabled, None)
        except Absent as exc:
            if not (exc.no_permission and migs):
                return None
            # In MIG mode the whole-GPU list needs privileges; each MIG device's does not.
            for mig, mh in migs:
                for p in self._lib.query(_COMPUTE_PROCS, mh) or []:
                    self._add_process(found, p, "compute", True, mig.gpu_instance)
        for p in self._lib.query(_GRAPHICS_PROCS, dev.handle, sticky=sticky("gprocs")) or []:
            self._add_process(found, p, "graphics", dev.mig_enabled, None)
        return list(found.values())

    @staticmethod
    def _add_process(found: dict[int, GpuProcess], p: Any, kind: str, mig: bool, gi: int | None) -> None:
        pid = int(p.pid)
        if pid in found:
            return  # a compute+graphics process is listed twice; keep its compute entry
        mem = getattr(p, "usedGpuMemory", None)
        if mem is not None and int(mem) >= _NOT_AVAILABLE_U64:
            mem = None  # pynvml converts this already; a raw struct would not
        if gi is None and mig:
            raw = getattr(p, "gpuInstanceId", None)
            gi = None if raw is None or int(raw) == _NOT_AVAILABLE_U32 else int(raw)
        found[pid] = GpuProcess(pid=pid, memory_bytes=None if mem is None else int(mem), kind=kind,
                                gpu_instance=gi)

    # ---- GPM (Hopper and newer) ------------------------------------------------------------
    def _read_gpm(self, dev: _Device, v: dict[str, float], migs: list[tuple[MigInstance, Any]]) -> None:
        if dev.gpm is None:
            return
        if not dev.mig_enabled:
            got = self._gpm_step(dev.gpm, _GPM_METRICS, "nvmlGpmSampleGet", dev.handle)
            v.update(got)
            if "pcie_transmit_bytes_per_second" in got:
                dev.gpm_pcie = True
            return
        # In MIG mode GPM samples per GPU instance, on the parent handle.
        seen: set[int] = set()
        for mig, _ in migs:
            gi = mig.gpu_instance
            if gi in seen:
                continue
            seen.add(gi)
            pair = dev.gpm_mig.get(gi) or self._new_pair()
            if pair is None:
                continue
            dev.gpm_mig[gi] = pair
            ratios = self._gpm_step(pair, _GPM_MIG_METRICS, "nvmlGpmMigSampleGet", dev.handle, gi)
            for m, _ in migs:
                if m.gpu_instance == gi:
                    m.values.update(ratios)
        for gi in [g for g in dev.gpm_mig if g not in seen]:
            self._free_pair(dev.gpm_mig.pop(gi))  # instance destroyed

    def _gpm_step(self, pair: _GpmPair, metrics: tuple[tuple[int, str], ...], fn: str,
                  *where: Any) -> dict[str, float]:
        """Take a sample; from the second one on, return metrics over the interval since."""
        try:
            self._lib.call(fn, *where, pair.cur)
        except Absent as exc:
            log.debug("GPM sample failed: %s", exc)
            pair.primed = False
            return {}
        older, newer = pair.prev, pair.cur
        pair.prev, pair.cur = newer, older  # the newest sample is the next interval's start
        if not pair.primed:
            pair.primed = True
            return {}
        req = gpm_request(self._lib.nvml, older, newer, [metric_id for metric_id, _ in metrics])
        if self._lib.query("nvmlGpmMetricsGet", req) is None:
            return {}
        out: dict[str, float] = {}
        for k, (metric_id, key) in enumerate(metrics):
            m = req.metrics[k]
            if m.nvmlReturn == 0 and not math.isnan(m.value):
                out[key] = m.value * 1048576.0 if metric_id in _GPM_MIB_PER_S else _ratio(m.value)
        return out

    # ---- XID events ------------------------------------------------------------------------
    def _drain_events(self) -> None:
        """Collect the XID events queued since the last sample, without waiting (0 ms)."""
        if self._event_set is None:
            return
        for _ in range(_MAX_EVENTS_PER_SAMPLE):
            try:
                data = self._lib.call(_EVENT_WAIT, self._event_set, 0)
            except Absent as exc:
                if not exc.timeout:  # timeout is the normal "queue empty"
                    log.debug("nvmlEventSetWait: %s", exc)
                return
            except DeviceLost as exc:
                log.debug("nvmlEventSetWait: %s", exc)
                return
            if not int(data.eventType) & _EVENT_XID_CRITICAL:
                continue
            dev = self._by_handle.get(handle_key(data.device))
            if dev is None:  # a MIG device handle, say: fall back to its UUID
                try:
                    dev = self._by_uuid.get(_text(self._lib.query("nvmlDeviceGetUUID", data.device)))
                except DeviceLost:
                    dev = None
            if dev is None:
                log.warning("XID %d from an unknown NVIDIA device", int(data.eventData))
                continue
            code = int(data.eventData)
            dev.xid_total += 1
            dev.last_xid = code
            dev.events.append(f"xid {code}")
            log.warning("GPU %d (%s): XID %d", dev.index, dev.uuid, code)
