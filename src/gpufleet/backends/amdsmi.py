"""AMD accelerators through AMD SMI (`pip install gpufleet[amd]`, needs ROCm's libamd_smi).

The `amdsmi` Python package is imported inside open(), never at module import: it raises
(KeyError 'libamd_smi.so', OSError, ...) when ROCm is absent, and the agent must keep
running with host metrics. Every field is read on its own; one that fails (unsupported on
this ASIC, permission, driver hiccup) is left out, like the NVML backend does.

Units amdsmi returns, converted to the catalogue's base units:
activity in percent; VRAM usage in MiB; temperatures in C; socket power in W; power cap
in microwatts; energy as a counter times its resolution in microjoules; clocks in MHz;
fan speed as a value out of a per-sensor maximum; process memory in bytes.

Also: the PCIe replay counter and XGMI links (amdsmi_links.py).

Not read: PCIe throughput. amdsmi_get_gpu_pci_throughput makes the driver measure for a
full second inside the call, which would stall the agent's 10 ms collection.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..snapshot import Gpu, GpuProcess
from .amdsmi_links import AmdLinks
from .base import BackendUnavailable

NOT_FOUND = "AMD ROCm library (libamd_smi) not found: install ROCm, or use --backend sim"
MiB = 1024 * 1024


def _import_amdsmi() -> Any:
    return importlib.import_module("amdsmi")


def _num(x: object) -> float | None:
    """A reading as float; amdsmi reports unsupported values as "N/A" strings."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


class AmdSmiBackend:
    name = "amdsmi"

    def __init__(self, lib: Any | None = None) -> None:
        self._lib = lib
        self._handles: list[Any] = []
        self._static: list[tuple[str, str, dict[str, str]]] = []  # uuid, model, info
        self._open = False
        self._links = AmdLinks()

    # ---- Backend protocol -------------------------------------------------------------
    def open(self) -> None:
        lib = self._lib
        if lib is None:
            try:
                lib = _import_amdsmi()
            except Exception as e:  # KeyError / OSError / ImportError: no usable ROCm here
                raise BackendUnavailable(NOT_FOUND) from e
        try:
            lib.amdsmi_init()
        except Exception as e:
            raise BackendUnavailable(f"AMD SMI could not start ({e}): is the amdgpu driver loaded?") from e
        try:
            handles = list(lib.amdsmi_get_processor_handles())
        except Exception as e:
            self._shutdown(lib)
            raise BackendUnavailable(f"AMD SMI could not list GPUs ({e})") from e
        if not handles:
            self._shutdown(lib)
            raise BackendUnavailable("AMD SMI found no AMD GPUs on this node")
        self._lib = lib
        self._handles = handles
        self._static = [self._identity(i, h) for i, h in enumerate(handles)]
        self._open = True

    def close(self) -> None:
        if self._open:
            self._shutdown(self._lib)
            self._open = False

    def sample(self) -> list[Gpu]:
        return [self._sample_one(i, h) for i, h in enumerate(self._handles)]

    # ---- internals ----------------------------------------------------------------------
    @staticmethod
    def _shutdown(lib: Any) -> None:
        try:
            lib.amdsmi_shut_down()
        except Exception:
            pass  # nothing useful to do about a failing shutdown

    def _get(self, fn: str, *args: Any) -> Any:
        """Call lib.<fn>(*args); None when the library lacks it or it fails for this device."""
        try:
            return getattr(self._lib, fn)(*args)
        except Exception:
            return None

    def _enum(self, enum: str, member: str) -> Any:
        try:
            return getattr(getattr(self._lib, enum), member)
        except AttributeError:
            return None

    def _identity(self, index: int, h: Any) -> tuple[str, str, dict[str, str]]:
        asic = self._get("amdsmi_get_gpu_asic_info", h) or {}
        bdf = self._get("amdsmi_get_gpu_device_bdf", h)
        uuid = self._get("amdsmi_get_gpu_device_uuid", h) or ""
        model = str(asic.get("market_name") or "AMD GPU")
        info: dict[str, str] = {"type": "GPU"}  # gpufleet_gpu_info{type}: all-smi's GPU/NPU/TPU
        if bdf:
            info["pci_bus_id"] = str(bdf)
        serial = asic.get("asic_serial")
        if serial and serial != "N/A":
            info["serial"] = str(serial)
        driver = self._get("amdsmi_get_gpu_driver_info", h) or {}
        if driver.get("driver_version") not in (None, "", "N/A"):
            info["driver_version"] = str(driver["driver_version"])
        vbios = self._get("amdsmi_get_gpu_vbios_info", h) or {}
        if vbios.get("version") not in (None, "", "N/A"):
            info["vbios_version"] = str(vbios["version"])
        # A device without a readable UUID still needs a stable identity: its PCI address.
        return str(uuid or bdf or f"amd-{index}"), model, info

    def _sample_one(self, index: int, h: Any) -> Gpu:
        uuid, model, info = self._static[index]
        v: dict[str, float] = {}
        put = self._put

        act = self._get("amdsmi_get_gpu_activity", h) or {}
        put(v, "utilization_ratio", act.get("gfx_activity"), 0.01)
        put(v, "memory_bandwidth_utilization_ratio", act.get("umc_activity"), 0.01)

        vram = self._get("amdsmi_get_gpu_vram_usage", h) or {}
        total, used = _num(vram.get("vram_total")), _num(vram.get("vram_used"))
        if total is not None:
            v["memory_total_bytes"] = total * MiB
        if used is not None:
            v["memory_used_bytes"] = used * MiB
            if total is not None:
                v["memory_free_bytes"] = max(0.0, total - used) * MiB

        self._temperatures(v, h)

        pwr = self._get("amdsmi_get_power_info", h) or {}
        # Which key carries the live reading depends on the ASIC generation (MI300 fills
        # current_socket_power, older parts average_socket_power); take the first real one.
        for key in ("current_socket_power", "average_socket_power", "socket_power"):
            w = _num(pwr.get(key))
            if w is not None and w > 0:
                v["power_watts"] = w
                break
        cap = self._get("amdsmi_get_power_cap_info", h) or {}
        put(v, "power_limit_watts", cap.get("power_cap"), 1e-6)

        energy = self._get("amdsmi_get_energy_count", h) or {}
        # amdsmi >= 6.1 names the counter energy_accumulator; 6.0 called it power.
        acc = _num(energy.get("energy_accumulator", energy.get("power")))
        res = _num(energy.get("counter_resolution"))
        if acc is not None and res is not None:
            v["energy_joules_total"] = acc * res * 1e-6

        for key, clk in (("sm_clock_hertz", "GFX"), ("memory_clock_hertz", "MEM")):
            kind = self._enum("AmdSmiClkType", clk)
            if kind is not None:
                c = self._get("amdsmi_get_clock_info", h, kind) or {}
                put(v, key, c.get("clk"), 1e6)

        speed = _num(self._get("amdsmi_get_gpu_fan_speed", h, 0))
        top = _num(self._get("amdsmi_get_gpu_fan_speed_max", h, 0))
        if speed is not None and top:
            v["fan_speed_ratio"] = min(1.0, max(0.0, speed / top))

        ecc = self._get("amdsmi_get_gpu_total_ecc_count", h) or {}
        put(v, "ecc_corrected_errors_total", ecc.get("correctable_count"))
        put(v, "ecc_uncorrected_errors_total", ecc.get("uncorrectable_count"))

        procs = self._processes(h)
        if procs is not None:
            v["processes"] = float(len(procs))
        links = self._links.read(self._get, index, h, v)

        if not v:
            # Nothing answered at all: the device is gone (reset, fell off the bus).
            return Gpu(index=index, uuid=uuid, model=model, vendor="amd", up=False,
                       info=dict(info), values={"up": 0.0})
        v["up"] = 1.0
        return Gpu(index=index, uuid=uuid, model=model, vendor="amd", info=dict(info),
                   values=v, processes=procs or [], links=links)

    @staticmethod
    def _put(v: dict[str, float], key: str, raw: object, scale: float = 1.0) -> None:
        x = _num(raw)
        if x is not None:
            v[key] = x * scale

    def _temperatures(self, v: dict[str, float], h: Any) -> None:
        current = self._enum("AmdSmiTemperatureMetric", "CURRENT")
        if current is None:
            return

        def read(sensor: str) -> float | None:
            kind = self._enum("AmdSmiTemperatureType", sensor)
            if kind is None:
                return None
            t = _num(self._get("amdsmi_get_temp_metric", h, kind, current))
            # Some ASICs answer 0 for a sensor they lack (MI300 has no edge sensor).
            return t if t is not None and t > 0 else None

        die = read("EDGE")
        if die is None:
            die = read("HOTSPOT")
        if die is not None:
            v["temperature_celsius"] = die
        mem = read("VRAM")
        if mem is not None:
            v["memory_temperature_celsius"] = mem

    def _processes(self, h: Any) -> list[GpuProcess] | None:
        raw = self._get("amdsmi_get_gpu_process_list", h)
        if raw is None:
            return None
        out: list[GpuProcess] = []
        for p in raw:
            try:
                out.append(self._process(p))
            except Exception:
                continue  # a process that vanished mid-read is simply not listed
        return out

    @staticmethod
    def _process(p: dict[str, Any]) -> GpuProcess:
        usage: dict[str, Any] = p.get("memory_usage") or {}
        mem = _num(usage.get("vram_mem"))
        if mem is None:
            mem = _num(p.get("mem"))
        name = p.get("name")
        return GpuProcess(pid=int(p["pid"]), memory_bytes=int(mem) if mem is not None else None,
                          command="" if name in (None, "N/A") else str(name))

