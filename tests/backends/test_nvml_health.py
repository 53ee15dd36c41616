"""The NVML backend's health, throttle, video and NVLink readings on the fake pynvml: each new
call mapped to its catalogue keys, and each one degrading on its own per error code."""

from __future__ import annotations

import pytest
from backends.fake_nvml import (
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_FI_DEV_PCIE_REPLAY_COUNTER,
    NVML_FI_DEV_RETIRED_PENDING,
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
    FakeDevice,
    FakeLink,
    FakeNvml,
)

from gpufleet.backends.nvml import NvmlBackend
from gpufleet.catalogue import keys
from gpufleet.snapshot import Gpu

SPEED = 26_562e6  # bytes/s per link direction (the fake's 26562 MB/s)
LINK_KEYS = {"up", "speed_bytes_per_second", "transmit_bytes_total", "receive_bytes_total",
             "replay_errors_total", "recovery_errors_total", "crc_flit_errors_total", "crc_data_errors_total"}

# What each new NVML call feeds; all absent when the call fails.
CALLS: dict[str, set[str]] = {
    "nvmlDeviceGetRemappedRows": {"remapped_rows_correctable_total", "remapped_rows_uncorrectable_total",
                                  "remapped_rows_pending", "remapped_rows_failure"},
    "nvmlDeviceGetViolationStatus": {"throttle_power_seconds_total", "throttle_thermal_seconds_total",
                                     "throttle_sync_boost_seconds_total", "throttle_board_limit_seconds_total",
                                     "throttle_low_utilization_seconds_total", "throttle_reliability_seconds_total"},
    "nvmlDeviceGetEncoderUtilization": {"encoder_utilization_ratio"},
    "nvmlDeviceGetDecoderUtilization": {"decoder_utilization_ratio"},
    "nvmlDeviceGetGridLicensableFeatures": {"vgpu_licensed"},
    "nvmlDeviceGetNvLinkErrorCounter": {"nvlink_replay_errors_total", "nvlink_recovery_errors_total",
                                        "nvlink_crc_flit_errors_total", "nvlink_crc_data_errors_total"},
}
# Read one call each only on drivers without nvmlDeviceGetFieldValues.
FALLBACK_CALLS: dict[str, set[str]] = {
    "nvmlDeviceGetTotalEccErrors": {"ecc_corrected_errors_total", "ecc_uncorrected_errors_total",
                                    "ecc_corrected_errors_aggregate_total", "ecc_uncorrected_errors_aggregate_total"},
    "nvmlDeviceGetRetiredPages": {"retired_pages_single_bit_total", "retired_pages_double_bit_total"},
    "nvmlDeviceGetRetiredPagesPendingStatus": {"retired_pages_pending"},
    "nvmlDeviceGetPcieReplayCounter": {"pcie_replays_total"},
}


def nvlinked(n: int = 0, **kw: object) -> FakeDevice:
    """An SXM GPU with three NVLinks, the third one down, and a vGPU license."""
    links = [FakeLink(tx_kib=1_000_000, rx_kib=2_000_000), FakeLink(tx_kib=10, rx_kib=20, errors={0: 0, 1: 1, 2: 0, 3: 0}),
             FakeLink(active=0, tx_kib=0, rx_kib=0, errors={0: 0, 1: 0, 2: 0, 3: 0})]
    defaults: dict[str, object] = {"uuid": f"GPU-{n:08x}", "nvlinks": links, "grid_license": 1}
    defaults.update(kw)
    return FakeDevice(**defaults)  # type: ignore[arg-type]


def start(*devices: FakeDevice, now: list[float] | None = None, fake: FakeNvml | None = None
          ) -> tuple[NvmlBackend, FakeNvml]:
    clock = now if now is not None else [0.0]
    fake = fake or FakeNvml(list(devices))
    b = NvmlBackend(nvml=fake, clock=lambda: clock[0], slow_refresh_s=10.0)
    b.open()
    return b, fake


def test_health_readings_in_base_units() -> None:
    b, _ = start(nvlinked(remapped_rows=(2, 1, 1, 1), retired_pending=1))
    v = b.sample()[0].values
    assert set(v) <= keys("gpu")
    assert {k: v[k] for k in CALLS["nvmlDeviceGetRemappedRows"]} == {
        "remapped_rows_correctable_total": 2.0, "remapped_rows_uncorrectable_total": 1.0,
        "remapped_rows_pending": 1.0, "remapped_rows_failure": 1.0}
    assert v["retired_pages_pending"] == 1.0 and v["retired_pages_single_bit_total"] == 2.0
    assert v["throttle_power_seconds_total"] == 12.5 and v["throttle_low_utilization_seconds_total"] == 40.0
    assert v["pcie_replays_total"] == 7.0 and v["ecc_uncorrected_errors_aggregate_total"] == 2.0
    assert v["encoder_utilization_ratio"] == 0.12 and v["vgpu_licensed"] == 1.0


def test_vgpu_license_absent_off_vgpu_and_zero_when_unlicensed() -> None:
    b, _ = start(nvlinked(0, grid_license=None), nvlinked(1, grid_license=0))
    gpus = b.sample()
    assert "vgpu_licensed" not in gpus[0].values
    assert gpus[1].values["vgpu_licensed"] == 0.0


def test_nvlink_per_link_totals_and_utilization() -> None:
    now = [100.0]
    b, fake = start(nvlinked(), now=now)
    first = b.sample()[0]
    assert [x.link for x in first.links] == [0, 1, 2]
    link0 = first.links[0].values
    assert set(link0) == LINK_KEYS  # utilisation needs a second collection
    assert link0["transmit_bytes_total"] == 1_000_000 * 1024.0 and link0["speed_bytes_per_second"] == SPEED
    assert link0["crc_flit_errors_total"] == 3.0 and link0["up"] == 1.0
    assert first.links[2].values["up"] == 0.0
    v = first.values
    assert v["nvlink_links_active"] == 2.0
    assert v["nvlink_transmit_bytes_total"] == (1_000_000 + 10) * 1024.0
    assert v["nvlink_recovery_errors_total"] == 1.0 and v["nvlink_replay_errors_total"] == 1.0
    # 2 s later link 0 moved 13.28 GB out and 5 GB in: half its speed, the busier direction
    sent = int(SPEED) // 1024
    fake.devices[0].nvlinks[0].tx_kib += sent
    fake.devices[0].nvlinks[0].rx_kib += 5_000_000
    now[0] = 102.0
    second = b.sample()[0]
    assert second.links[0].values["utilization_ratio"] == pytest.approx(sent * 1024.0 / 2.0 / SPEED)
    assert second.links[1].values["utilization_ratio"] == 0.0
    assert set(second.links[0].values) <= keys("gpu_link")


def test_nvlink_error_counters_ride_the_slow_cadence() -> None:
    now = [0.0]
    b, fake = start(nvlinked(), now=now)
    b.sample()
    assert fake.count("nvmlDeviceGetNvLinkErrorCounter") == 3 * 4
    fake.devices[0].nvlinks[0].errors[2] = 50
    now[0] = 5.0
    assert b.sample()[0].links[0].values["crc_flit_errors_total"] == 3.0  # cached within the refresh
    assert fake.count("nvmlDeviceGetNvLinkErrorCounter") == 3 * 4
    assert fake.count("nvmlDeviceGetNvLinkState") == 4 + 3 + 3  # probed to the end once, then per link
    now[0] = 11.0
    assert b.sample()[0].links[0].values["crc_flit_errors_total"] == 50.0


def test_a_gpu_without_nvlink_has_no_links_and_no_nvlink_readings() -> None:
    b, fake = start(FakeDevice())
    gpu = b.sample()[0]
    b.sample()
    assert gpu.links == [] and not any(k.startswith("nvlink_") for k in gpu.values)
    assert fake.count("nvmlDeviceGetNvLinkState") == 1  # link 0 said "not supported" once


@pytest.mark.parametrize("function", sorted(CALLS))
@pytest.mark.parametrize("code", [NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION])
def test_each_new_call_failing_leaves_only_its_readings_absent(function: str, code: int) -> None:
    b, _ = start(nvlinked(0, errors={function: code}), nvlinked(1))
    gpus = b.sample()
    assert gpus[0].up and gpus[1].up
    assert not CALLS[function] & set(gpus[0].values)  # absent, never 0
    assert set(gpus[1].values) - set(gpus[0].values) == CALLS[function]  # and nothing else lost


@pytest.mark.parametrize("function", sorted(FALLBACK_CALLS))
@pytest.mark.parametrize("code", [NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION])
def test_each_fallback_call_failing_leaves_only_its_readings_absent(function: str, code: int) -> None:
    fake = FakeNvml([nvlinked(0, errors={function: code}), nvlinked(1)])
    fake.driver_lacks.add("nvmlDeviceGetFieldValues")  # an old driver: one call per reading
    b, _ = start(fake=fake)
    gpus = b.sample()
    assert not FALLBACK_CALLS[function] & set(gpus[0].values)
    assert set(gpus[1].values) - set(gpus[0].values) == FALLBACK_CALLS[function]


def test_fallback_calls_give_the_field_values_readings() -> None:
    with_fields, _ = start(nvlinked())
    fake = FakeNvml([nvlinked()])
    fake.driver_lacks.add("nvmlDeviceGetFieldValues")
    without, _ = start(fake=fake)
    a, b = with_fields.sample()[0].values, without.sample()[0].values
    for key in set().union(*FALLBACK_CALLS.values()):
        assert a[key] == b[key], key


@pytest.mark.parametrize(("field", "key"), [(NVML_FI_DEV_PCIE_REPLAY_COUNTER, "pcie_replays_total"),
                                            (NVML_FI_DEV_RETIRED_PENDING, "retired_pages_pending")])
def test_a_field_error_drops_only_that_field(field: int, key: str) -> None:
    b, _ = start(nvlinked(field_errors={field: NVML_ERROR_NOT_SUPPORTED}))
    v = b.sample()[0].values
    assert key not in v
    assert v["retired_pages_double_bit_total"] == 1.0 and v["energy_joules_total"] == 123_456.789


def test_nvlink_data_field_error_drops_only_the_byte_counters() -> None:
    b, _ = start(nvlinked(field_errors={NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: NVML_ERROR_NO_PERMISSION}))
    gpu = b.sample()[0]
    assert "transmit_bytes_total" not in gpu.links[0].values and "nvlink_transmit_bytes_total" not in gpu.values
    assert gpu.links[0].values["crc_flit_errors_total"] == 3.0 and gpu.values["nvlink_links_active"] == 2.0


def test_nvlink_state_refused_means_no_links() -> None:
    b, _ = start(nvlinked(errors={"nvmlDeviceGetNvLinkState": NVML_ERROR_NO_PERMISSION}))
    gpu = b.sample()[0]
    assert gpu.up and gpu.links == [] and "nvlink_links_active" not in gpu.values


@pytest.mark.parametrize("function", sorted(CALLS) + ["nvmlDeviceGetNvLinkState"])
def test_gpu_lost_in_a_new_call_reports_the_gpu_down(function: str) -> None:
    now = [0.0]
    b, fake = start(nvlinked(0), nvlinked(1), now=now)
    b.sample()
    fake.devices[0].errors[function] = NVML_ERROR_GPU_IS_LOST
    now[0] = 20.0  # past the slow refresh, so the slow-cadence calls run too
    gpus: list[Gpu] = b.sample()
    assert (gpus[0].up, gpus[0].values, gpus[0].links) == (False, {"up": 0.0}, [])
    assert gpus[1].up and gpus[1].values["nvlink_links_active"] == 2.0


def test_gpm_pcie_rates_replace_the_blocking_throughput_calls() -> None:
    now = [0.0]
    b, fake = start(FakeDevice(gpm={1: 50.0, 20: 100.0, 21: 50.0}), now=now)
    b.sample()
    assert fake.count("nvmlDeviceGetPcieThroughput") == 2  # no GPM interval yet
    now[0] = 1.0
    v = b.sample()[0].values
    assert v["pcie_transmit_bytes_per_second"] == 100 * 1048576.0 and v["graphics_engine_active_ratio"] == 0.5
    assert v["pcie_receive_bytes_per_second"] == 50 * 1048576.0
    now[0] = 20.0  # past the slow refresh: GPM measures PCIe, so no 20 ms driver measurement
    b.sample()
    assert fake.count("nvmlDeviceGetPcieThroughput") == 2
