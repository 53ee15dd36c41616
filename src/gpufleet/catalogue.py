"""The metric catalogue: the one place a metric name is spelled.

Every series gpufleet exports, stores, charts or alerts on is one `Metric` entry here. A
metric belongs to a *scope* (node, cpu, disk, net, gpu, mig, gpu_process, user, collector,
...); scopes.py says which records of a `NodeSnapshot` carry it and which identity labels they
have. A record stores the value under `Metric.key` in its `values` dict, so adding a
metric is one entry here plus the code that fills that key.

Compatibility names (`--compat dcgm`, `--compat all-smi`, ...) live beside each entry, with the
scale that turns our base unit into theirs (e.g. bytes -> MiB for DCGM_FI_DEV_FB_USED) and the
type that exporter gives the series; gpufleet/compat/ has one module per mode that renders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .scopes import SCOPES

Kind = Literal["gauge", "counter", "info"]
Scope = str  # a key of scopes.SCOPES

PREFIX = "gpufleet_"

# Derived from scopes.SCOPES (the one table of scopes): identity labels each scope's records
# carry (besides `node`, which every series has), and the stem of its names (gpufleet_<stem>_<key>).
SCOPE_LABELS: dict[str, tuple[str, ...]] = {name: s.labels for name, s in SCOPES.items()}
SCOPE_STEM: dict[str, str] = {name: s.stem for name, s in SCOPES.items()}


@dataclass(frozen=True, slots=True)
class Compat:
    """Another exporter's name for a metric: value_theirs = value_ours * scale, typed as that
    exporter types it (dcgm-exporter's energy and ECC totals are counters without `_total`)."""

    name: str
    help: str
    scale: float = 1.0
    type: Literal["gauge", "counter"] = "gauge"


@dataclass(frozen=True, slots=True)
class Metric:
    scope: Scope
    key: str
    kind: Kind
    help: str
    unit: str = ""
    # Labels beyond the scope's identity labels. For `info` metrics they are read from the
    # record's `info` dict; for others from the record's `labels` (rarely needed).
    labels: tuple[str, ...] = ()
    dcgm: Compat | None = None
    allsmi: Compat | None = None
    # Human-facing: how the UI shows it ("percent" turns a ratio into %).
    display: str = ""

    @property
    def name(self) -> str:
        return f"{PREFIX}{SCOPE_STEM[self.scope]}_{self.key}"

    @property
    def family(self) -> str:
        """OpenMetrics family name: counters drop their `_total` suffix."""
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        if self.kind == "info" and self.name.endswith("_info"):
            return self.name[: -len("_info")]
        return self.name


MiB = 1.0 / (1024 * 1024)

CATALOGUE: tuple[Metric, ...] = (
    # ---- node: identity and host totals -------------------------------------------------
    Metric("node", "info", "info", "Node metadata: OS, kernel, CPU model, agent backend.",
           labels=("hostname", "os", "os_version", "kernel", "cpu_model", "arch", "backend")),
    Metric("node", "boot_time_seconds", "gauge", "Unix time the node booted.", "seconds"),
    Metric("node", "uptime_seconds", "gauge", "Seconds since the node booted.", "seconds"),
    # (all-smi's all_smi_cpu_core_count / _thread_count are left out: promtool's lint rejects a
    # gauge named `_count`, and no dashboard we know reads them)
    Metric("node", "cpu_cores", "gauge", "Logical CPU cores.", display="count"),
    Metric("node", "cpu_physical_cores", "gauge", "Physical CPU cores.", display="count"),
    Metric("node", "cpu_utilization_ratio", "gauge", "Busy share of all CPU cores (0-1).", "ratio",
           allsmi=Compat("all_smi_cpu_utilization", "CPU utilization percentage", 100.0), display="percent"),
    Metric("node", "cpu_frequency_hertz", "gauge", "Current mean CPU frequency.", "hertz",
           allsmi=Compat("all_smi_cpu_frequency_mhz", "CPU frequency in MHz", 1e-6)),
    Metric("node", "load1", "gauge", "1-minute load average."),
    Metric("node", "load5", "gauge", "5-minute load average."),
    Metric("node", "load15", "gauge", "15-minute load average."),
    Metric("node", "memory_total_bytes", "gauge", "Physical memory.", "bytes",
           allsmi=Compat("all_smi_memory_total_bytes", "Total system memory in bytes")),
    Metric("node", "memory_used_bytes", "gauge", "Memory in use (total - available).", "bytes",
           allsmi=Compat("all_smi_memory_used_bytes", "Used system memory in bytes")),
    Metric("node", "memory_available_bytes", "gauge", "Memory available to new work.", "bytes",
           allsmi=Compat("all_smi_memory_available_bytes", "Available system memory in bytes")),
    Metric("node", "memory_free_bytes", "gauge", "Memory not used at all (MemFree; page cache is not free).",
           "bytes"),
    Metric("node", "memory_buffers_bytes", "gauge", "Memory in block-device buffers (Buffers).", "bytes"),
    Metric("node", "memory_cached_bytes", "gauge", "Memory in the page cache (Cached).", "bytes"),
    Metric("node", "memory_slab_reclaimable_bytes", "gauge", "Kernel slab memory that can be reclaimed (SReclaimable).",
           "bytes"),
    Metric("node", "swap_total_bytes", "gauge", "Swap space.", "bytes",
           allsmi=Compat("all_smi_swap_total_bytes", "Total swap space in bytes")),
    Metric("node", "swap_used_bytes", "gauge", "Swap in use.", "bytes",
           allsmi=Compat("all_smi_swap_used_bytes", "Used swap space in bytes")),
    Metric("node", "processes", "gauge", "Processes running on the node.", display="count"),
    Metric("node", "users_logged_in", "gauge", "Login sessions on the node.", display="count"),
    Metric("node", "gpus", "gauge", "Accelerators the agent sees.", display="count"),
    Metric("node", "gpus_free", "gauge", "Answering accelerators nobody holds (no process, no allocation).",
           display="count"),
    Metric("node", "gpus_held", "gauge", "Answering accelerators with at least one slot held (in use or idle).",
           display="count"),
    Metric("node", "gpu_equivalents_capacity", "gauge",
           "GPU capacity of the answering accelerators in GPU-equivalents (a MIG slice counts its share)."),
    Metric("node", "gpu_equivalents_free", "gauge", "GPU-equivalents nobody holds."),
    Metric("node", "gpu_equivalents_held", "gauge", "GPU-equivalents held, in use or idle."),
    Metric("node", "gpu_equivalents_idle_held", "gauge",
           "GPU-equivalents held but idle (utilisation under the idle threshold): the waste."),
    Metric("node", "unmanaged_containers", "gauge",
           "Containers or pods using accelerators outside every allocation a configured source knows.",
           display="count"),
    # ---- per core ----------------------------------------------------------------------
    Metric("cpu", "utilization_ratio", "gauge", "Busy share of one logical CPU core (0-1).", "ratio",
           display="percent"),
    Metric("cpu", "frequency_hertz", "gauge", "Current frequency of one logical CPU core.", "hertz"),
    # Time per mode, read only with --compat node (node_cpu_seconds_total): 8 series per core that
    # nothing else needs, so they cost nothing unless asked for.
    *(Metric("cpu", f"{mode}_seconds_total", "counter",
             f"Seconds the core spent in {mode} mode since boot (collected with --compat node).", "seconds")
      for mode in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")),
    # ---- disks per mount ----------------------------------------------------------------
    Metric("disk", "size_bytes", "gauge", "Filesystem size.", "bytes",
           allsmi=Compat("all_smi_disk_total_bytes", "Total disk space in bytes")),
    Metric("disk", "used_bytes", "gauge", "Filesystem space used.", "bytes"),
    Metric("disk", "free_bytes", "gauge", "Filesystem space free to unprivileged users.", "bytes",
           allsmi=Compat("all_smi_disk_available_bytes", "Available disk space in bytes")),
    Metric("disk", "read_bytes_total", "counter", "Bytes read from the device.", "bytes"),
    Metric("disk", "written_bytes_total", "counter", "Bytes written to the device.", "bytes"),
    Metric("disk", "reads_total", "counter", "Read operations completed on the device."),
    Metric("disk", "writes_total", "counter", "Write operations completed on the device."),
    Metric("disk", "io_time_seconds_total", "counter", "Seconds the device spent doing I/O.", "seconds"),
    # ---- network per interface ----------------------------------------------------------
    Metric("net", "receive_bytes_total", "counter", "Bytes received.", "bytes"),
    Metric("net", "transmit_bytes_total", "counter", "Bytes sent.", "bytes"),
    Metric("net", "receive_packets_total", "counter", "Packets received."),
    Metric("net", "transmit_packets_total", "counter", "Packets sent."),
    Metric("net", "receive_errors_total", "counter", "Receive errors."),
    Metric("net", "transmit_errors_total", "counter", "Transmit errors."),
    Metric("net", "receive_drops_total", "counter", "Received packets dropped."),
    Metric("net", "transmit_drops_total", "counter", "Packets dropped on send."),
    # ---- accelerators -------------------------------------------------------------------
    Metric("gpu", "info", "info", "Accelerator metadata.",
           labels=("driver_version", "pci_bus_id", "serial", "vbios_version", "compute_mode", "mig_mode",
                   "type")),
    Metric("gpu", "up", "gauge", "1 while the accelerator answers, 0 when it is lost or fails."),
    Metric("gpu", "utilization_ratio", "gauge", "Share of time a kernel was running (0-1).", "ratio",
           dcgm=Compat("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", 100.0),
           allsmi=Compat("all_smi_gpu_utilization",
                         "GPU utilization percentage (omitted when the device reports no utilization)", 100.0), display="percent"),
    Metric("gpu", "memory_bandwidth_utilization_ratio", "gauge",
           "Share of time device memory was read or written (0-1).", "ratio",
           dcgm=Compat("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", 100.0), display="percent"),
    Metric("gpu", "memory_used_bytes", "gauge", "Device memory in use.", "bytes",
           dcgm=Compat("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", MiB),
           allsmi=Compat("all_smi_gpu_memory_used_bytes", "GPU memory used in bytes")),
    Metric("gpu", "memory_free_bytes", "gauge", "Device memory free.", "bytes",
           dcgm=Compat("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", MiB)),
    Metric("gpu", "memory_total_bytes", "gauge", "Device memory.", "bytes",
           allsmi=Compat("all_smi_gpu_memory_total_bytes", "GPU memory total in bytes")),
    Metric("gpu", "temperature_celsius", "gauge", "Die temperature.", "celsius",
           dcgm=Compat("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
           allsmi=Compat("all_smi_gpu_temperature_celsius",
                         "GPU temperature in celsius (omitted when no sensor reports one)")),
    Metric("gpu", "memory_temperature_celsius", "gauge", "Memory (HBM) temperature.", "celsius",
           dcgm=Compat("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).")),
    Metric("gpu", "fan_speed_ratio", "gauge", "Fan speed as a share of its maximum (0-1).", "ratio",
           dcgm=Compat("DCGM_FI_DEV_FAN_SPEED", "Fan speed (in %).", 100.0), display="percent"),
    Metric("gpu", "power_watts", "gauge", "Power draw.", "watts",
           dcgm=Compat("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
           allsmi=Compat("all_smi_gpu_power_consumption_watts",
                         "GPU power consumption in watts (omitted when the device reports no power)")),
    Metric("gpu", "power_limit_watts", "gauge", "Enforced power limit.", "watts",
           dcgm=Compat("DCGM_FI_DEV_POWER_MGMT_LIMIT", "Power management limit (in W)."),
           allsmi=Compat("all_smi_gpu_power_limit_current_watts", "Current power limit in watts")),
    Metric("gpu", "energy_joules_total", "counter", "Energy used since the driver loaded.", "joules",
           dcgm=Compat("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                       "Total energy consumption since boot (in mJ).", 1000.0, "counter"),
           allsmi=Compat("all_smi_energy_consumed_joules_total", "Cumulative energy consumption in Joules.",
                         type="counter")),
    Metric("gpu", "sm_clock_hertz", "gauge", "SM (shader) clock.", "hertz",
           dcgm=Compat("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", 1e-6),
           allsmi=Compat("all_smi_gpu_frequency_mhz",
                         "GPU frequency in MHz (omitted when the device exposes no clock probe)", 1e-6)),
    Metric("gpu", "memory_clock_hertz", "gauge", "Memory clock.", "hertz",
           dcgm=Compat("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", 1e-6)),
    Metric("gpu", "sm_clock_max_hertz", "gauge", "Maximum SM (shader) clock the device supports.", "hertz",
           allsmi=Compat("all_smi_gpu_clock_graphics_max_mhz", "Maximum graphics clock in MHz", 1e-6)),
    Metric("gpu", "memory_clock_max_hertz", "gauge", "Maximum memory clock the device supports.", "hertz",
           allsmi=Compat("all_smi_gpu_clock_memory_max_mhz", "Maximum memory clock in MHz", 1e-6)),
    Metric("gpu", "performance_state", "gauge", "Performance state (0 = P0, fastest, to 15).",
           allsmi=Compat("all_smi_gpu_performance_state",
                         "GPU performance state (0=P0 fastest, 15=P15 idlest; metric is omitted when the device "
                         "does not report a P-state)")),
    Metric("gpu", "pcie_transmit_bytes_per_second", "gauge", "PCIe throughput out of the device.",
           "bytes",
           dcgm=Compat("DCGM_FI_PROF_PCIE_TX_BYTES",
                       "PCIe bytes transmitted per second, headers and payload.")),
    Metric("gpu", "pcie_receive_bytes_per_second", "gauge", "PCIe throughput into the device.",
           "bytes",
           dcgm=Compat("DCGM_FI_PROF_PCIE_RX_BYTES",
                       "PCIe bytes received per second, headers and payload.")),
    Metric("gpu", "ecc_corrected_errors_total", "counter", "Corrected (single-bit) ECC errors, volatile.",
           dcgm=Compat("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.",
                       type="counter")),
    Metric("gpu", "ecc_uncorrected_errors_total", "counter", "Uncorrected (double-bit) ECC errors, volatile.",
           dcgm=Compat("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.",
                       type="counter")),
    Metric("gpu", "xid_errors_total", "counter", "XID errors reported by the driver since the agent started."),
    Metric("gpu", "last_xid", "gauge", "Code of the most recent XID error (0 when none).",
           dcgm=Compat("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.")),
    Metric("gpu", "clock_throttle_reasons", "gauge", "Bitmask of active clock throttle reasons (NVML encoding).",
           dcgm=Compat("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Current clock throttle reasons.")),
    Metric("gpu", "graphics_engine_active_ratio", "gauge",
           "Share of time the graphics or compute engine was active (0-1).", "ratio",
           dcgm=Compat("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active.")),
    Metric("gpu", "sm_active_ratio", "gauge", "Share of cycles an SM had at least one warp (0-1).", "ratio",
           dcgm=Compat("DCGM_FI_PROF_SM_ACTIVE", "The ratio of cycles an SM has at least 1 warp assigned.")),
    Metric("gpu", "sm_occupancy_ratio", "gauge", "Resident warps over the SM maximum (0-1).", "ratio",
           dcgm=Compat("DCGM_FI_PROF_SM_OCCUPANCY", "The ratio of number of warps resident on an SM."),
           allsmi=Compat("all_smi_gpu_sm_occupancy", "GPU SM occupancy (0.0-1.0)")),
    Metric("gpu", "tensor_active_ratio", "gauge", "Share of cycles the tensor cores were active (0-1).",
           "ratio", dcgm=Compat("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
                                "Ratio of cycles the tensor (HMMA) pipe is active.")),
    Metric("gpu", "dram_active_ratio", "gauge", "Share of cycles device memory was busy (0-1).", "ratio",
           dcgm=Compat("DCGM_FI_PROF_DRAM_ACTIVE", "Ratio of cycles the device memory interface is active."),
           allsmi=Compat("all_smi_gpu_memory_bandwidth_utilization", "GPU memory bandwidth utilization (0.0-1.0)")),
    Metric("gpu", "fp64_active_ratio", "gauge", "Share of cycles the FP64 pipe was active (0-1).", "ratio",
           display="percent",
           dcgm=Compat("DCGM_FI_PROF_PIPE_FP64_ACTIVE", "Ratio of cycles the fp64 pipes are active.")),
    Metric("gpu", "fp32_active_ratio", "gauge", "Share of cycles the FP32 pipe was active (0-1).", "ratio",
           display="percent",
           dcgm=Compat("DCGM_FI_PROF_PIPE_FP32_ACTIVE", "Ratio of cycles the fp32 pipes are active.")),
    Metric("gpu", "fp16_active_ratio", "gauge", "Share of cycles the FP16 pipe was active (0-1).", "ratio",
           display="percent",
           dcgm=Compat("DCGM_FI_PROF_PIPE_FP16_ACTIVE", "Ratio of cycles the fp16 pipes are active.")),
    Metric("gpu", "memory_reserved_bytes", "gauge",
           "Device memory the driver keeps for itself (neither used by work nor free).", "bytes",
           dcgm=Compat("DCGM_FI_DEV_FB_RESERVED", "Framebuffer memory reserved (in MiB).", 9.5367431640625e-07)),
    Metric("gpu", "encoder_utilization_ratio", "gauge", "Share of time the video encoder was busy (0-1).", "ratio",
           display="percent",
           dcgm=Compat("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).", 100.0)),
    Metric("gpu", "decoder_utilization_ratio", "gauge", "Share of time the video decoder was busy (0-1).", "ratio",
           display="percent",
           dcgm=Compat("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).", 100.0)),
    Metric("gpu", "vgpu_licensed", "gauge",
           "1 while this vGPU holds its license, 0 while unlicensed (absent where vGPU licensing does not apply).",
           dcgm=Compat("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "vGPU License status")),
    Metric("gpu", "pcie_replays_total", "counter",
           "PCIe packets the link had to resend after an error, since the driver loaded (a flaky link or riser).",
           dcgm=Compat("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries.", type="counter")),
    # Throttle (clock event) time by reason: NVML's violation counters, in seconds.
    Metric("gpu", "throttle_power_seconds_total", "counter",
           "Time clocks were held down by the power limit.", "seconds",
           dcgm=Compat("DCGM_FI_DEV_POWER_VIOLATION",
                       "Throttling duration due to power constraints (in us).",
                       1e6, type="counter")),
    Metric("gpu", "throttle_thermal_seconds_total", "counter",
           "Time clocks were held down by temperature.", "seconds",
           dcgm=Compat("DCGM_FI_DEV_THERMAL_VIOLATION",
                       "Throttling duration due to thermal constraints (in us).",
                       1e6, type="counter")),
    Metric("gpu", "throttle_sync_boost_seconds_total", "counter",
           "Time clocks were held down to stay in step with other GPUs (sync boost).", "seconds",
           dcgm=Compat("DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
                       "Throttling duration due to sync-boost constraints (in us).",
                       1e6, type="counter")),
    Metric("gpu", "throttle_board_limit_seconds_total", "counter",
           "Time clocks were held down by a board limit.", "seconds",
           dcgm=Compat("DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
                       "Throttling duration due to board limit constraints (in us).",
                       1e6, type="counter")),
    Metric("gpu", "throttle_low_utilization_seconds_total", "counter",
           "Time clocks were lowered because the GPU had little work.", "seconds",
           dcgm=Compat("DCGM_FI_DEV_LOW_UTIL_VIOLATION",
                       "Throttling duration due to low utilization (in us).",
                       1e6, type="counter")),
    Metric("gpu", "throttle_reliability_seconds_total", "counter",
           "Time clocks were held down for board reliability (voltage).", "seconds",
           dcgm=Compat("DCGM_FI_DEV_RELIABILITY_VIOLATION",
                       "Throttling duration due to reliability constraints (in us).",
                       1e6, type="counter")),
    # ECC and memory health. Volatile counts restart with the driver; aggregate ones are kept
    # on the board (inforom) for its whole life.
    Metric("gpu", "ecc_corrected_errors_aggregate_total", "counter",
           "Corrected (single-bit) ECC errors over the board's life.",
           dcgm=Compat("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
                       "Total number of single-bit persistent ECC errors.", type="counter")),
    Metric("gpu", "ecc_uncorrected_errors_aggregate_total", "counter",
           "Uncorrected (double-bit) ECC errors over the board's life.",
           dcgm=Compat("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
                       "Total number of double-bit persistent ECC errors.", type="counter")),
    Metric("gpu", "retired_pages_single_bit_total", "counter",
           "Memory pages retired after repeated single-bit ECC errors (page retirement, before Ampere).",
           dcgm=Compat("DCGM_FI_DEV_RETIRED_SBE",
                       "Total number of retired pages due to single-bit errors.", type="counter")),
    Metric("gpu", "retired_pages_double_bit_total", "counter",
           "Memory pages retired after a double-bit ECC error (page retirement, before Ampere).",
           dcgm=Compat("DCGM_FI_DEV_RETIRED_DBE",
                       "Total number of retired pages due to double-bit errors.", type="counter")),
    Metric("gpu", "retired_pages_pending", "gauge",
           "1 while a page waits to be retired: it takes effect at the next GPU reset or reboot.",
           dcgm=Compat("DCGM_FI_DEV_RETIRED_PENDING", "Total number of pages pending retirement.")),
    Metric("gpu", "remapped_rows_correctable_total", "counter",
           "Memory rows remapped after correctable errors (row remapping, Ampere and newer).",
           dcgm=Compat("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
                       "Number of remapped rows for correctable errors", type="counter")),
    Metric("gpu", "remapped_rows_uncorrectable_total", "counter",
           "Memory rows remapped after uncorrectable errors (row remapping, Ampere and newer).",
           dcgm=Compat("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
                       "Number of remapped rows for uncorrectable errors", type="counter")),
    Metric("gpu", "remapped_rows_pending", "gauge",
           "1 while a row remap waits for a GPU reset to take effect."),
    Metric("gpu", "remapped_rows_failure", "gauge",
           "1 when a row remap failed (no spare row left): the GPU needs service; drain it.",
           dcgm=Compat("DCGM_FI_DEV_ROW_REMAP_FAILURE", "Whether remapping of rows has failed")),
    # GPU-to-GPU links, summed over links (per link: the gpu_link scope). AMD's XGMI fills the same keys.
    Metric("gpu", "nvlink_links_active", "gauge", "NVLink (XGMI on AMD) links up.", display="count"),
    Metric("gpu", "nvlink_transmit_bytes_total", "counter", "Data sent over all NVLink (XGMI) links.", "bytes"),
    Metric("gpu", "nvlink_receive_bytes_total", "counter", "Data received over all NVLink (XGMI) links.", "bytes"),
    Metric("gpu", "nvlink_bytes_total", "counter", "Data sent and received over all NVLink (XGMI) links.", "bytes",
           dcgm=Compat("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
                       "Total number of NVLink bandwidth counters for all lanes.", type="counter")),
    Metric("gpu", "nvlink_crc_flit_errors_total", "counter", "NVLink flow-control (flit) CRC errors, all links.",
           dcgm=Compat("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
                       "Total number of NVLink flow-control CRC errors.", type="counter")),
    Metric("gpu", "nvlink_crc_data_errors_total", "counter", "NVLink data CRC errors, all links.",
           dcgm=Compat("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
                       "Total number of NVLink data CRC errors.", type="counter")),
    Metric("gpu", "nvlink_replay_errors_total", "counter", "NVLink transfers resent after an error, all links.",
           dcgm=Compat("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
                       "Total number of NVLink retries.", type="counter")),
    Metric("gpu", "nvlink_recovery_errors_total", "counter",
           "NVLink link recoveries (the link retrained after failing), all links.",
           dcgm=Compat("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
                       "Total number of NVLink recovery errors.", type="counter")),
    Metric("gpu", "processes", "gauge", "Processes using the accelerator.", display="count"),
    Metric("gpu", "mig_instances", "gauge", "MIG GPU instances configured (0 when MIG is off).", display="count"),
    # ---- GPU-to-GPU links (NVLink, XGMI), per link ---------------------------------------------
    Metric("gpu_link", "up", "gauge", "1 while the link is active, 0 while it is down."),
    Metric("gpu_link", "speed_bytes_per_second", "gauge", "Data rate the link can carry in each direction.",
           "bytes"),
    Metric("gpu_link", "transmit_bytes_total", "counter", "Data sent over the link.", "bytes"),
    Metric("gpu_link", "receive_bytes_total", "counter", "Data received over the link.", "bytes"),
    Metric("gpu_link", "utilization_ratio", "gauge",
           "Busier direction's data rate over the link's speed, since the previous collection (0-1).", "ratio",
           display="percent"),
    Metric("gpu_link", "crc_flit_errors_total", "counter", "Flow-control (flit) CRC errors on the link."),
    Metric("gpu_link", "crc_data_errors_total", "counter", "Data CRC errors on the link."),
    Metric("gpu_link", "replay_errors_total", "counter", "Transfers resent on the link after an error."),
    Metric("gpu_link", "recovery_errors_total", "counter", "Times the link retrained after failing."),
    # ---- MIG instances --------------------------------------------------------------------
    Metric("mig", "memory_used_bytes", "gauge", "Device memory used by the MIG instance.", "bytes",
           dcgm=Compat("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", MiB),
           allsmi=Compat("all_smi_mig_instance_memory_used_bytes",
                         "Per-MIG-instance framebuffer memory used in bytes")),
    Metric("mig", "memory_total_bytes", "gauge", "Device memory of the MIG instance.", "bytes",
           allsmi=Compat("all_smi_mig_instance_memory_total_bytes",
                         "Per-MIG-instance framebuffer memory total carve-out in bytes")),
    Metric("mig", "graphics_engine_active_ratio", "gauge",
           "Share of time the instance's engines were active (0-1).", "ratio",
           dcgm=Compat("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active.")),
    # ---- who uses each accelerator ----------------------------------------------------------
    Metric("gpu_process", "memory_used_bytes", "gauge", "Device memory used by one process.", "bytes",
           allsmi=Compat("all_smi_process_memory_used_bytes", "Process GPU memory used in bytes")),
    Metric("user", "gpu_memory_used_bytes", "gauge", "Device memory used by a user's processes.", "bytes"),
    Metric("user", "gpus_in_use", "gauge", "Accelerators on which a user has a process.", display="count"),
    Metric("user", "processes", "gauge", "Processes a user runs on the node.", display="count"),
    Metric("user", "cpu_utilization_ratio", "gauge",
           "CPU a user's processes use, in cores (1.0 = one core busy).", "ratio"),
    Metric("user", "memory_used_bytes", "gauge", "Resident memory of a user's processes.", "bytes"),
    Metric("user", "gpus_allocated", "gauge", "Accelerators or MIG slices a user holds (in use or idle).",
           display="count"),
    Metric("user", "gpu_equivalents", "gauge", "GPU-equivalents a user holds (a MIG slice counts its share)."),
    Metric("user", "gpu_equivalents_idle", "gauge", "GPU-equivalents a user holds while they are idle."),
    Metric("user", "held_gpu_utilization_ratio", "gauge",
           "Mean busy share of what a user holds, weighted by GPU-equivalents (0-1).", "ratio", display="percent"),
    Metric("node_containers", "gpu_containers", "gauge",
           "Containers and pods holding accelerators, by state (running, or stopped but still allocated).",
           display="count"),
    # ---- who holds each accelerator or MIG slice (one series per slot and holder) ---------------
    Metric("allocation", "info", "info", "Who holds a GPU or MIG slice: state, and what says so.",
           labels=("state", "source", "unmanaged")),
    Metric("allocation", "gpu_equivalents", "gauge",
           "GPU-equivalents of the slot this holder has (a shared slot is split evenly)."),
    # ---- the agent itself ---------------------------------------------------------------------
    Metric("collector", "duration_seconds", "gauge", "Time the collector took in the last collection.", "seconds"),
    Metric("collector", "success", "gauge", "1 if the collector succeeded in the last collection."),
    Metric("collector", "errors_total", "counter", "Collector failures since the agent started."),
    Metric("agent", "build_info", "info", "Agent version.", labels=("version", "python_version")),
    Metric("agent", "collections_total", "counter", "Collections since the agent started."),
    Metric("agent", "last_collection_timestamp_seconds", "gauge", "Unix time of the last collection.", "seconds"),
    Metric("agent", "collection_duration_seconds", "gauge", "Wall time of the last full collection.", "seconds"),
    Metric("agent", "collection_cpu_seconds", "gauge", "CPU time of the last full collection.", "seconds"),
    Metric("agent", "push_snapshots_total", "counter", "Snapshots the hub accepted from this agent."),
    Metric("agent", "push_failures_total", "counter", "Push attempts that failed (hub unreachable or refusing)."),
    Metric("agent", "push_dropped_total", "counter", "Snapshots dropped: spool full or refused as malformed."),
    Metric("agent", "push_backlog", "gauge", "Snapshots spooled on disk, waiting for the hub.", display="count"),
    Metric("agent", "push_backlog_bytes", "gauge", "Bytes spooled on disk, waiting for the hub.", "bytes"),
    Metric("agent", "hub_up", "gauge", "1 while the last push to the hub succeeded."),
    Metric("agent", "clock_skew_seconds", "gauge",
           "This node's clock minus the hub's, measured by the hub at each push (stored by the hub only).",
           "seconds"),
    # ---- the hub itself ------------------------------------------------------------------------
    Metric("hub", "build_info", "info", "Hub version.", labels=("version", "python_version")),
    Metric("hub", "ingest_snapshots_total", "counter", "Snapshots stored (pushed or pulled)."),
    Metric("hub", "ingest_samples_total", "counter", "Samples stored."),
    Metric("hub", "ingest_duplicates_total", "counter", "Snapshots dropped as already stored (resent pushes)."),
    Metric("hub", "ingest_rejected_total", "counter", "Pushes refused: bad credential, malformed or too large."),
    Metric("hub", "ingest_lag_seconds", "gauge", "Age of the newest snapshot when it was stored (last push).", "seconds"),
    Metric("hub", "ingest_lag_max_seconds", "gauge", "Largest ingest lag of a live snapshot in the last minute.", "seconds"),
    Metric("hub", "nodes_up", "gauge", "Nodes sending data.", display="count"),
    Metric("hub", "nodes_stale", "gauge", "Nodes silent for 3 intervals.", display="count"),
    Metric("hub", "nodes_down", "gauge", "Nodes silent for long or unreachable.", display="count"),
    Metric("hub", "nodes_moved", "gauge",
           "Nodes silent here that another hub sharing this hub's --history hears.", display="count"),
    Metric("hub", "store_bytes", "gauge", "Bytes the embedded store takes on disk.", "bytes"),
    Metric("hub", "store_series", "gauge", "Series in the embedded store.", display="count"),
    Metric("hub", "store_errors_total", "counter", "Store operations that failed."),
    Metric("hub", "store_damaged_total", "counter",
           "Damaged store files or records met since the hub started (each set aside and logged once)."),
    Metric("hub", "scrape_errors_total", "counter", "Pull scrapes of exporters that failed."),
    Metric("hub", "remote_write_samples_total", "counter", "Samples sent to the remote-write receiver."),
    Metric("hub", "remote_write_dropped_total", "counter", "Samples dropped by remote write (queue full or refused)."),
    Metric("hub", "remote_write_queue_samples", "gauge", "Samples waiting to be remote-written.", display="count"),
    Metric("hub", "storage_paused", "gauge",
           "1 while the hub refuses writes: disk full, or free space below --min-free-space."),
    Metric("hub", "disk_free_bytes", "gauge", "Free space on the filesystem of the hub's data directory.", "bytes"),
    Metric("hub", "remote_write_failed_samples_total", "counter",
           "Samples the remote-write receiver refused (4xx): dropped, never retried."),
    Metric("hub", "remote_write_requests_total", "counter", "Remote-write HTTP requests, retries included."),
    Metric("hub", "remote_write_retries_total", "counter",
           "Remote-write requests that failed and will be repeated (5xx, 429, connection errors)."),
    Metric("hub", "remote_write_last_error_timestamp_seconds", "gauge",
           "When remote write last failed (0: never); the error itself is in the hub log.", "seconds"),
    Metric("hub", "remote_write_last_success_timestamp_seconds", "gauge",
           "When the remote-write receiver last accepted a batch (0: never).", "seconds"),
    Metric("hub", "fleet_gpus_free", "gauge", "Answering accelerators nobody holds, fleet-wide (nodes up).",
           display="count"),
    Metric("hub", "fleet_gpus_held", "gauge", "Answering accelerators with a slot held, fleet-wide.", display="count"),
    Metric("hub", "fleet_gpu_equivalents_capacity", "gauge", "GPU-equivalents of the answering accelerators, fleet-wide."),
    Metric("hub", "fleet_gpu_equivalents_free", "gauge", "GPU-equivalents nobody holds, fleet-wide."),
    Metric("hub", "fleet_gpu_equivalents_held", "gauge", "GPU-equivalents held (in use or idle), fleet-wide."),
    Metric("hub", "fleet_gpu_equivalents_idle_held", "gauge", "GPU-equivalents held but idle, fleet-wide: the waste."),
    Metric("hub", "fleet_unmanaged_containers", "gauge",
           "Containers or pods using accelerators outside every allocation, fleet-wide.", display="count"),
    Metric("hub", "alerts_firing", "gauge", "Alerts firing now.", display="count"),
    Metric("hub", "ui_streams_open", "gauge", "Live-update streams (GET /api/v1/events) open now: pages and other clients.",
           display="count"),
    Metric("hub", "alerts_evaluation_errors_total", "counter", "Alert evaluations that failed."),
    Metric("hub", "gpus_taken_24h", "gauge", "GPUs taken by a user (holds begun) in the last 24 h.", display="count"),
    Metric("hub", "gpus_released_24h", "gauge", "GPUs released (holds ended) in the last 24 h.", display="count"),
    Metric("hub", "jobs_started_24h", "gauge", "Jobs (Slurm job, pod, container) seen starting in the last 24 h.",
           display="count"),
    Metric("hub", "jobs_ended_24h", "gauge", "Jobs seen ending in the last 24 h.", display="count"),
    Metric("hub", "usage_errors_total", "counter",
           "Changes of GPU holders the occupancy record could not write (retried at the next snapshot)."),
    Metric("group", "users", "gauge", "Users of the group holding accelerators.", display="count"),
    Metric("group", "gpus_allocated", "gauge", "Accelerators or MIG slices the group's users hold.", display="count"),
    Metric("group", "gpu_equivalents", "gauge", "GPU-equivalents the group's users hold."),
    Metric("group", "gpu_equivalents_idle", "gauge", "GPU-equivalents the group's users hold while they are idle."),
    Metric("group", "held_gpu_utilization_ratio", "gauge",
           "Mean busy share of what the group holds, weighted by GPU-equivalents (0-1).", "ratio", display="percent"),
    Metric("hub_scrape", "successes_total", "counter", "Scrapes of the target that gave a snapshot."),
    Metric("hub_scrape", "samples", "gauge", "Samples in the target's last scrape.", display="count"),
    Metric("hub_scrape", "samples_ignored", "gauge",
           "Samples of the last scrape no mapping used (names gpufleet does not know).", display="count"),
    Metric("hub_scrape", "duration_seconds", "gauge", "How long the target's last scrape took.", "seconds"),
    Metric("hub_job", "errors_total", "counter",
           "Steps of a hub background job that raised (the job retries with backoff)."),
)


@dataclass(frozen=True)
class _Index:
    by_name: dict[str, Metric] = field(default_factory=dict)
    by_scope: dict[str, tuple[Metric, ...]] = field(default_factory=dict)


def _build_index() -> _Index:
    idx = _Index()
    for m in CATALOGUE:
        if m.name in idx.by_name:
            raise RuntimeError(f"duplicate metric {m.name} in catalogue")
        if not m.help:
            raise RuntimeError(f"metric {m.name} has no help")
        for c in (m.dcgm, m.allsmi):
            # Another exporter's counter must be one of ours: a gauge can fall, a counter cannot.
            if c is not None and c.type == "counter" and m.kind != "counter":
                raise RuntimeError(f"compat name {c.name} is a counter but {m.name} is a {m.kind}")
        idx.by_name[m.name] = m
    for scope in SCOPE_LABELS:
        idx.by_scope[scope] = tuple(m for m in CATALOGUE if m.scope == scope)
    return idx


_INDEX = _build_index()
BY_NAME: dict[str, Metric] = _INDEX.by_name
BY_SCOPE: dict[str, tuple[Metric, ...]] = _INDEX.by_scope


def metric(name: str) -> Metric:
    """Look a metric up by its full name; KeyError names the unknown metric."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}: not in the gpufleet catalogue") from None


def name_of(scope: str, key: str) -> str:
    """The full metric name of a scope's key (e.g. gpu + utilization_ratio), checked against the catalogue."""
    return metric(f"{PREFIX}{SCOPE_STEM[scope]}_{key}").name


def keys(scope: str) -> frozenset[str]:
    """Value keys valid for a scope's records (non-info metrics)."""
    return frozenset(m.key for m in BY_SCOPE[scope] if m.kind != "info")
