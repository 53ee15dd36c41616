"""`--compat node`: node_exporter's names for the host series dashboards and rules use most, so a
GPU node needs no node_exporter beside gpufleet (names, types, units, label names and HELP as
node_exporter 1.5 writes them; tests/agent/test_compat_node.py compares with a real one).

Readings come from the catalogue (each source key below is checked against it at import); a few
are derived the way node_exporter reads them: SwapFree is total - used, a filesystem's free
bytes (root's reserve included) are size - used. Labels: `cpu`, `mode`; filesystems `device`
(the mount source), `fstype`, `mountpoint`; network `device` (the interface); disks `device`
(the block device's name, e.g. `sda1`: the mount source without /dev/), once per device.
`node_cpu_seconds_total` needs the CPU collector's time per mode, which the agent collects
only when this mode is on (`cpu.mode_seconds`).
"""

from __future__ import annotations

import os

from ..catalogue import keys, name_of
from ..procfs import CPU_MODES
from ..snapshot import NodeSnapshot
from ..textformat import escape, format_value
from .base import CompatMode

# node_exporter name -> (catalogue key of snap.values, HELP); all gauges.
HOST: dict[str, tuple[str, str]] = {
    "node_boot_time_seconds": ("boot_time_seconds", "Node boot time, in unixtime."),
    "node_load1": ("load1", "1m load average."),
    "node_load5": ("load5", "5m load average."),
    "node_load15": ("load15", "15m load average."),
    "node_memory_MemTotal_bytes": ("memory_total_bytes", "Memory information field MemTotal_bytes."),
    "node_memory_MemAvailable_bytes": ("memory_available_bytes", "Memory information field MemAvailable_bytes."),
    "node_memory_MemFree_bytes": ("memory_free_bytes", "Memory information field MemFree_bytes."),
    "node_memory_Buffers_bytes": ("memory_buffers_bytes", "Memory information field Buffers_bytes."),
    "node_memory_Cached_bytes": ("memory_cached_bytes", "Memory information field Cached_bytes."),
    "node_memory_SReclaimable_bytes": ("memory_slab_reclaimable_bytes",
                                       "Memory information field SReclaimable_bytes."),
    "node_memory_SwapTotal_bytes": ("swap_total_bytes", "Memory information field SwapTotal_bytes."),
}
# The time of the reading (Node Exporter Full's uptime is node_time_seconds - node_boot_time_seconds).
TIME = ("node_time_seconds", "System time in seconds since epoch (1970).")
SWAP_FREE = ("node_memory_SwapFree_bytes", "Memory information field SwapFree_bytes.")
CPU_SECONDS = ("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.")
# filesystem family -> HELP (values: size, avail = free to users, free = size - used)
FILESYSTEM = {
    "node_filesystem_size_bytes": "Filesystem size in bytes.",
    "node_filesystem_avail_bytes": "Filesystem space available to non-root users in bytes.",
    "node_filesystem_free_bytes": "Filesystem free space in bytes.",
}
# node_exporter name -> (catalogue key of the net scope, HELP); all counters.
NETWORK: dict[str, tuple[str, str]] = {
    f"node_network_{d}_{stat}_total": (f"{d}_{key}_total", f"Network device statistic {d}_{stat}.")
    for d in ("receive", "transmit")
    for stat, key in (("bytes", "bytes"), ("packets", "packets"), ("errs", "errors"), ("drop", "drops"))
}
# node_exporter name -> (catalogue key of the disk scope, HELP); all counters.
DISK: dict[str, tuple[str, str]] = {
    "node_disk_read_bytes_total": ("read_bytes_total", "The total number of bytes read successfully."),
    "node_disk_written_bytes_total": ("written_bytes_total", "The total number of bytes written successfully."),
    "node_disk_reads_completed_total": ("reads_total", "The total number of reads completed successfully."),
    "node_disk_writes_completed_total": ("writes_total", "The total number of writes completed successfully."),
    "node_disk_io_time_seconds_total": ("io_time_seconds_total", "Total seconds spent doing I/Os."),
}
UNAME = ("node_uname_info", "Labeled system information as provided by the uname system call.")


def _check() -> None:
    """Every source key is a catalogue key: a renamed reading fails at import, not silently."""
    wanted = {("node", k) for k, _ in HOST.values()} | {("node", "swap_used_bytes")}
    wanted |= {("cpu", f"{m}_seconds_total") for m in CPU_MODES}
    wanted |= {("disk", k) for k in ("size_bytes", "used_bytes", "free_bytes")}
    wanted |= {("net", k) for k, _ in NETWORK.values()} | {("disk", k) for k, _ in DISK.values()}
    missing = sorted(f"{scope}:{key}" for scope, key in wanted if key not in keys(scope))
    if missing:
        raise RuntimeError(f"--compat node reads keys the catalogue lacks: {', '.join(missing)}")


_check()


def render(snap: NodeSnapshot, openmetrics: bool, out: list[str]) -> None:
    # Every family here is a gauge or a counter named `_total`, so both formats say the same:
    # in OpenMetrics a counter family drops `_total` from its HELP and TYPE lines.
    def family(name: str, help_text: str, kind: str, lines: list[str]) -> None:
        fam = name[: -len("_total")] if openmetrics and kind == "counter" else name
        if lines:
            out.append(f"# HELP {fam} {help_text}")
            out.append(f"# TYPE {fam} {kind}")
            out.extend(lines)

    v = snap.values
    cpu_lines = [f'node_cpu_seconds_total{{cpu="{c.cpu}",mode="{mode}"}} {format_value(c.values[key])}'
                 for c in snap.cpus for mode in CPU_MODES
                 if (key := f"{mode}_seconds_total") in c.values]
    family(*CPU_SECONDS, "counter", cpu_lines)
    for name, (key, help_text) in HOST.items():
        if key in v:
            family(name, help_text, "gauge", [f"{name} {format_value(v[key])}"])
    family(*TIME, "gauge", [f"{TIME[0]} {format_value(snap.timestamp)}"])
    if "swap_total_bytes" in v and "swap_used_bytes" in v:
        family(*SWAP_FREE, "gauge", [f"{SWAP_FREE[0]} {format_value(v['swap_total_bytes'] - v['swap_used_bytes'])}"])

    fs: dict[str, list[str]] = {name: [] for name in FILESYSTEM}
    for d in snap.disks:
        lbl = f'device="{escape(d.device)}",fstype="{escape(d.fstype)}",mountpoint="{escape(d.mountpoint)}"'
        size, used, avail = d.values.get("size_bytes"), d.values.get("used_bytes"), d.values.get("free_bytes")
        if size is not None:
            fs["node_filesystem_size_bytes"].append(f"node_filesystem_size_bytes{{{lbl}}} {format_value(size)}")
        if avail is not None:
            fs["node_filesystem_avail_bytes"].append(f"node_filesystem_avail_bytes{{{lbl}}} {format_value(avail)}")
        if size is not None and used is not None:
            fs["node_filesystem_free_bytes"].append(f"node_filesystem_free_bytes{{{lbl}}} {format_value(size - used)}")
    for name, help_text in FILESYSTEM.items():
        family(name, help_text, "gauge", fs[name])

    for name, (key, help_text) in NETWORK.items():
        family(name, help_text, "counter", [f'{name}{{device="{escape(n.interface)}"}} {format_value(n.values[key])}'
                                            for n in snap.networks if key in n.values])

    # One row per block device: several mounts of one device carry the same counters.
    devices: dict[str, dict[str, float]] = {}
    for d in snap.disks:
        if d.device.startswith("/dev/"):
            devices.setdefault(os.path.basename(d.device), d.values)
    for name, (key, help_text) in DISK.items():
        family(name, help_text, "counter", [f'{name}{{device="{escape(dev)}"}} {format_value(vals[key])}'
                                            for dev, vals in devices.items() if key in vals])

    h = snap.host
    if h.kernel or h.hostname:
        lbl = (f'domainname="(none)",machine="{escape(h.arch)}",nodename="{escape(h.hostname or snap.node)}",'
               f'release="{escape(h.kernel)}",sysname="Linux",version=""')
        family(*UNAME, "gauge", [f"{UNAME[0]}{{{lbl}}} 1"])


MODE = CompatMode("node_exporter's names for the common host series (CPU, load, memory, filesystems, "
                  "network, disks, boot time)", render)


def reference() -> list[tuple[str, str, str, str]]:
    """(node_exporter name, type, labels, what it is made from) per family, for docs/metrics.md."""
    def n(scope: str, key: str) -> str:
        return f"`{name_of(scope, key)}`"

    rows = [(CPU_SECONDS[0], "counter", "`cpu`, `mode`",
             f"`gpufleet_cpu_<mode>_seconds_total` ({', '.join(CPU_MODES)})")]
    rows += [(name, "gauge", "", n("node", key)) for name, (key, _) in HOST.items()]
    rows.append((TIME[0], "gauge", "", "the snapshot's timestamp"))
    rows.append((SWAP_FREE[0], "gauge", "", f"{n('node', 'swap_total_bytes')} - {n('node', 'swap_used_bytes')}"))
    fs_labels = "`device`, `fstype`, `mountpoint`"
    rows += [("node_filesystem_size_bytes", "gauge", fs_labels, n("disk", "size_bytes")),
             ("node_filesystem_avail_bytes", "gauge", fs_labels, n("disk", "free_bytes")),
             ("node_filesystem_free_bytes", "gauge", fs_labels,
              f"{n('disk', 'size_bytes')} - {n('disk', 'used_bytes')}")]
    rows += [(name, "counter", "`device` (interface)", n("net", key)) for name, (key, _) in NETWORK.items()]
    rows += [(name, "counter", "`device` (e.g. `sda1`)", n("disk", key)) for name, (key, _) in DISK.items()]
    rows.append((UNAME[0], "gauge", "`domainname`, `machine`, `nodename`, `release`, `sysname`, `version`",
                 f"{n('node', 'info')} (arch, hostname, kernel)"))
    return rows
