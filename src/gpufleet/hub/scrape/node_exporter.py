"""node_exporter: its common host series. CPU utilisation needs two scrapes, so the previous
counters live in the target's ScrapeState; filesystems follow the agent's policy (hostpolicy)."""

from __future__ import annotations

from ...hostpolicy import IGNORED_FSTYPES
from ...promtext import Sample
from .builder import Builder, finite, to_int
from .state import ScrapeState

_NODE_EXPORTER_NODE = {
    "node_memory_MemTotal_bytes": "memory_total_bytes",
    "node_memory_MemAvailable_bytes": "memory_available_bytes",
    "node_memory_SwapTotal_bytes": "swap_total_bytes",
    "node_load1": "load1",
    "node_load5": "load5",
    "node_load15": "load15",
    "node_boot_time_seconds": "boot_time_seconds",
}
_NODE_EXPORTER_NET = {
    "node_network_receive_bytes_total": "receive_bytes_total",
    "node_network_transmit_bytes_total": "transmit_bytes_total",
    "node_network_receive_packets_total": "receive_packets_total",
    "node_network_transmit_packets_total": "transmit_packets_total",
    "node_network_receive_errs_total": "receive_errors_total",
    "node_network_transmit_errs_total": "transmit_errors_total",
    "node_network_receive_drop_total": "receive_drops_total",
    "node_network_transmit_drop_total": "transmit_drops_total",
}
_NODE_EXPORTER_DISK_IO = {
    "node_disk_read_bytes_total": "read_bytes_total",
    "node_disk_written_bytes_total": "written_bytes_total",
    "node_disk_reads_completed_total": "reads_total",
    "node_disk_writes_completed_total": "writes_total",
}
_IDLE_MODES = ("idle", "iowait")  # as the agent's cpu collector: iowait is not busy


def map_samples(samples: list[Sample], b: Builder, state: ScrapeState | None) -> int:
    ignored = 0
    cpu_times: dict[str, list[float]] = {}  # cpu -> [busy, total]
    freqs: dict[int, float] = {}
    fs: dict[tuple[str, str, str], dict[str, float]] = {}
    disk_io: dict[str, dict[str, float]] = {}
    swap_free: float | None = None
    now_s: float | None = None
    for name, labels, v in samples:
        if not finite(v):
            ignored += 1
            continue
        key = _NODE_EXPORTER_NODE.get(name)
        if key is not None:
            b.values[key] = v
        elif name == "node_cpu_seconds_total":
            acc = cpu_times.setdefault(labels.get("cpu", ""), [0.0, 0.0])
            acc[1] += v
            if labels.get("mode") not in _IDLE_MODES:
                acc[0] += v
        elif name in ("node_cpu_scaling_frequency_hertz", "node_cpu_frequency_hertz"):
            cpu = to_int(labels.get("cpu"))
            if cpu is not None and (name == "node_cpu_scaling_frequency_hertz" or cpu not in freqs):
                freqs[cpu] = v
        elif name in _NODE_EXPORTER_NET:
            b.net(labels.get("device", "")).values[_NODE_EXPORTER_NET[name]] = v
        elif name in ("node_filesystem_size_bytes", "node_filesystem_avail_bytes", "node_filesystem_free_bytes"):
            ident = (labels.get("device", ""), labels.get("mountpoint", ""), labels.get("fstype", ""))
            fs.setdefault(ident, {})[name[len("node_filesystem_"):-len("_bytes")]] = v
        elif name in _NODE_EXPORTER_DISK_IO:
            disk_io.setdefault(labels.get("device", ""), {})[_NODE_EXPORTER_DISK_IO[name]] = v
        elif name == "node_memory_SwapFree_bytes":
            swap_free = v
        elif name == "node_time_seconds":
            now_s = v
        elif name == "node_uname_info":
            b.host.hostname = labels.get("nodename", b.host.hostname)
            b.host.kernel = labels.get("release", b.host.kernel)
            b.host.arch = labels.get("machine", b.host.arch)
            b.host.os = b.host.os or labels.get("sysname", "")
        elif name == "node_os_info":
            b.host.os = labels.get("name") or labels.get("id") or b.host.os
            b.host.os_version = labels.get("version_id") or labels.get("version") or b.host.os_version
        elif name == "node_cpu_info" and labels.get("model_name"):
            b.host.cpu_model = labels["model_name"]
        else:
            ignored += 1

    vals = b.values
    if "memory_total_bytes" in vals and "memory_available_bytes" in vals:
        vals["memory_used_bytes"] = vals["memory_total_bytes"] - vals["memory_available_bytes"]
    if "swap_total_bytes" in vals and swap_free is not None:
        vals["swap_used_bytes"] = max(0.0, vals["swap_total_bytes"] - swap_free)
    if "boot_time_seconds" in vals:
        b.host.boot_time = vals["boot_time_seconds"]
        if now_s is not None:
            vals["uptime_seconds"] = max(0.0, now_s - vals["boot_time_seconds"])

    # CPU utilisation is a ratio of counter deltas: the first scrape only primes the state.
    if cpu_times:
        vals["cpu_cores"] = float(len(cpu_times))
    prev = state.cpu if state is not None else {}
    busy_sum = total_sum = 0.0
    for cpu_text, (busy, total) in cpu_times.items():
        cpu = to_int(cpu_text)
        if cpu is None:
            continue
        core = b.cpu(cpu)
        before = prev.get(cpu_text)
        if before is not None:
            d_busy, d_total = busy - before[0], total - before[1]
            if d_total > 0 and d_busy >= 0:  # counters that went back (reboot) give no reading
                core.values["utilization_ratio"] = min(1.0, d_busy / d_total)
                busy_sum += d_busy
                total_sum += d_total
    if total_sum > 0:
        vals["cpu_utilization_ratio"] = min(1.0, busy_sum / total_sum)
    if state is not None:
        state.cpu = {c: (t[0], t[1]) for c, t in cpu_times.items()}
    for cpu, hz in freqs.items():
        b.cpu(cpu).values["frequency_hertz"] = hz
    if freqs:
        vals["cpu_frequency_hertz"] = sum(freqs.values()) / len(freqs)

    # Filesystems as the agent reports them: real ones, each once (bind mounts share a device).
    chosen: dict[tuple[str, str], tuple[str, str, str]] = {}
    for ident in fs:
        device, mountpoint, fstype = ident
        if fstype in IGNORED_FSTYPES and mountpoint != "/":
            continue
        cur = chosen.get((device, fstype))
        if cur is None or len(mountpoint) < len(cur[1]):
            chosen[(device, fstype)] = ident
    for ident in chosen.values():
        f = fs[ident]
        d = b.disk(*ident)
        if "size" in f:
            d.values["size_bytes"] = f["size"]
            if "free" in f:
                d.values["used_bytes"] = max(0.0, f["size"] - f["free"])
        if "avail" in f:
            d.values["free_bytes"] = f["avail"]
        # node_exporter's diskstats name block devices without /dev/ (and skip partitions by
        # default), so only filesystems directly on a whole device get I/O counters.
        io = disk_io.get(ident[0].rsplit("/", 1)[-1])
        if io:
            d.values.update(io)
    return ignored
