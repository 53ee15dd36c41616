"""A fake `pynvml` module at the library boundary, for testing the NVML backend without a GPU.

It speaks pynvml's Python API (function names, argument order, return shapes, NVMLError
with `.value`, NVML's numeric constants) over plain Python records:

    fake = FakeNvml([FakeDevice(uuid="GPU-a"), FakeDevice(uuid="GPU-b")])
    fake.devices[0].errors["nvmlDeviceGetFanSpeed"] = NVML_ERROR_NOT_SUPPORTED
    fake.devices[1].lost = True               # every call on it: GPU_IS_LOST
    fake.hide("nvmlDeviceGetPcieThroughput")  # as if this pynvml predates the function
    fake.push_xid(0, 79)                      # an XID event for GPU 0
    backend = NvmlBackend(nvml=fake)

Names (nvmlDeviceGetX, usedGpuMemory, c_nvmlGpmMetricsGet_t, ...) keep pynvml's spelling.
Every call is recorded in `fake.calls` as (function name, device index or None), so tests
can count what one sample costs.
"""

from __future__ import annotations

import itertools
import types
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# ---- NVML numeric constants (nvml.h) -------------------------------------------------------
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_PCIE_UTIL_TX_BYTES = 0
NVML_PCIE_UTIL_RX_BYTES = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_VALUE_TYPE_DOUBLE = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3
NVML_FI_DEV_ECC_SBE_VOL_TOTAL = 3
NVML_FI_DEV_ECC_DBE_VOL_TOTAL = 4
NVML_FI_DEV_ECC_SBE_AGG_TOTAL = 5
NVML_FI_DEV_ECC_DBE_AGG_TOTAL = 6
NVML_FI_DEV_RETIRED_SBE = 29
NVML_FI_DEV_RETIRED_DBE = 30
NVML_FI_DEV_RETIRED_PENDING = 31
NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON = 90
NVML_FI_DEV_PCIE_REPLAY_COUNTER = 94
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX = 138
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 139
NVML_AGGREGATE_ECC = 1
NVML_GRID_LICENSE_FEATURE_CODE_VGPU = 1
NVML_GPM_METRIC_FP64_UTIL = 11
NVML_GPM_METRIC_FP32_UTIL = 12
NVML_GPM_METRIC_FP16_UTIL = 13
NVML_FI_DEV_MEMORY_TEMP = 82
NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION = 83
nvmlEventTypeSingleBitEccError = 0x1
nvmlEventTypeXidCriticalError = 0x8
nvmlMemory_v2 = 0x02000028
NVML_GPM_METRICS_GET_VERSION = 1
NVML_GPM_METRIC_GRAPHICS_UTIL = 1
NVML_GPM_METRIC_SM_UTIL = 2
NVML_GPM_METRIC_SM_OCCUPANCY = 3
NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
NVML_GPM_METRIC_DRAM_BW_UTIL = 10
NVML_GPM_METRIC_MAX = 477
NOT_AVAILABLE_U32 = 0xFFFFFFFF

_FIELD_TYPES = {
    NVML_FI_DEV_MEMORY_TEMP: NVML_VALUE_TYPE_UNSIGNED_INT,
    NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
    NVML_FI_DEV_ECC_SBE_VOL_TOTAL: NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
    NVML_FI_DEV_ECC_DBE_VOL_TOTAL: NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
    NVML_FI_DEV_RETIRED_PENDING: NVML_VALUE_TYPE_UNSIGNED_INT,
    NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON: NVML_VALUE_TYPE_UNSIGNED_INT,
    NVML_FI_DEV_PCIE_REPLAY_COUNTER: NVML_VALUE_TYPE_UNSIGNED_INT,
}


class NVMLError(Exception):
    """Like pynvml's: the NVML return code is `.value`."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class NVMLError_LibraryNotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_LIBRARY_NOT_FOUND)


class NVMLLibraryMismatchError(Exception):
    """pynvml raises this from unversioned wrappers when the driver lacks the symbol."""


# ---- the fake hardware -----------------------------------------------------------------------
@dataclass(eq=False)
class FakeHandle:
    """A device or MIG-device handle (hashable by identity, like a C pointer)."""

    device: int
    mig_slot: int | None = None


@dataclass
class FakeProcess:
    pid: int
    usedGpuMemory: int | None
    gpuInstanceId: int = NOT_AVAILABLE_U32
    computeInstanceId: int = NOT_AVAILABLE_U32


@dataclass
class FakeMigDevice:
    gpu_instance: int
    compute_instance: int
    uuid: str
    name: str
    memory_total: int
    memory_used: int
    processes: list[FakeProcess] = field(default_factory=list)
    gpm_graphics_util: float | None = None  # percent


@dataclass
class FakeLink:
    """One NVLink: its state, data counters (KiB) and error counters (nvmlNvLinkErrorCounter_t -> count)."""

    active: int = 1
    tx_kib: int = 1_000_000
    rx_kib: int = 2_000_000
    errors: dict[int, int] = field(default_factory=lambda: {0: 1, 1: 0, 2: 3, 3: 4})
    error_codes: dict[int, int] = field(default_factory=dict)  # counter -> NVML error it raises


@dataclass
class FakeDevice:
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    name: str = "NVIDIA H100 80GB HBM3"
    serial: str = "1650123456789"
    pci_bus_id: bytes = b"00000000:18:00.0"
    vbios_version: str = "96.00.74.00.01"
    compute_mode: int = 0
    util_gpu: int = 87  # percent
    util_memory: int = 45
    memory_total: int = 85_520_809_984
    memory_reserved: int = 500_000_000
    memory_used: int = 40_000_000_000
    temperature: int = 61
    memory_temperature: int = 70
    fan_speed: int = 35  # percent
    power_usage_mw: int = 312_456
    power_limit_mw: int = 700_000
    energy_mj: int = 123_456_789
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    max_sm_clock_mhz: int = 1980
    max_mem_clock_mhz: int = 2619
    pstate: int = 0
    pcie_tx_kbps: int = 12_345
    pcie_rx_kbps: int = 67_890
    ecc_corrected: int = 5
    ecc_uncorrected: int = 1
    throttle_reasons: int = 0x4 | 0x40
    ecc_corrected_aggregate: int = 17
    ecc_uncorrected_aggregate: int = 2
    # cause (0 = multiple single-bit, 1 = double-bit) -> retired page addresses
    retired_pages: dict[int, list[int]] = field(default_factory=lambda: {0: [0x1000, 0x2000], 1: [0x3000]})
    retired_pending: int = 0
    remapped_rows: tuple[int, int, int, int] = (3, 0, 0, 0)  # correctable, uncorrectable, pending, failure
    pcie_replays: int = 7
    # nvmlPerfPolicyType_t -> violation time in ns
    violations_ns: dict[int, int] = field(default_factory=lambda: {
        0: 12_500_000_000, 1: 3_000_000_000, 2: 0, 3: 1_000_000, 4: 40_000_000_000, 5: 0})
    encoder_util: int = 12
    decoder_util: int = 34
    grid_license: int | None = None  # None: not a vGPU; else the vGPU feature's state (1 = licensed)
    nvlinks: list[FakeLink] = field(default_factory=list)
    nvlink_speed_mbps: int = 26_562
    mig_mode: int = NVML_DEVICE_MIG_DISABLE
    max_mig: int = 7  # 0 = not MIG-capable (calls answer NOT_SUPPORTED)
    mig_devices: dict[int, FakeMigDevice] = field(default_factory=dict)  # slot -> device
    compute_processes: list[FakeProcess] = field(default_factory=list)
    graphics_processes: list[FakeProcess] = field(default_factory=list)
    gpm_supported: bool = True
    gpm: dict[int, float] = field(default_factory=dict)  # metric id -> percent
    events_supported: bool = True
    lost: bool = False
    # function name -> NVML error code raised by every call of it on this device
    errors: dict[str, int] = field(default_factory=dict)
    # field id -> NVML error code reported in that field's nvmlReturn
    field_errors: dict[int, int] = field(default_factory=dict)

    @property
    def memory_free(self) -> int:
        return self.memory_total - self.memory_reserved - self.memory_used


@dataclass
class _FieldValue:
    fieldId: int
    scopeId: int = 0
    nvmlReturn: int = NVML_SUCCESS
    valueType: int = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    value: types.SimpleNamespace = field(default_factory=types.SimpleNamespace)


@dataclass
class _GpmSample:
    serial: int = 0  # 0 = never filled
    device: int | None = None
    gpu_instance: int | None = None
    freed: bool = False


@dataclass
class _GpmMetric:
    metricId: int = 0
    nvmlReturn: int = NVML_SUCCESS
    value: float = 0.0


class c_nvmlGpmMetricsGet_t:
    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: Any = None
        self.sample2: Any = None
        self.metrics = [_GpmMetric() for _ in range(NVML_GPM_METRIC_MAX)]


# ---- the fake module ----------------------------------------------------------------------------
class FakeNvml(types.ModuleType):
    """Drop-in for `pynvml`. Constants above are exposed as module attributes too."""

    def __init__(self, devices: list[FakeDevice] | None = None, *, init_error: int | None = None,
                 driver_version: str = "550.54.15") -> None:
        super().__init__("pynvml")
        self.hidden: set[str] = set()
        for name, value in globals().items():
            if name.startswith(("NVML_", "nvml")) and isinstance(value, int):
                setattr(self, name, value)
        self.NVMLError = NVMLError
        self.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
        self.NVMLLibraryMismatchError = NVMLLibraryMismatchError
        self.c_nvmlGpmMetricsGet_t = c_nvmlGpmMetricsGet_t
        self.devices = devices if devices is not None else [FakeDevice()]
        self.init_error = init_error
        self.driver_version = driver_version
        self.initialized = 0
        self.shutdowns = 0
        self.calls: list[tuple[str, int | None]] = []
        self.driver_lacks: set[str] = set()  # raise FUNCTION_NOT_FOUND, like an old driver
        self.event_sets: dict[int, set[int]] = {}  # set id -> registered device indices
        self.pending: deque[tuple[int, int]] = deque()  # (device index, xid)
        self.gpm_samples: list[_GpmSample] = []
        self._handles: dict[tuple[int, int | None], FakeHandle] = {}
        self._serial = itertools.count(1)

    # Hidden names behave as if this pynvml version did not have them.
    def __getattribute__(self, name: str) -> Any:
        if name != "hidden" and name in object.__getattribute__(self, "hidden"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def hide(self, *names: str) -> None:
        self.hidden.update(names)

    def push_xid(self, device: int, xid: int) -> None:
        self.pending.append((device, xid))

    def count(self, name: str, device: int | None = None) -> int:
        return sum(1 for n, d in self.calls if n == name and (device is None or d == device))

    # ---- plumbing --------------------------------------------------------------------------
    def _enter(self, fn: str, handle: FakeHandle | None = None) -> FakeDevice | None:
        self.calls.append((fn, None if handle is None else handle.device))
        if fn != "nvmlInit" and not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if fn in self.driver_lacks:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        if handle is None:
            return None
        dev = self.devices[handle.device]
        if dev.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if fn in dev.errors and handle.mig_slot is None:  # errors target the whole-GPU handle
            raise NVMLError(dev.errors[fn])
        return dev

    def _mig(self, handle: FakeHandle) -> FakeMigDevice | None:
        if handle.mig_slot is None:
            return None
        return self.devices[handle.device].mig_devices[handle.mig_slot]

    # ---- init ------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.init_error == NVML_ERROR_LIBRARY_NOT_FOUND:
            raise NVMLError_LibraryNotFound()
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialized -= 1
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def handle(self, device: int, mig_slot: int | None = None) -> FakeHandle:
        """The same object for the same device, as NVML hands out the same pointer."""
        return self._handles.setdefault((device, mig_slot), FakeHandle(device, mig_slot))

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        if not 0 <= index < len(self.devices):
            self._enter("nvmlDeviceGetHandleByIndex")
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        handle = self.handle(index)
        self._enter("nvmlDeviceGetHandleByIndex", handle)  # a lost GPU fails here too
        return handle

    # ---- identity ----------------------------------------------------------------------------
    def nvmlDeviceGetUUID(self, h: FakeHandle) -> str:
        dev = self._enter("nvmlDeviceGetUUID", h)
        mig = self._mig(h)
        return mig.uuid if mig else dev.uuid  # type: ignore[union-attr]

    def nvmlDeviceGetName(self, h: FakeHandle) -> str:
        dev = self._enter("nvmlDeviceGetName", h)
        mig = self._mig(h)
        return mig.name if mig else dev.name  # type: ignore[union-attr]

    def nvmlDeviceGetSerial(self, h: FakeHandle) -> str:
        return self._enter("nvmlDeviceGetSerial", h).serial  # type: ignore[union-attr]

    def nvmlDeviceGetVbiosVersion(self, h: FakeHandle) -> str:
        return self._enter("nvmlDeviceGetVbiosVersion", h).vbios_version  # type: ignore[union-attr]

    def nvmlDeviceGetPciInfo_v3(self, h: FakeHandle) -> types.SimpleNamespace:
        dev = self._enter("nvmlDeviceGetPciInfo_v3", h)
        return types.SimpleNamespace(busId=dev.pci_bus_id)  # type: ignore[union-attr]

    def nvmlDeviceGetPciInfo(self, h: FakeHandle) -> types.SimpleNamespace:
        dev = self._enter("nvmlDeviceGetPciInfo", h)
        return types.SimpleNamespace(busId=dev.pci_bus_id)  # type: ignore[union-attr]

    def nvmlDeviceGetComputeMode(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetComputeMode", h).compute_mode  # type: ignore[union-attr]

    def nvmlDeviceGetMaxClockInfo(self, h: FakeHandle, clock: int) -> int:
        dev = self._enter("nvmlDeviceGetMaxClockInfo", h)
        return dev.max_sm_clock_mhz if clock == NVML_CLOCK_SM else dev.max_mem_clock_mhz  # type: ignore[union-attr]

    # ---- readings -------------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, h: FakeHandle) -> types.SimpleNamespace:
        dev = self._enter("nvmlDeviceGetUtilizationRates", h)
        return types.SimpleNamespace(gpu=dev.util_gpu, memory=dev.util_memory)  # type: ignore[union-attr]

    def nvmlDeviceGetMemoryInfo(self, h: FakeHandle, version: int | None = None) -> types.SimpleNamespace:
        name = "nvmlDeviceGetMemoryInfo_v2" if version else "nvmlDeviceGetMemoryInfo"
        dev = self._enter(name, h)
        mig = self._mig(h)
        if mig is not None:
            total, used, reserved = mig.memory_total, mig.memory_used, 0
        else:
            total, used, reserved = dev.memory_total, dev.memory_used, dev.memory_reserved  # type: ignore[union-attr]
        free = total - reserved - used
        if version:
            return types.SimpleNamespace(version=version, total=total, reserved=reserved, free=free, used=used)
        # v1 counts the driver's reservation as used
        return types.SimpleNamespace(total=total, free=free, used=used + reserved)

    def nvmlDeviceGetTemperatureV(self, h: FakeHandle, sensor: int) -> int:
        return self._enter("nvmlDeviceGetTemperatureV", h).temperature  # type: ignore[union-attr]

    def nvmlDeviceGetTemperature(self, h: FakeHandle, sensor: int) -> int:
        return self._enter("nvmlDeviceGetTemperature", h).temperature  # type: ignore[union-attr]

    def nvmlDeviceGetFieldValues(self, h: FakeHandle, field_ids: list[int]) -> list[_FieldValue]:
        dev = self._enter("nvmlDeviceGetFieldValues", h)
        assert dev is not None
        known = {
            NVML_FI_DEV_MEMORY_TEMP: dev.memory_temperature,
            NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: dev.energy_mj,
            NVML_FI_DEV_ECC_SBE_VOL_TOTAL: dev.ecc_corrected,
            NVML_FI_DEV_ECC_DBE_VOL_TOTAL: dev.ecc_uncorrected,
            NVML_FI_DEV_ECC_SBE_AGG_TOTAL: dev.ecc_corrected_aggregate,
            NVML_FI_DEV_ECC_DBE_AGG_TOTAL: dev.ecc_uncorrected_aggregate,
            NVML_FI_DEV_RETIRED_SBE: len(dev.retired_pages.get(0, [])),
            NVML_FI_DEV_RETIRED_DBE: len(dev.retired_pages.get(1, [])),
            NVML_FI_DEV_RETIRED_PENDING: dev.retired_pending,
            NVML_FI_DEV_PCIE_REPLAY_COUNTER: dev.pcie_replays,
        }
        if dev.nvlinks:
            known[NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON] = dev.nvlink_speed_mbps
        out = []
        for item in field_ids:
            # pynvml takes a field id, or (field id, scope id) for per-link fields
            fid, scope = item if isinstance(item, tuple) else (item, 0)
            fv = _FieldValue(fieldId=fid, scopeId=scope,
                             valueType=_FIELD_TYPES.get(fid, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG))
            if fid in (NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX):
                if scope >= len(dev.nvlinks) or fid in dev.field_errors:
                    fv.nvmlReturn = dev.field_errors.get(fid, NVML_ERROR_NOT_SUPPORTED)
                else:
                    link = dev.nvlinks[scope]
                    fv.value.ullVal = link.tx_kib if fid == NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX else link.rx_kib
            elif fid in dev.field_errors:
                fv.nvmlReturn = dev.field_errors[fid]
            elif fid not in known:
                fv.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
            elif fv.valueType == NVML_VALUE_TYPE_UNSIGNED_INT:
                fv.value.uiVal = known[fid]
            else:
                fv.value.ullVal = known[fid]
            out.append(fv)
        return out

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetTotalEnergyConsumption", h).energy_mj  # type: ignore[union-attr]

    def nvmlDeviceGetTotalEccErrors(self, h: FakeHandle, error_type: int, counter_type: int) -> int:
        dev = self._enter("nvmlDeviceGetTotalEccErrors", h)
        assert dev is not None and counter_type in (NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC)
        corrected = error_type == NVML_MEMORY_ERROR_TYPE_CORRECTED
        if counter_type == NVML_AGGREGATE_ECC:
            return dev.ecc_corrected_aggregate if corrected else dev.ecc_uncorrected_aggregate
        return dev.ecc_corrected if corrected else dev.ecc_uncorrected

    # ---- health ----------------------------------------------------------------------------------
    def nvmlDeviceGetRemappedRows(self, h: FakeHandle) -> tuple[int, int, int, int]:
        return self._enter("nvmlDeviceGetRemappedRows", h).remapped_rows  # type: ignore[union-attr]

    def nvmlDeviceGetRetiredPages(self, h: FakeHandle, cause: int) -> list[int]:
        return list(self._enter("nvmlDeviceGetRetiredPages", h).retired_pages.get(cause, []))  # type: ignore[union-attr]

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetRetiredPagesPendingStatus", h).retired_pending  # type: ignore[union-attr]

    def nvmlDeviceGetPcieReplayCounter(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetPcieReplayCounter", h).pcie_replays  # type: ignore[union-attr]

    def nvmlDeviceGetViolationStatus(self, h: FakeHandle, policy: int) -> types.SimpleNamespace:
        dev = self._enter("nvmlDeviceGetViolationStatus", h)
        assert dev is not None
        if policy not in dev.violations_ns:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return types.SimpleNamespace(referenceTime=1_700_000_000_000_000, violationTime=dev.violations_ns[policy])

    def nvmlDeviceGetEncoderUtilization(self, h: FakeHandle) -> list[int]:
        return [self._enter("nvmlDeviceGetEncoderUtilization", h).encoder_util, 167_000]  # type: ignore[union-attr]

    def nvmlDeviceGetDecoderUtilization(self, h: FakeHandle) -> list[int]:
        return [self._enter("nvmlDeviceGetDecoderUtilization", h).decoder_util, 167_000]  # type: ignore[union-attr]

    def nvmlDeviceGetGridLicensableFeatures(self, h: FakeHandle) -> types.SimpleNamespace:
        dev = self._enter("nvmlDeviceGetGridLicensableFeatures", h)
        assert dev is not None
        if dev.grid_license is None:
            return types.SimpleNamespace(isGridLicenseSupported=0, licensableFeaturesCount=0, gridLicensableFeatures=[])
        feature = types.SimpleNamespace(featureCode=NVML_GRID_LICENSE_FEATURE_CODE_VGPU, featureState=dev.grid_license)
        return types.SimpleNamespace(isGridLicenseSupported=1, licensableFeaturesCount=1,
                                     gridLicensableFeatures=[feature])

    # ---- NVLink ----------------------------------------------------------------------------------
    def _link(self, fn: str, h: FakeHandle, link: int) -> FakeLink:
        dev = self._enter(fn, h)
        assert dev is not None
        if not dev.nvlinks:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < len(dev.nvlinks):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return dev.nvlinks[link]

    def nvmlDeviceGetNvLinkState(self, h: FakeHandle, link: int) -> int:
        return self._link("nvmlDeviceGetNvLinkState", h, link).active

    def nvmlDeviceGetNvLinkErrorCounter(self, h: FakeHandle, link: int, counter: int) -> int:
        got = self._link("nvmlDeviceGetNvLinkErrorCounter", h, link)
        if counter in got.error_codes:
            raise NVMLError(got.error_codes[counter])
        return got.errors[counter]

    def nvmlDeviceGetFanSpeed(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetFanSpeed", h).fan_speed  # type: ignore[union-attr]

    def nvmlDeviceGetPowerUsage(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetPowerUsage", h).power_usage_mw  # type: ignore[union-attr]

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetEnforcedPowerLimit", h).power_limit_mw  # type: ignore[union-attr]

    def nvmlDeviceGetClockInfo(self, h: FakeHandle, clock: int) -> int:
        dev = self._enter("nvmlDeviceGetClockInfo", h)
        return dev.sm_clock_mhz if clock == NVML_CLOCK_SM else dev.mem_clock_mhz  # type: ignore[union-attr]

    def nvmlDeviceGetPerformanceState(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetPerformanceState", h).pstate  # type: ignore[union-attr]

    def nvmlDeviceGetPcieThroughput(self, h: FakeHandle, counter: int) -> int:
        dev = self._enter("nvmlDeviceGetPcieThroughput", h)
        return dev.pcie_tx_kbps if counter == NVML_PCIE_UTIL_TX_BYTES else dev.pcie_rx_kbps  # type: ignore[union-attr]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetCurrentClocksEventReasons", h).throttle_reasons  # type: ignore[union-attr]

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetCurrentClocksThrottleReasons", h).throttle_reasons  # type: ignore[union-attr]

    # ---- processes ----------------------------------------------------------------------------
    def nvmlDeviceGetComputeRunningProcesses_v3(self, h: FakeHandle) -> list[FakeProcess]:
        dev = self._enter("nvmlDeviceGetComputeRunningProcesses_v3", h)
        mig = self._mig(h)
        return list(mig.processes if mig else dev.compute_processes)  # type: ignore[union-attr]

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, h: FakeHandle) -> list[FakeProcess]:
        dev = self._enter("nvmlDeviceGetGraphicsRunningProcesses_v3", h)
        return list(dev.graphics_processes)  # type: ignore[union-attr]

    # ---- MIG ------------------------------------------------------------------------------------
    def _mig_capable(self, fn: str, h: FakeHandle) -> FakeDevice:
        dev = self._enter(fn, h)
        assert dev is not None
        if not dev.max_mig:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return dev

    def nvmlDeviceGetMigMode(self, h: FakeHandle) -> list[int]:
        dev = self._mig_capable("nvmlDeviceGetMigMode", h)
        return [dev.mig_mode, dev.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeHandle) -> int:
        return self._mig_capable("nvmlDeviceGetMaxMigDeviceCount", h).max_mig

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeHandle, index: int) -> FakeHandle:
        dev = self._mig_capable("nvmlDeviceGetMigDeviceHandleByIndex", h)
        if dev.mig_mode != NVML_DEVICE_MIG_ENABLE or index not in dev.mig_devices:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return self.handle(h.device, index)

    def nvmlDeviceGetGpuInstanceId(self, h: FakeHandle) -> int:
        self._enter("nvmlDeviceGetGpuInstanceId", h)
        mig = self._mig(h)
        if mig is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return mig.gpu_instance

    def nvmlDeviceGetComputeInstanceId(self, h: FakeHandle) -> int:
        self._enter("nvmlDeviceGetComputeInstanceId", h)
        mig = self._mig(h)
        if mig is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return mig.compute_instance

    # ---- events ---------------------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> int:
        self._enter("nvmlEventSetCreate")
        set_id = len(self.event_sets) + 1
        self.event_sets[set_id] = set()
        return set_id

    def nvmlDeviceRegisterEvents(self, h: FakeHandle, event_types: int, event_set: int) -> None:
        dev = self._enter("nvmlDeviceRegisterEvents", h)
        if not dev.events_supported:  # type: ignore[union-attr]
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        assert event_types & nvmlEventTypeXidCriticalError
        self.event_sets[event_set].add(h.device)

    def nvmlEventSetWait_v2(self, event_set: int, timeout_ms: int) -> types.SimpleNamespace:
        self._enter("nvmlEventSetWait_v2")
        assert timeout_ms == 0, "the backend must never block on events"
        while self.pending:
            index, xid = self.pending.popleft()
            if index in self.event_sets[event_set]:
                return types.SimpleNamespace(device=self.handle(index), eventType=nvmlEventTypeXidCriticalError,
                                             eventData=xid, gpuInstanceId=NOT_AVAILABLE_U32,
                                             computeInstanceId=NOT_AVAILABLE_U32)
        raise NVMLError(NVML_ERROR_TIMEOUT)

    def nvmlEventSetWait(self, event_set: int, timeout_ms: int) -> types.SimpleNamespace:
        return self.nvmlEventSetWait_v2(event_set, timeout_ms)

    def nvmlEventSetFree(self, event_set: int) -> None:
        self._enter("nvmlEventSetFree")
        del self.event_sets[event_set]

    # ---- GPM ------------------------------------------------------------------------------------
    def nvmlGpmQueryDeviceSupport(self, h: FakeHandle) -> types.SimpleNamespace:
        dev = self._enter("nvmlGpmQueryDeviceSupport", h)
        return types.SimpleNamespace(version=1, isSupportedDevice=int(dev.gpm_supported))  # type: ignore[union-attr]

    def nvmlGpmSampleAlloc(self) -> _GpmSample:
        self._enter("nvmlGpmSampleAlloc")
        sample = _GpmSample()
        self.gpm_samples.append(sample)
        return sample

    def nvmlGpmSampleFree(self, sample: _GpmSample) -> None:
        self._enter("nvmlGpmSampleFree")
        assert not sample.freed, "double free"
        sample.freed = True

    def nvmlGpmSampleGet(self, h: FakeHandle, sample: _GpmSample) -> _GpmSample:
        dev = self._enter("nvmlGpmSampleGet", h)
        if not dev.gpm_supported or dev.mig_mode == NVML_DEVICE_MIG_ENABLE:  # type: ignore[union-attr]
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        sample.serial, sample.device, sample.gpu_instance = next(self._serial), h.device, None
        return sample

    def nvmlGpmMigSampleGet(self, h: FakeHandle, gpu_instance: int, sample: _GpmSample) -> _GpmSample:
        dev = self._enter("nvmlGpmMigSampleGet", h)
        if not dev.gpm_supported:  # type: ignore[union-attr]
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        sample.serial, sample.device, sample.gpu_instance = next(self._serial), h.device, gpu_instance
        return sample

    def nvmlGpmMetricsGet(self, req: c_nvmlGpmMetricsGet_t) -> c_nvmlGpmMetricsGet_t:
        self._enter("nvmlGpmMetricsGet")
        s1, s2 = req.sample1, req.sample2
        # Real NVML computes rates over sample1 -> sample2: both filled, same source, in order.
        if (req.version != NVML_GPM_METRICS_GET_VERSION or not s1.serial or not s2.serial
                or s1.serial >= s2.serial or (s1.device, s1.gpu_instance) != (s2.device, s2.gpu_instance)):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        dev = self.devices[s1.device]
        for m in req.metrics[: req.numMetrics]:
            if s1.gpu_instance is not None:
                mig = next(d for d in dev.mig_devices.values() if d.gpu_instance == s1.gpu_instance)
                value = mig.gpm_graphics_util if m.metricId == NVML_GPM_METRIC_GRAPHICS_UTIL else None
            else:
                value = dev.gpm.get(m.metricId)
            if value is None:
                m.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
            else:
                m.nvmlReturn, m.value = NVML_SUCCESS, value
        return req
