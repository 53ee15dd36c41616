"""The NVML backend on a fake pynvml (no GPU needed), plus its contact points with the real one."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

import pytest
from backends.fake_nvml import (
    NVML_DEVICE_MIG_ENABLE,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    NVML_FI_DEV_MEMORY_TEMP,
    FakeDevice,
    FakeMigDevice,
    FakeNvml,
    FakeProcess,
)

from gpufleet.backends.base import BackendUnavailable
from gpufleet.backends.nvml import NvmlBackend, field_value, gpm_request, handle_key, mig_profile, throttle_names
from gpufleet.backends.nvml_lib import LIBRARY_MISSING
from gpufleet.catalogue import keys
from gpufleet.snapshot import Gpu

GPM = {1: 50.0, 2: 40.0, 3: 30.0, 5: 20.0, 10: 12.5, 11: 5.0, 12: 25.0, 13: 10.0}

# Every reading of a default FakeDevice, in base units, after a second sample (GPM needs two).
EXPECTED: dict[str, float] = {
    "up": 1.0,
    "utilization_ratio": 0.87,
    "memory_bandwidth_utilization_ratio": 0.45,
    "memory_used_bytes": 40_000_000_000.0,
    "memory_free_bytes": 85_520_809_984.0 - 500_000_000 - 40_000_000_000,
    "memory_total_bytes": 85_520_809_984.0,
    "temperature_celsius": 61.0,
    "memory_temperature_celsius": 70.0,
    "fan_speed_ratio": 0.35,
    "power_watts": 312.456,
    "power_limit_watts": 700.0,
    "energy_joules_total": 123_456.789,
    "sm_clock_hertz": 1_980_000_000.0,
    "memory_clock_hertz": 2_619_000_000.0,
    "sm_clock_max_hertz": 1_980_000_000.0,
    "memory_clock_max_hertz": 2_619_000_000.0,
    "performance_state": 0.0,
    "pcie_transmit_bytes_per_second": 12_345_000.0,
    "pcie_receive_bytes_per_second": 67_890_000.0,
    "ecc_corrected_errors_total": 5.0,
    "ecc_uncorrected_errors_total": 1.0,
    "clock_throttle_reasons": float(0x4 | 0x40),
    "xid_errors_total": 0.0,
    "last_xid": 0.0,
    "mig_instances": 0.0,
    "processes": 2.0,
    "graphics_engine_active_ratio": 0.5,
    "sm_active_ratio": 0.4,
    "sm_occupancy_ratio": 0.3,
    "tensor_active_ratio": 0.2,
    "dram_active_ratio": 0.125,
    "fp64_active_ratio": 0.05,
    "fp32_active_ratio": 0.25,
    "fp16_active_ratio": 0.1,
    "memory_reserved_bytes": 500_000_000.0,
    "ecc_corrected_errors_aggregate_total": 17.0,
    "ecc_uncorrected_errors_aggregate_total": 2.0,
    "retired_pages_single_bit_total": 2.0,
    "retired_pages_double_bit_total": 1.0,
    "retired_pages_pending": 0.0,
    "pcie_replays_total": 7.0,
    "remapped_rows_correctable_total": 3.0,
    "remapped_rows_uncorrectable_total": 0.0,
    "remapped_rows_pending": 0.0,
    "remapped_rows_failure": 0.0,
    "throttle_power_seconds_total": 12.5,
    "throttle_thermal_seconds_total": 3.0,
    "throttle_sync_boost_seconds_total": 0.0,
    "throttle_board_limit_seconds_total": 0.001,
    "throttle_low_utilization_seconds_total": 40.0,
    "throttle_reliability_seconds_total": 0.0,
    "encoder_utilization_ratio": 0.12,
    "decoder_utilization_ratio": 0.34,
}


def device(n: int = 0, **kw: object) -> FakeDevice:
    defaults: dict[str, object] = {
        "uuid": f"GPU-{n:08x}-aaaa-bbbb-cccc-dddddddddddd",
        "pci_bus_id": f"00000000:{0x18 + n:02X}:00.0".encode(),
        "gpm": dict(GPM),
        "compute_processes": [FakeProcess(1234, 1 << 30), FakeProcess(1300, None)],
    }
    defaults.update(kw)
    return FakeDevice(**defaults)  # type: ignore[arg-type]


def backend(*devices: FakeDevice, **kw: object) -> tuple[NvmlBackend, FakeNvml]:
    fake = kw.pop("fake", None) or FakeNvml(list(devices) or [device()])
    assert isinstance(fake, FakeNvml)
    b = NvmlBackend(nvml=fake, **kw)  # type: ignore[arg-type]
    b.open()
    return b, fake


def by_index(gpus: list[Gpu]) -> dict[int, Gpu]:
    return {g.index: g for g in gpus}


# ---- mapping ---------------------------------------------------------------------------------
def test_every_field_mapped_in_base_units() -> None:
    b, _ = backend()
    first = b.sample()[0]
    assert "sm_active_ratio" not in first.values  # GPM needs two samples
    gpu = b.sample()[0]
    assert gpu.values == EXPECTED
    assert set(gpu.values) <= keys("gpu")  # nothing outside the catalogue
    assert (gpu.index, gpu.uuid, gpu.model, gpu.vendor, gpu.up) == (
        0, "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd", "NVIDIA H100 80GB HBM3", "nvidia", True)
    assert gpu.info == {
        "driver_version": "550.54.15",
        "pci_bus_id": "00000000:18:00.0",
        "serial": "1650123456789",
        "vbios_version": "96.00.74.00.01",
        "compute_mode": "Default",
        "mig_mode": "Disabled",
        "type": "GPU",
    }
    assert gpu.throttle_reasons == ["sw_power_cap", "hw_thermal_slowdown"]
    assert [(p.pid, p.memory_bytes, p.kind, p.gpu_instance) for p in gpu.processes] == [
        (1234, 1 << 30, "compute", None), (1300, None, "compute", None)]
    assert gpu.mig == [] and gpu.events == []


def test_one_sample_costs_one_call_per_reading() -> None:
    now = [0.0]
    b, fake = backend(clock=lambda: now[0], slow_refresh_s=10.0)
    b.sample()
    fake.calls.clear()
    now[0] = 5.0
    b.sample()
    per_device = sorted(name for name, dev in fake.calls if dev == 0)
    assert per_device == sorted([
        "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetTemperatureV",
        "nvmlDeviceGetFieldValues", "nvmlDeviceGetFanSpeed", "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetClockInfo", "nvmlDeviceGetClockInfo", "nvmlDeviceGetPerformanceState",
        "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlGpmSampleGet",
        "nvmlDeviceGetRemappedRows", "nvmlDeviceGetEncoderUtilization", "nvmlDeviceGetDecoderUtilization",
        *["nvmlDeviceGetViolationStatus"] * 6,
    ])
    # once per sample, for all devices: the non-blocking event poll and the GPM difference
    assert sorted(name for name, dev in fake.calls if dev is None) == ["nvmlEventSetWait_v2", "nvmlGpmMetricsGet"]
    # slow readings come back after their TTL, static ones never
    fake.calls.clear()
    now[0] = 10.5
    b.sample()
    assert fake.count("nvmlDeviceGetEnforcedPowerLimit") == 1
    assert fake.count("nvmlDeviceGetMigMode") == 1
    assert fake.count("nvmlDeviceGetGridLicensableFeatures") == 1
    assert fake.count("nvmlDeviceGetUUID") == fake.count("nvmlDeviceGetMaxClockInfo") == 0
    # PCIe throughput blocks ~20 ms per call in the driver, so it rides the slow cadence too
    assert sorted(n for n, d in fake.calls if d == 0 and n == "nvmlDeviceGetPcieThroughput") == [
        "nvmlDeviceGetPcieThroughput"] * 2


def test_pcie_throughput_can_be_turned_off() -> None:
    b, fake = backend(read_pcie=False)
    values = b.sample()[0].values
    assert "pcie_transmit_bytes_per_second" not in values and values["power_watts"] == 312.456
    assert fake.count("nvmlDeviceGetPcieThroughput") == 0


def test_power_limit_change_seen_after_refresh() -> None:
    now = [0.0]
    b, fake = backend(clock=lambda: now[0], slow_refresh_s=10.0)
    assert b.sample()[0].values["power_limit_watts"] == 700.0
    fake.devices[0].power_limit_mw = 450_000
    assert b.sample()[0].values["power_limit_watts"] == 700.0  # cached within the TTL
    now[0] = 11.0
    assert b.sample()[0].values["power_limit_watts"] == 450.0


# ---- degrading per field ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("function", "absent"),
    [
        ("nvmlDeviceGetUtilizationRates", {"utilization_ratio", "memory_bandwidth_utilization_ratio"}),
        ("nvmlDeviceGetMemoryInfo_v2", {"memory_used_bytes", "memory_free_bytes", "memory_total_bytes",
                                        "memory_reserved_bytes"}),
        ("nvmlDeviceGetTemperatureV", {"temperature_celsius"}),
        ("nvmlDeviceGetFanSpeed", {"fan_speed_ratio"}),
        ("nvmlDeviceGetPowerUsage", {"power_watts"}),
        ("nvmlDeviceGetEnforcedPowerLimit", {"power_limit_watts"}),
        ("nvmlDeviceGetClockInfo", {"sm_clock_hertz", "memory_clock_hertz"}),
        ("nvmlDeviceGetMaxClockInfo", {"sm_clock_max_hertz", "memory_clock_max_hertz"}),
        ("nvmlDeviceGetPerformanceState", {"performance_state"}),
        ("nvmlDeviceGetPcieThroughput", {"pcie_transmit_bytes_per_second", "pcie_receive_bytes_per_second"}),
        ("nvmlDeviceGetCurrentClocksEventReasons", {"clock_throttle_reasons"}),
        ("nvmlDeviceGetComputeRunningProcesses_v3", {"processes"}),
        # energy and ECC then come from their own calls; memory temperature has none
        ("nvmlDeviceGetFieldValues", {"memory_temperature_celsius"}),
        ("nvmlDeviceGetTotalEccErrors", set()),  # not called while field values work
        ("nvmlDeviceGetRemappedRows", {"remapped_rows_correctable_total", "remapped_rows_uncorrectable_total",
                                       "remapped_rows_pending", "remapped_rows_failure"}),
        ("nvmlDeviceGetViolationStatus", {"throttle_power_seconds_total", "throttle_thermal_seconds_total",
                                          "throttle_sync_boost_seconds_total", "throttle_board_limit_seconds_total",
                                          "throttle_low_utilization_seconds_total",
                                          "throttle_reliability_seconds_total"}),
        ("nvmlDeviceGetEncoderUtilization", {"encoder_utilization_ratio"}),
        ("nvmlDeviceGetDecoderUtilization", {"decoder_utilization_ratio"}),
        ("nvmlDeviceGetGridLicensableFeatures", set()),  # not a vGPU: absent either way
        ("nvmlDeviceGetPcieReplayCounter", set()),  # not called while field values work
    ],
)
@pytest.mark.parametrize("code", [NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION, NVML_ERROR_UNKNOWN])
def test_failing_reading_is_absent_and_the_rest_present(function: str, absent: set[str], code: int) -> None:
    b, _ = backend(device(0, errors={function: code}), device(1))
    b.sample()
    gpus = by_index(b.sample())
    assert gpus[0].up is True
    assert gpus[0].values == {k: v for k, v in EXPECTED.items() if k not in absent}
    assert gpus[1].values == EXPECTED  # the other GPU is untouched


def test_not_supported_is_remembered_but_unknown_is_retried() -> None:
    b, fake = backend(device(0, errors={"nvmlDeviceGetFanSpeed": NVML_ERROR_NOT_SUPPORTED,
                                        "nvmlDeviceGetPowerUsage": NVML_ERROR_UNKNOWN}))
    for _ in range(3):
        b.sample()
    assert fake.count("nvmlDeviceGetFanSpeed") == 1  # not asked again: it will not change
    assert fake.count("nvmlDeviceGetPowerUsage") == 3  # a transient error may clear
    del fake.devices[0].errors["nvmlDeviceGetPowerUsage"]
    assert b.sample()[0].values["power_watts"] == 312.456


def test_field_value_error_drops_only_that_field() -> None:
    b, _ = backend(device(field_errors={NVML_FI_DEV_MEMORY_TEMP: NVML_ERROR_NOT_SUPPORTED}))
    b.sample()
    values = b.sample()[0].values
    assert "memory_temperature_celsius" not in values
    assert values["energy_joules_total"] == 123_456.789
    assert values["ecc_uncorrected_errors_total"] == 1.0


def test_function_not_found_in_driver_falls_back_to_older_variant() -> None:
    fake = FakeNvml([device()])
    fake.driver_lacks |= {"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetTemperatureV",
                          "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetFieldValues"}
    b, _ = backend(fake=fake)
    b.sample()
    values = b.sample()[0].values
    # older functions give the same readings, except memory temperature (field values only)
    # and `used`, which v1 reports with the driver's reservation included
    expected = {k: v for k, v in EXPECTED.items() if k not in ("memory_temperature_celsius", "memory_reserved_bytes")}
    expected["memory_used_bytes"] = 40_000_000_000.0 + 500_000_000
    assert values == expected
    assert fake.count("nvmlDeviceGetCurrentClocksThrottleReasons") == 2
    assert fake.count("nvmlDeviceGetCurrentClocksEventReasons") == 1  # probed once, then skipped
    assert fake.count("nvmlDeviceGetMemoryInfo_v2") == 1


def test_function_not_found_for_one_reading() -> None:
    b, _ = backend(device(errors={"nvmlDeviceGetPerformanceState": NVML_ERROR_FUNCTION_NOT_FOUND}))
    values = b.sample()[0].values
    assert "performance_state" not in values and values["power_watts"] == 312.456


def test_function_missing_from_pynvml_is_absent_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNvml([device(), device(1)])
    fake.hide("nvmlDeviceGetPcieThroughput", "nvmlMemory_v2", "nvmlDeviceGetCurrentClocksEventReasons")
    with caplog.at_level(logging.INFO, logger="gpufleet.backends.nvml"):
        b, _ = backend(fake=fake)
        for _ in range(3):
            gpus = b.sample()
    for gpu in gpus:
        assert "pcie_transmit_bytes_per_second" not in gpu.values
        assert gpu.values["clock_throttle_reasons"] == float(0x44)  # the older name still works
        assert gpu.values["memory_used_bytes"] == 40_500_000_000.0  # v1 memory info
    logged = [r for r in caplog.records if "nvmlDeviceGetPcieThroughput" in r.getMessage()]
    assert len(logged) == 1


def test_gpm_functions_missing_from_pynvml() -> None:
    fake = FakeNvml([device()])
    fake.hide("nvmlGpmQueryDeviceSupport")
    b, _ = backend(fake=fake)
    b.sample()
    assert "sm_active_ratio" not in b.sample()[0].values


# ---- devices going away ------------------------------------------------------------------------
def test_gpu_lost_mid_run() -> None:
    b, fake = backend(device(0), device(1))
    b.sample()
    fake.devices[1].lost = True
    gpus = by_index(b.sample())
    assert gpus[0].values == EXPECTED
    lost = gpus[1]
    assert (lost.up, lost.values) == (False, {"up": 0.0})
    assert lost.uuid == "GPU-00000001-aaaa-bbbb-cccc-dddddddddddd"
    assert lost.model == "NVIDIA H100 80GB HBM3" and lost.info["pci_bus_id"] == "00000000:19:00.0"
    assert lost.processes == [] and lost.throttle_reasons == []
    # it comes back (after a reset): readings resume, GPM starts a fresh interval
    fake.devices[1].lost = False
    back = by_index(b.sample())[1]
    assert back.up is True and "sm_active_ratio" not in back.values
    assert by_index(b.sample())[1].values == EXPECTED


def test_gpu_lost_error_on_one_call_downs_that_gpu_only() -> None:
    b, fake = backend(device(0), device(1))
    fake.devices[0].errors["nvmlDeviceGetPowerUsage"] = NVML_ERROR_GPU_IS_LOST
    gpus = by_index(b.sample())
    assert gpus[0].up is False and gpus[0].values == {"up": 0.0}
    assert gpus[1].up is True


def test_handle_error_at_open_reports_down_then_recovers() -> None:
    fake = FakeNvml([device(0, errors={"nvmlDeviceGetHandleByIndex": NVML_ERROR_UNKNOWN}), device(1)])
    b, _ = backend(fake=fake)
    gpus = by_index(b.sample())
    assert (gpus[0].index, gpus[0].up, gpus[0].values) == (0, False, {"up": 0.0})
    assert gpus[1].up is True
    del fake.devices[0].errors["nvmlDeviceGetHandleByIndex"]
    again = by_index(b.sample())[0]
    assert again.up is True and again.uuid.startswith("GPU-00000000")


def test_unexpected_exception_never_escapes_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    b, fake = backend(device(0), device(1))

    def broken(handle: object) -> int:
        if getattr(handle, "device", None) == 0:
            raise RuntimeError("binding bug")
        return 35

    monkeypatch.setattr(fake, "nvmlDeviceGetFanSpeed", broken)
    gpus = by_index(b.sample())
    assert gpus[0].up is False and gpus[1].values["fan_speed_ratio"] == 0.35


def test_unexpected_exception_while_reopening_a_gpu_never_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([device(0, errors={"nvmlDeviceGetHandleByIndex": NVML_ERROR_UNKNOWN}), device(1)])
    b, _ = backend(fake=fake)
    del fake.devices[0].errors["nvmlDeviceGetHandleByIndex"]

    def broken(handle: object) -> str:
        raise ValueError("odd bytes")

    monkeypatch.setattr(fake, "nvmlDeviceGetUUID", broken)
    gpus = by_index(b.sample())
    assert gpus[0].up is False and gpus[1].up is True


# ---- open / close -------------------------------------------------------------------------------
def test_library_missing_is_backend_unavailable_with_clear_message() -> None:
    fake = FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(BackendUnavailable) as err:
        NvmlBackend(nvml=fake).open()
    assert str(err.value) == LIBRARY_MISSING
    assert "libnvidia-ml" in LIBRARY_MISSING and "--backend sim" in LIBRARY_MISSING


def test_driver_not_loaded_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="not loaded"):
        NvmlBackend(nvml=FakeNvml(init_error=NVML_ERROR_DRIVER_NOT_LOADED)).open()


def test_zero_devices_is_backend_unavailable_and_shuts_nvml_down() -> None:
    fake = FakeNvml([])
    with pytest.raises(BackendUnavailable, match="no NVIDIA GPU"):
        NvmlBackend(nvml=fake).open()
    assert fake.initialized == 0 and fake.shutdowns == 1


def test_close_frees_everything_once_and_tolerates_errors() -> None:
    b, fake = backend(device(0), device(1))
    b.sample()
    b.sample()
    b.close()
    b.close()
    assert fake.shutdowns == 1 and fake.initialized == 0
    assert fake.event_sets == {}
    assert fake.gpm_samples and all(s.freed for s in fake.gpm_samples)
    # a shutdown that fails (driver gone) is swallowed
    b2, fake2 = backend()
    fake2.devices[0].lost = True
    fake2.driver_lacks.add("nvmlShutdown")
    b2.close()


def test_sample_opens_lazily() -> None:
    fake = FakeNvml([device()])
    assert NvmlBackend(nvml=fake).sample()[0].up is True
    assert fake.initialized == 1


# ---- MIG -----------------------------------------------------------------------------------------
def mig_device() -> FakeDevice:
    return device(
        mig_mode=NVML_DEVICE_MIG_ENABLE,
        mig_devices={
            0: FakeMigDevice(1, 0, "MIG-11111111", "NVIDIA H100 80GB HBM3 MIG 3g.40gb", 40 << 30, 10 << 30,
                             processes=[FakeProcess(500, 8 << 30)], gpm_graphics_util=75.0),
            2: FakeMigDevice(2, 0, "MIG-22222222", "NVIDIA H100 80GB HBM3 MIG 1g.10gb", 10 << 30, 0,
                             processes=[FakeProcess(600, None)], gpm_graphics_util=10.0),
        },
        compute_processes=[FakeProcess(500, 8 << 30, gpuInstanceId=1, computeInstanceId=0),
                           FakeProcess(600, None, gpuInstanceId=2, computeInstanceId=0)],
        # NVML does not report whole-GPU utilization in MIG mode
        errors={"nvmlDeviceGetUtilizationRates": NVML_ERROR_NOT_SUPPORTED},
    )


def test_mig_instances_and_their_processes() -> None:
    b, fake = backend(mig_device())
    b.sample()
    gpu = b.sample()[0]
    assert gpu.info["mig_mode"] == "Enabled"
    assert gpu.values["mig_instances"] == 2.0 and gpu.values["processes"] == 2.0
    assert "utilization_ratio" not in gpu.values
    assert [(m.gpu_instance, m.compute_instance, m.profile, m.uuid, m.values) for m in gpu.mig] == [
        (1, 0, "3g.40gb", "MIG-11111111",
         {"memory_used_bytes": float(10 << 30), "memory_total_bytes": float(40 << 30),
          "graphics_engine_active_ratio": 0.75}),
        (2, 0, "1g.10gb", "MIG-22222222",
         {"memory_used_bytes": 0.0, "memory_total_bytes": float(10 << 30),
          "graphics_engine_active_ratio": 0.1}),
    ]
    assert all(set(m.values) <= keys("mig") for m in gpu.mig)
    assert [(p.pid, p.memory_bytes, p.gpu_instance) for p in gpu.processes] == [(500, 8 << 30, 1), (600, None, 2)]
    assert "sm_active_ratio" not in gpu.values  # whole-GPU GPM is not sampled in MIG mode
    # MIG identity is read once per instance, not every sample
    assert fake.count("nvmlDeviceGetGpuInstanceId") == 2


def test_mig_processes_without_permission_for_the_whole_gpu() -> None:
    dev = mig_device()
    dev.errors["nvmlDeviceGetComputeRunningProcesses_v3"] = NVML_ERROR_NO_PERMISSION
    b, _ = backend(dev)
    gpu = b.sample()[0]
    # the whole-GPU list needs privileges; each MIG device's list does not
    assert [(p.pid, p.memory_bytes, p.gpu_instance) for p in gpu.processes] == [(500, 8 << 30, 1), (600, None, 2)]
    assert gpu.values["processes"] == 2.0


def test_mig_instance_destroyed_and_created() -> None:
    b, fake = backend(mig_device())
    b.sample()
    del fake.devices[0].mig_devices[2]
    fake.devices[0].mig_devices[5] = FakeMigDevice(3, 1, "MIG-33333333", "NVIDIA H100 80GB HBM3 MIG 2g.20gb",
                                                   20 << 30, 1 << 30)
    gpu = b.sample()[0]
    assert [(m.gpu_instance, m.compute_instance, m.profile) for m in gpu.mig] == [(1, 0, "3g.40gb"), (3, 1, "2g.20gb")]
    assert gpu.values["mig_instances"] == 2.0


# ---- XID events ------------------------------------------------------------------------------------
def test_xid_event_counts_and_sets_last_xid() -> None:
    b, fake = backend(device(0), device(1))
    b.sample()
    fake.push_xid(1, 48)
    fake.push_xid(1, 79)
    gpus = by_index(b.sample())
    assert gpus[1].values["xid_errors_total"] == 2.0 and gpus[1].values["last_xid"] == 79.0
    assert gpus[1].events == ["xid 48", "xid 79"]
    assert gpus[0].values["xid_errors_total"] == 0.0 and gpus[0].events == []
    later = by_index(b.sample())[1]
    assert later.values["xid_errors_total"] == 2.0 and later.events == []  # counter stays, events once


def test_xid_for_a_gpu_that_fell_off_the_bus() -> None:
    b, fake = backend(device(0), device(1))
    b.sample()
    fake.devices[1].lost = True
    fake.push_xid(1, 79)
    lost = by_index(b.sample())[1]
    assert lost.up is False and lost.events == ["xid 79"]


def test_xid_unsupported_device_has_no_xid_readings() -> None:
    b, fake = backend(device(0, events_supported=False))
    fake.push_xid(0, 13)
    values = b.sample()[0].values
    assert "xid_errors_total" not in values and "last_xid" not in values


# ---- GPM --------------------------------------------------------------------------------------------
def test_gpm_supported_needs_two_samples() -> None:
    b, fake = backend()
    assert "tensor_active_ratio" not in b.sample()[0].values
    values = b.sample()[0].values
    assert values["tensor_active_ratio"] == 0.2 and values["dram_active_ratio"] == 0.125
    fake.devices[0].gpm[5] = 99.5
    assert b.sample()[0].values["tensor_active_ratio"] == 0.995


def test_gpm_not_supported() -> None:
    b, fake = backend(device(gpm_supported=False))
    for _ in range(3):
        values = b.sample()[0].values
    assert not {"graphics_engine_active_ratio", "sm_active_ratio", "sm_occupancy_ratio",
                "tensor_active_ratio", "dram_active_ratio"} & set(values)
    assert fake.count("nvmlGpmSampleGet") == 0 and fake.count("nvmlGpmSampleAlloc") == 0


def test_gpm_metric_unsupported_individually() -> None:
    b, _ = backend(device(gpm={2: 40.0}))
    b.sample()
    values = b.sample()[0].values
    assert values["sm_active_ratio"] == 0.4 and "tensor_active_ratio" not in values


# ---- processes ----------------------------------------------------------------------------------------
def test_process_memory_not_available_and_graphics_processes() -> None:
    b, _ = backend(device(compute_processes=[FakeProcess(10, None), FakeProcess(11, 4096)],
                          graphics_processes=[FakeProcess(11, 4096), FakeProcess(12, 2048)]))
    gpu = b.sample()[0]
    assert [(p.pid, p.memory_bytes, p.kind) for p in gpu.processes] == [
        (10, None, "compute"), (11, 4096, "compute"), (12, 2048, "graphics")]
    assert gpu.values["processes"] == 3.0


# ---- pure helpers --------------------------------------------------------------------------------------
def test_throttle_names_and_unknown_bits() -> None:
    assert throttle_names(0) == []
    assert throttle_names(0x1 | 0x8 | 0x100 | (1 << 20)) == [
        "gpu_idle", "hw_slowdown", "display_clock_setting", "bit_20"]


def test_mig_profile() -> None:
    assert mig_profile("NVIDIA A100-SXM4-40GB MIG 1g.5gb") == "1g.5gb"
    assert mig_profile("NVIDIA H100 80GB HBM3 MIG 1c.3g.40gb") == "1c.3g.40gb"
    assert mig_profile("odd") == "odd"


def test_unknown_pstate_is_absent() -> None:
    b, _ = backend(device(pstate=32))
    assert "performance_state" not in b.sample()[0].values


# ---- the real pynvml ---------------------------------------------------------------------------------
def _driver_present() -> bool:
    return os.path.exists("/dev/nvidiactl") or ctypes.util.find_library("nvidia-ml") is not None


@pytest.mark.skipif(_driver_present(), reason="this machine has an NVIDIA driver")
def test_real_pynvml_without_driver_is_backend_unavailable() -> None:
    import pynvml  # noqa: F401  (a dependency: its absence is a failure, not a skip)

    b = NvmlBackend()
    with pytest.raises(BackendUnavailable) as err:
        b.open()
    assert str(err.value) == LIBRARY_MISSING
    b.close()  # closing a backend that never opened is harmless


def test_real_pynvml_structs_fit_the_mapping() -> None:
    """What the backend builds or decodes itself, checked against pynvml's ctypes types."""
    import pynvml

    req = gpm_request(pynvml, pynvml.c_nvmlGpmSample_t(), pynvml.c_nvmlGpmSample_t(), [1, 2, 3, 5, 10])
    assert (req.version, req.numMetrics) == (pynvml.NVML_GPM_METRICS_GET_VERSION, 5)
    assert [req.metrics[k].metricId for k in range(5)] == [
        pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL, pynvml.NVML_GPM_METRIC_SM_UTIL, pynvml.NVML_GPM_METRIC_SM_OCCUPANCY,
        pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL, pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL]
    values = (pynvml.c_nvmlFieldValue_t * 3)()
    values[0].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    values[0].value.ullVal = 123_456_789_012
    values[1].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
    values[1].value.uiVal = 71
    values[2].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
    assert [field_value(v) for v in values] == [123_456_789_012.0, 71.0, None]
    # the constants the backend spells itself agree with pynvml's
    assert (pynvml.NVML_FI_DEV_MEMORY_TEMP, pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
            pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL, pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL) == (82, 83, 3, 4)
    assert pynvml.nvmlEventTypeXidCriticalError == 0x8
    # an XID event names its GPU by a fresh pointer object: matched by address, not identity
    device = pynvml.struct_c_nvmlDevice_t()
    handle = ctypes.cast(ctypes.addressof(device), pynvml.c_nvmlDevice_t)
    event = pynvml.c_nvmlEventData_t()
    event.device = handle
    assert event.device is not handle and handle_key(event.device) == handle_key(handle) is not None
    assert (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM, pynvml.NVML_PCIE_UTIL_TX_BYTES) == (1, 2, 0)
