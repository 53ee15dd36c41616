"""AMD SMI backend against a small fake `amdsmi` module shaped like amdsmi 6.x/7.x."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Any

import pytest

from gpufleet import catalogue
from gpufleet.backends.amdsmi import AmdSmiBackend
from gpufleet.backends.base import BackendUnavailable

MiB = 1024 * 1024


class AmdSmiLibraryException(Exception):
    pass


class TempType(enum.IntEnum):
    EDGE = 0
    HOTSPOT = 1
    VRAM = 3


class TempMetric(enum.IntEnum):
    CURRENT = 0


class ClkType(enum.IntEnum):
    GFX = 0
    MEM = 5


class FakeAmdSmi:
    """Two GPUs: an MI300X (no edge sensor, no fan) and an MI210 with a fan."""

    AmdSmiTemperatureType = TempType
    AmdSmiTemperatureMetric = TempMetric
    AmdSmiClkType = ClkType

    def __init__(self, fail: set[str] = frozenset(), gpus: int = 2, init_error: bool = False) -> None:
        self.fail = set(fail)
        self.handles = [f"handle-{i}" for i in range(gpus)]
        self.init_error = init_error
        self.shut_down = 0
        self.calls: list[str] = []
        # MI300X: 7 XGMI links in 8 slots (the last unused), KB moved per link
        self.xgmi_read = [1000 * (n + 1) for n in range(7)] + ["N/A"]
        self.xgmi_write = [2000 * (n + 1) for n in range(7)] + [(1 << 64) - 1]

    def __getattribute__(self, name: str) -> Any:
        # Every amdsmi_* call can be made to fail, as a real unsupported field does.
        if name.startswith("amdsmi_") and name in object.__getattribute__(self, "fail"):
            def failing(*_: Any) -> Any:
                raise AmdSmiLibraryException(f"{name}: AMDSMI_STATUS_NOT_SUPPORTED")
            return failing
        return object.__getattribute__(self, name)

    def amdsmi_init(self, flag: int = 2) -> None:
        if self.init_error:
            raise AmdSmiLibraryException("AMDSMI_STATUS_INIT_ERROR")

    def amdsmi_shut_down(self) -> None:
        self.shut_down += 1

    def amdsmi_get_processor_handles(self) -> list[str]:
        return list(self.handles)

    def amdsmi_get_gpu_asic_info(self, h: str) -> dict[str, Any]:
        name = "AMD Instinct MI300X" if h == "handle-0" else "AMD Instinct MI210"
        return {"market_name": name, "vendor_id": 4098, "asic_serial": f"0x{h[-1]}D1A2B3C4", "device_id": 29857}

    def amdsmi_get_gpu_device_bdf(self, h: str) -> str:
        return f"0000:{0x0C + int(h[-1]):02x}:00.0"

    def amdsmi_get_gpu_device_uuid(self, h: str) -> str:
        return f"6dff74a1-0000-1000-80e4-7e5c3a6b9c0{h[-1]}"

    def amdsmi_get_gpu_driver_info(self, h: str) -> dict[str, str]:
        return {"driver_name": "amdgpu", "driver_version": "6.8.5", "driver_date": "2015/01/01 00:00"}

    def amdsmi_get_gpu_vbios_info(self, h: str) -> dict[str, str]:
        return {"name": "AMD MI300X", "build_date": "", "part_number": "113-M3000100-102", "version": "022.040.003.043.000001"}

    def amdsmi_get_gpu_activity(self, h: str) -> dict[str, Any]:
        return {"gfx_activity": 87, "umc_activity": 41, "mm_activity": "N/A"}

    def amdsmi_get_gpu_vram_usage(self, h: str) -> dict[str, int]:
        return {"vram_total": 196592, "vram_used": 1024}

    def amdsmi_get_temp_metric(self, h: str, sensor: TempType, metric: TempMetric) -> int:
        if sensor == TempType.EDGE:
            if h == "handle-0":
                return 0  # MI300X: no edge sensor, the library answers 0
            return 52
        return {TempType.HOTSPOT: 61, TempType.VRAM: 48}[sensor]

    def amdsmi_get_power_info(self, h: str) -> dict[str, Any]:
        return {"socket_power": 512, "current_socket_power": 512, "average_socket_power": "N/A",
                "gfx_voltage": "N/A", "soc_voltage": "N/A", "mem_voltage": "N/A", "power_limit": 750}

    def amdsmi_get_power_cap_info(self, h: str) -> dict[str, int]:
        return {"power_cap": 750_000_000, "default_power_cap": 750_000_000, "dpm_cap": 0,
                "min_power_cap": 0, "max_power_cap": 750_000_000}

    def amdsmi_get_energy_count(self, h: str) -> dict[str, Any]:
        return {"energy_accumulator": 1_000_000, "counter_resolution": 15.25, "timestamp": 1}

    def amdsmi_get_clock_info(self, h: str, kind: ClkType) -> dict[str, Any]:
        mhz = 2100 if kind == ClkType.GFX else 1300
        return {"clk": mhz, "min_clk": 500, "max_clk": mhz, "clk_locked": False, "clk_deep_sleep": "N/A"}

    def amdsmi_get_gpu_fan_speed(self, h: str, sensor: int) -> int:
        if h == "handle-0":
            raise AmdSmiLibraryException("AMDSMI_STATUS_NOT_SUPPORTED")
        return 128

    def amdsmi_get_gpu_fan_speed_max(self, h: str, sensor: int) -> int:
        return 255

    def amdsmi_get_gpu_total_ecc_count(self, h: str) -> dict[str, int]:
        return {"correctable_count": 3, "uncorrectable_count": 0, "deferred_count": 0}

    def amdsmi_get_gpu_pci_replay_counter(self, h: str) -> int:
        if h == "handle-1":
            raise AmdSmiLibraryException("AMDSMI_STATUS_NOT_SUPPORTED")
        return 5

    def amdsmi_get_pcie_info(self, h: str) -> dict[str, Any]:
        return {"pcie_static": {"max_pcie_width": 16}, "pcie_metric": {"pcie_width": 16, "pcie_replay_count": 2}}

    def amdsmi_get_gpu_metrics_info(self, h: str) -> dict[str, Any]:
        if h == "handle-1":  # an MI210 without XGMI bridges
            return {"xgmi_link_width": "N/A", "xgmi_link_speed": "N/A", "xgmi_read_data_acc": ["N/A"] * 8,
                    "xgmi_write_data_acc": ["N/A"] * 8}
        return {"xgmi_link_width": 16, "xgmi_link_speed": 32, "xgmi_read_data_acc": list(self.xgmi_read),
                "xgmi_write_data_acc": list(self.xgmi_write), "accumulation_counter": 1234}

    def amdsmi_get_gpu_process_list(self, h: str) -> list[dict[str, Any]]:
        return [
            {"name": "python", "pid": 4242, "mem": 3 * 2**30,
             "engine_usage": {"gfx": 0, "enc": 0},
             "memory_usage": {"gtt_mem": 0, "cpu_mem": 0, "vram_mem": 2 * 2**30}, "cu_occupancy": 0},
            {"name": "N/A", "pid": 4343, "mem": 2**20, "engine_usage": {}, "memory_usage": {}},
            {"name": "broken"},  # vanished mid-read: no pid
        ]


def opened(lib: FakeAmdSmi) -> AmdSmiBackend:
    b = AmdSmiBackend(lib=lib)
    b.open()
    return b


def test_values_are_mapped_to_catalogue_units() -> None:
    gpus = opened(FakeAmdSmi()).sample()
    assert len(gpus) == 2
    g = gpus[0]
    assert (g.index, g.vendor, g.model, g.up) == (0, "amd", "AMD Instinct MI300X", True)
    assert g.uuid == "6dff74a1-0000-1000-80e4-7e5c3a6b9c00"
    assert g.info == {"pci_bus_id": "0000:0c:00.0", "serial": "0x0D1A2B3C4",
                      "driver_version": "6.8.5", "vbios_version": "022.040.003.043.000001", "type": "GPU"}
    v = g.values
    assert v["up"] == 1.0
    assert v["utilization_ratio"] == pytest.approx(0.87)
    assert v["memory_bandwidth_utilization_ratio"] == pytest.approx(0.41)
    assert v["memory_total_bytes"] == 196592 * MiB
    assert v["memory_used_bytes"] == 1024 * MiB
    assert v["memory_free_bytes"] == (196592 - 1024) * MiB
    assert v["temperature_celsius"] == 61.0  # no edge sensor: hotspot instead
    assert v["memory_temperature_celsius"] == 48.0
    assert v["power_watts"] == 512.0  # average is N/A on MI300; current is taken
    assert v["power_limit_watts"] == pytest.approx(750.0)  # from microwatts
    assert v["energy_joules_total"] == pytest.approx(15.25)  # 1e6 ticks x 15.25 uJ
    assert v["sm_clock_hertz"] == 2100e6 and v["memory_clock_hertz"] == 1300e6
    assert "fan_speed_ratio" not in v
    assert v["ecc_corrected_errors_total"] == 3.0 and v["ecc_uncorrected_errors_total"] == 0.0
    assert v["processes"] == 2.0
    assert set(v) <= catalogue.keys("gpu")
    p0, p1 = g.processes
    assert (p0.pid, p0.memory_bytes, p0.command) == (4242, 2 * 2**30, "python")  # VRAM, not total
    assert (p1.pid, p1.memory_bytes, p1.command) == (4343, 2**20, "")

    other = gpus[1].values
    assert other["temperature_celsius"] == 52.0  # edge where the sensor exists
    assert other["fan_speed_ratio"] == pytest.approx(128 / 255)


def test_one_failing_field_is_left_out() -> None:
    gpus = opened(FakeAmdSmi(fail={"amdsmi_get_gpu_activity", "amdsmi_get_energy_count"})).sample()
    v = gpus[0].values
    assert "utilization_ratio" not in v and "memory_bandwidth_utilization_ratio" not in v
    assert "energy_joules_total" not in v
    assert v["power_watts"] == 512.0 and v["temperature_celsius"] == 61.0 and v["up"] == 1.0


def test_failing_identity_still_gives_a_stable_name() -> None:
    lib = FakeAmdSmi(fail={"amdsmi_get_gpu_device_uuid", "amdsmi_get_gpu_asic_info"})
    g = opened(lib).sample()[1]
    assert g.uuid == "0000:0d:00.0" and g.model == "AMD GPU"


def test_a_device_that_answers_nothing_is_down() -> None:
    b = opened(FakeAmdSmi())
    b._lib.fail = {n for n in dir(FakeAmdSmi) if n.startswith("amdsmi_")}  # the GPU fell off
    gpus = b.sample()
    assert [g.up for g in gpus] == [False, False]
    assert gpus[0].values == {"up": 0.0} and gpus[0].model == "AMD Instinct MI300X"


def test_missing_enums_only_lose_their_fields() -> None:
    lib = FakeAmdSmi()
    lib.AmdSmiClkType = None  # type: ignore[assignment]  # an amdsmi without clock enums
    v = opened(lib).sample()[0].values
    assert "sm_clock_hertz" not in v and v["power_watts"] == 512.0


def test_close_shuts_the_library_down_once() -> None:
    lib = FakeAmdSmi()
    b = opened(lib)
    b.close()
    b.close()
    assert lib.shut_down == 1


def test_init_failure_is_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="amdgpu driver"):
        opened(FakeAmdSmi(init_error=True))


def test_no_gpus_is_unavailable_and_shuts_down() -> None:
    lib = FakeAmdSmi(gpus=0)
    with pytest.raises(BackendUnavailable, match="no AMD GPUs"):
        opened(lib)
    assert lib.shut_down == 1


def test_missing_package_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import amdsmi -> ImportError
    with pytest.raises(BackendUnavailable) as e:
        AmdSmiBackend().open()
    assert str(e.value) == "AMD ROCm library (libamd_smi) not found: install ROCm, or use --backend sim"


def test_package_without_rocm_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real package raises KeyError('libamd_smi.so') at import on a host without ROCm.
    pkg = tmp_path / "amdsmi"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise KeyError('libamd_smi.so')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    with pytest.raises(BackendUnavailable, match="libamd_smi"):
        AmdSmiBackend().open()
    assert "amdsmi" not in sys.modules


# ---- PCIe replays and XGMI links ---------------------------------------------------------------
def test_pcie_replays_and_xgmi_links() -> None:
    lib = FakeAmdSmi()
    b = opened(lib)
    now = [100.0]
    b._links._clock = lambda: now[0]
    g0, g1 = b.sample()
    assert g0.values["pcie_replays_total"] == 5.0
    assert g1.values["pcie_replays_total"] == 2.0  # from amdsmi_get_pcie_info where the counter call fails
    assert [x.link for x in g0.links] == list(range(7)) and g1.links == []
    link = g0.links[1].values
    assert link == {"up": 1.0, "transmit_bytes_total": 4000 * 1024.0, "receive_bytes_total": 2000 * 1024.0,
                    "speed_bytes_per_second": 64e9}
    assert set(link) <= catalogue.keys("gpu_link")
    assert g0.values["nvlink_links_active"] == 7.0
    assert g0.values["nvlink_transmit_bytes_total"] == sum(2000 * (n + 1) for n in range(7)) * 1024.0
    # 1 s later link 0 wrote 16 GB: a quarter of its 64 GB/s
    lib.xgmi_write[0] += int(16e9 / 1024)
    now[0] = 101.0
    again = b.sample()[0]
    assert again.links[0].values["utilization_ratio"] == pytest.approx(0.25, rel=1e-6)
    assert again.links[1].values["utilization_ratio"] == 0.0


def test_failing_link_and_replay_readings_are_absent() -> None:
    lib = FakeAmdSmi(fail={"amdsmi_get_gpu_metrics_info", "amdsmi_get_gpu_pci_replay_counter",
                           "amdsmi_get_pcie_info"})
    g = opened(lib).sample()[0]
    assert g.links == [] and "pcie_replays_total" not in g.values and "nvlink_links_active" not in g.values
    assert g.up and g.values["power_watts"] == 512.0
