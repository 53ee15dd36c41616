"""Simulator profiles: which accelerators a simulated node has and how they behave.

A profile is a node shape (`8xH100`, `4xA100-mig`, ...). Its `GpuModel` carries the figures
the physics in sim.py needs (power range, temperatures, clocks) and the capability flags
that decide which catalogue keys a real device of that model reports: ECC only where the
hardware has it, GPM activity fields only on Hopper, fans only on boards that have their
own, P-states, throttle bitmasks and XIDs only on NVIDIA. Numbers are the vendors' public
specifications, rounded; idle/load temperatures are typical readings, not limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GpuModel:
    name: str  # as the vendor library reports it (nvmlDeviceGetName / asic market name)
    vendor: str  # "nvidia" | "amd"
    memory_bytes: int
    power_limit_w: float
    idle_power_w: float
    sm_clock_mhz: tuple[int, int]  # (idle, max boost)
    memory_clock_mhz: tuple[int, int]  # (idle, max); HBM stays at max
    temp_c: tuple[float, float]  # (idle, at the power limit), steady state
    thermal_tau_s: float  # how fast the die follows power (heat-sink mass)
    pcie_max_bytes_per_s: float
    slowdown_temp_c: float = 87.0
    ecc: bool = True
    gpm: bool = False  # Hopper GPM: engine/SM/tensor/DRAM activity ratios
    fan: bool = False  # only boards with their own fans report one
    hbm: bool = True  # HBM parts report a memory temperature; GDDR parts do not
    mig_capable: bool = False
    links: int = 0  # NVLink (XGMI on AMD) links to other GPUs
    link_bytes_per_s: float = 0.0  # per link and direction
    row_remap: bool = True  # Ampere and newer repair memory by row remapping; older ones retire pages
    vgpu: bool = False  # a vGPU seen from its guest VM: reports its license state
    driver_version: str = "550.90.07"
    vbios_version: str = "96.00.99.00.01"


@dataclass(frozen=True, slots=True)
class MigSlice:
    """One MIG GPU instance: profile name, placement id, compute and memory slices."""

    profile: str
    gpu_instance: int
    compute_slices: int  # of 7 on A100/H100
    memory_slices: int  # of 8


@dataclass(frozen=True, slots=True)
class Faults:
    """A node in trouble, for alert demos and tests: more random faults, and GPUs with a role."""

    rate: float = 25.0  # multiplier on the random fault rates (ECC errors, XIDs)
    failing_memory: tuple[int, ...] = ()  # keep failing: row remaps pile up, then a remap fails
    flaky_links: tuple[int, ...] = ()  # NVLink 0 of these throws CRC and replay errors
    hot: tuple[int, ...] = ()  # poor airflow: runs 18 C hotter, so it throttles under load


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    gpus: int
    model: GpuModel | None
    # MIG layout per GPU index (cycled when shorter than `gpus`); empty = MIG off.
    mig: tuple[tuple[MigSlice, ...], ...] = ()
    # Host figures a simulated node reports (read by the host collector through
    # CollectContext.options so a demo fleet looks like real servers).
    host: dict[str, float] = field(default_factory=dict)
    faults: Faults | None = None


H100_SXM = GpuModel(
    name="NVIDIA H100 80GB HBM3", vendor="nvidia", memory_bytes=81559 * MiB,
    power_limit_w=700.0, idle_power_w=72.0, sm_clock_mhz=(345, 1980), memory_clock_mhz=(2619, 2619),
    temp_c=(31.0, 74.0), thermal_tau_s=75.0, pcie_max_bytes_per_s=64e9, gpm=True, mig_capable=True,
    links=18, link_bytes_per_s=25e9,
)
A100_SXM = GpuModel(
    name="NVIDIA A100-SXM4-80GB", vendor="nvidia", memory_bytes=81920 * MiB,
    power_limit_w=400.0, idle_power_w=62.0, sm_clock_mhz=(210, 1410), memory_clock_mhz=(1593, 1593),
    temp_c=(33.0, 70.0), thermal_tau_s=70.0, pcie_max_bytes_per_s=32e9, mig_capable=True,
    links=12, link_bytes_per_s=25e9, driver_version="535.183.01", vbios_version="92.00.36.00.02",
)
A100_VGPU = GpuModel(
    name="GRID A100-40C", vendor="nvidia", memory_bytes=40960 * MiB,
    power_limit_w=400.0, idle_power_w=62.0, sm_clock_mhz=(210, 1410), memory_clock_mhz=(1593, 1593),
    temp_c=(33.0, 70.0), thermal_tau_s=70.0, pcie_max_bytes_per_s=32e9, vgpu=True,
    driver_version="535.183.06", vbios_version="92.00.36.00.02",
)
V100_SXM = GpuModel(
    name="Tesla V100-SXM2-32GB", vendor="nvidia", memory_bytes=32768 * MiB,
    power_limit_w=300.0, idle_power_w=42.0, sm_clock_mhz=(135, 1530), memory_clock_mhz=(877, 877),
    temp_c=(32.0, 68.0), thermal_tau_s=60.0, pcie_max_bytes_per_s=16e9, links=6, link_bytes_per_s=25e9,
    row_remap=False, driver_version="535.183.01", vbios_version="88.00.98.00.01",
)
L40S = GpuModel(
    name="NVIDIA L40S", vendor="nvidia", memory_bytes=46068 * MiB,
    power_limit_w=350.0, idle_power_w=36.0, sm_clock_mhz=(210, 2520), memory_clock_mhz=(405, 9001),
    temp_c=(34.0, 79.0), thermal_tau_s=50.0, pcie_max_bytes_per_s=32e9, hbm=False,
    vbios_version="95.02.66.00.02",
)
RTX4090 = GpuModel(
    name="NVIDIA GeForce RTX 4090", vendor="nvidia", memory_bytes=24564 * MiB,
    power_limit_w=450.0, idle_power_w=21.0, sm_clock_mhz=(210, 2520), memory_clock_mhz=(405, 10501),
    temp_c=(36.0, 72.0), thermal_tau_s=40.0, pcie_max_bytes_per_s=32e9, ecc=False, fan=True, hbm=False,
    vbios_version="95.02.18.80.5F",
)
MI300X = GpuModel(
    name="AMD Instinct MI300X", vendor="amd", memory_bytes=196592 * MiB,
    power_limit_w=750.0, idle_power_w=140.0, sm_clock_mhz=(132, 2100), memory_clock_mhz=(1300, 1300),
    temp_c=(40.0, 86.0), thermal_tau_s=80.0, pcie_max_bytes_per_s=64e9, slowdown_temp_c=100.0,
    links=7, link_bytes_per_s=64e9, driver_version="6.8.5", vbios_version="113-M3000100-102",
)

# A100 80GB MIG layouts (placement ids as nvidia-smi shows them): mixed, all-small, two big.
_MIG_MIXED = (
    MigSlice("3g.40gb", 1, 3, 4), MigSlice("2g.20gb", 5, 2, 2),
    MigSlice("1g.10gb", 13, 1, 1), MigSlice("1g.10gb", 14, 1, 1),
)
_MIG_SMALL = tuple(MigSlice("1g.10gb", gi, 1, 1) for gi in range(7, 14))
_MIG_HALVES = (MigSlice("4g.40gb", 1, 4, 4), MigSlice("3g.40gb", 2, 3, 4))

_SERVER = {"cpu_cores": 224.0, "memory_total_bytes": 2048.0 * 1024**3}
_WORKSTATION = {"cpu_cores": 32.0, "memory_total_bytes": 128.0 * 1024**3}

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("8xH100", "HGX H100: 8x H100 80GB HBM3 SXM, 700 W, NVLink", 8, H100_SXM, host=_SERVER),
        Profile("8xH100-faults", "HGX H100 in trouble: many ECC errors and XIDs; GPU 3's memory failing "
                "(row remaps, then a remap failure), GPU 5's NVLink 0 flaky, GPU 1 running hot", 8, H100_SXM,
                host=_SERVER, faults=Faults(failing_memory=(3,), flaky_links=(5,), hot=(1,))),
        Profile("8xA100", "HGX A100: 8x A100 80GB SXM, 400 W", 8, A100_SXM, host=_SERVER),
        Profile("2xA100-vgpu", "A VM with 2 licensed vGPUs (A100-40C profile): vGPU license state, no NVLink", 2,
                A100_VGPU, host={"cpu_cores": 32.0, "memory_total_bytes": 256.0 * 1024**3}),
        Profile("4xV100", "4x Tesla V100 32GB SXM2, NVLink 2 (page retirement instead of row remapping)", 4,
                V100_SXM, host={"cpu_cores": 80.0, "memory_total_bytes": 512.0 * 1024**3}),
        Profile("4xA100-mig", "4x A100 80GB with MIG on (3g/2g/1g, 7x1g, 4g+3g layouts)", 4, A100_SXM,
                mig=(_MIG_MIXED, _MIG_MIXED, _MIG_SMALL, _MIG_HALVES),
                host={"cpu_cores": 128.0, "memory_total_bytes": 1024.0 * 1024**3}),
        Profile("4xL40S", "4x L40S 48GB GDDR6, passively cooled, 350 W", 4, L40S,
                host={"cpu_cores": 64.0, "memory_total_bytes": 512.0 * 1024**3}),
        Profile("2xRTX4090", "Workstation: 2x GeForce RTX 4090 24GB, fans, no ECC", 2, RTX4090, host=_WORKSTATION),
        Profile("2xMI300X", "2x AMD Instinct MI300X 192GB HBM3, 750 W", 2, MI300X,
                host={"cpu_cores": 192.0, "memory_total_bytes": 1536.0 * 1024**3}),
        Profile("cpu-only", "No accelerators: host metrics only", 0, None,
                host={"cpu_cores": 64.0, "memory_total_bytes": 256.0 * 1024**3}),
    )
}

# A mixed fleet for `gpufleet up --demo`-style runs: (node name, profile).
DEMO_FLEET: tuple[tuple[str, str], ...] = (
    ("hgx-h100-01", "8xH100"),
    ("hgx-h100-02", "8xH100"),
    ("hgx-a100-01", "8xA100"),
    ("mig-a100-01", "4xA100-mig"),
    ("l40s-01", "4xL40S"),
    ("mi300x-01", "2xMI300X"),
    ("ws-4090-01", "2xRTX4090"),
    ("login-01", "cpu-only"),
)


def profile_names() -> list[str]:
    return list(PROFILES)


def get_profile(name: str) -> Profile:
    """The named profile; ValueError names the unknown one and lists the valid ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown simulator profile {name!r}: choose one of {', '.join(PROFILES)}"
        ) from None
