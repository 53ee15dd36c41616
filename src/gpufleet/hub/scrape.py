"""Pull one target and turn what it says into a NodeSnapshot.

Four kinds of exporter are understood; names nobody maps are counted and ignored:

- gpufleet agent: its JSON snapshot (/api/v1/snapshot) is fetched when the agent offers it,
  which is lossless; otherwise its gpufleet_* text is read back through the catalogue.
- dcgm-exporter: DCGM_FI_* names through the catalogue's `dcgm` Compat entries
  (value_ours = value_theirs / scale), MIG rows (GPU_I_ID) to MigInstance records.
- all-smi: all_smi_* names through the catalogue's `allsmi` Compat entries.
- node_exporter: its common host series; CPU utilisation needs two scrapes, so the previous
  counters live in the target's ScrapeState.

The request logic is written once as a generator that yields the requests it wants and
receives the replies (`_plan`), so the sync and asyncio drivers cannot drift apart.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field

import httpx
import msgspec

from ..catalogue import BY_NAME, CATALOGUE, Metric
from ..hostpolicy import IGNORED_FSTYPES
from ..promtext import ParseError, Sample, parse
from ..snapshot import (
    CollectorStatus, CpuCore, Disk, Gpu, GpuProcess, HostInfo, MigInstance, NetInterface, NodeSnapshot,
    Owner, UserUsage, from_json,
)
from ..vendors import guess_vendor
from .targets import Target

DEFAULT_TIMEOUT = 10.0
MAX_BODY_BYTES = 64 * 1024 * 1024  # a runaway exporter must not exhaust the hub's memory
SNAPSHOT_PATH = "/api/v1/snapshot"
ACCEPT_TEXT = "text/plain;version=0.0.4;q=1.0,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"
ACCEPT_JSON = "application/json"
USER_AGENT = "gpufleet-hub"


class ScrapeError(Exception):
    """A scrape that gave no snapshot; the message names the target and the cause."""

    def __init__(self, target: Target, cause: str) -> None:
        super().__init__(f"scrape of {target.url} (node {target.node}) failed: {cause}")
        self.target = target
        self.cause = cause


@dataclass(slots=True)
class ScrapeState:
    """What one target's scrapes remember between runs; the hub keeps one per Target.key."""

    kind: str | None = None  # detected exporter kind (for kind: auto)
    snapshot_api: bool | None = None  # does the target answer /api/v1/snapshot? None = not tried
    cpu: dict[str, tuple[float, float]] = field(default_factory=dict)  # node_exporter: cpu -> (busy, total) s
    scrapes: int = 0
    samples: int = 0  # samples in the last scrape
    ignored: int = 0  # of those, how many no mapping used
    duration: float = 0.0  # seconds the last scrape took


# ---- reverse indexes over the catalogue -------------------------------------------------------


class _Unscale:
    """value_ours = value_theirs / scale, computed as one correctly rounded operation.

    Dividing by 100 gives 0.41 for 41 where multiplying by 0.01 gives 0.41000000000000003;
    for scales below one whose inverse is an integer (1e-6 for MHz), multiplying by that
    integer is the exact route, since 1e-6 itself is not representable.
    """

    __slots__ = ("mul", "div")

    def __init__(self, scale: float) -> None:
        inv = 1.0 / scale
        if scale < 1.0 and abs(inv - round(inv)) <= 1e-9 * inv:
            self.mul, self.div = float(round(inv)), 1.0
        else:
            self.mul, self.div = 1.0, scale

    def __call__(self, v: float) -> float:
        return v * self.mul / self.div


def _compat_index(attr: str) -> dict[str, dict[str, tuple[Metric, _Unscale]]]:
    idx: dict[str, dict[str, tuple[Metric, _Unscale]]] = {}
    for m in CATALOGUE:
        c = getattr(m, attr)
        if c is not None:
            idx.setdefault(c.name, {})[m.scope] = (m, _Unscale(c.scale))
    return idx


_DCGM = _compat_index("dcgm")
_ALLSMI = _compat_index("allsmi")

# Framebuffer fields that make up a device's total memory; only USED/FREE are in the catalogue.
FB_USED, FB_FREE = "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"
FB_RESERVED, FB_TOTAL = "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_FB_TOTAL"
_MIB = 1024.0 * 1024.0

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


def detect_kind(samples: Iterable[Sample]) -> str | None:
    """Exporter kind from metric names; gpufleet wins (lossless), then dcgm, all-smi, node_exporter."""
    found: set[str] = set()
    for name, _, _ in samples:
        if name.startswith("gpufleet_"):
            return "gpufleet"
        if name.startswith("DCGM_FI_"):
            found.add("dcgm")
        elif name.startswith("all_smi_"):
            found.add("all-smi")
        elif name.startswith("node_"):
            found.add("node_exporter")
    for kind in ("dcgm", "all-smi", "node_exporter"):
        if kind in found:
            return kind
    return None


# ---- building a snapshot --------------------------------------------------------------------------


class _Builder:
    """Collects records keyed by identity while samples arrive in any order."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.agent: dict[str, float] = {}
        self.host = HostInfo()
        self.backend = ""
        self.agent_version = ""
        self.cpus: dict[int, CpuCore] = {}
        self.disks: dict[tuple[str, str, str], Disk] = {}
        self.nets: dict[str, NetInterface] = {}
        self.gpus: dict[int, Gpu] = {}
        self.migs: dict[tuple[int, int, int], MigInstance] = {}
        self.usage: dict[str, UserUsage] = {}
        self.collectors: dict[str, dict[str, float]] = {}

    def cpu(self, index: int) -> CpuCore:
        c = self.cpus.get(index)
        if c is None:
            c = self.cpus[index] = CpuCore(cpu=index, values={})
        return c

    def disk(self, device: str, mountpoint: str, fstype: str) -> Disk:
        key = (device, mountpoint, fstype)
        d = self.disks.get(key)
        if d is None:
            d = self.disks[key] = Disk(device=device, mountpoint=mountpoint, fstype=fstype, values={})
        return d

    def net(self, interface: str) -> NetInterface:
        n = self.nets.get(interface)
        if n is None:
            n = self.nets[interface] = NetInterface(interface=interface, values={})
        return n

    def gpu(self, index: int, uuid: str, model: str, vendor: str) -> Gpu:
        g = self.gpus.get(index)
        if g is None:
            g = self.gpus[index] = Gpu(index=index, uuid=uuid, model=model, vendor=vendor, values={}, info={})
        else:  # a later row may carry an identity label an earlier one lacked
            g.uuid = g.uuid or uuid
            g.model = g.model or model
        return g

    def mig(self, gpu: Gpu, gpu_instance: int, compute_instance: int, profile: str) -> MigInstance:
        key = (gpu.index, gpu_instance, compute_instance)
        m = self.migs.get(key)
        if m is None:
            m = self.migs[key] = MigInstance(gpu_instance=gpu_instance, compute_instance=compute_instance,
                                             profile=profile, values={})
            gpu.mig.append(m)
        elif profile and not m.profile:
            m.profile = profile
        return m

    def user(self, name: str) -> UserUsage:
        u = self.usage.get(name)
        if u is None:
            u = self.usage[name] = UserUsage(user=name, values={})
        return u

    def finish(self, target: Target, kind: str, now: float) -> NodeSnapshot:
        gpus = [self.gpus[i] for i in sorted(self.gpus)]
        collectors = [
            CollectorStatus(collector=name, success=v.get("success", 1.0) != 0.0,
                            duration=v.get("duration_seconds", 0.0), errors_total=int(v.get("errors_total", 0.0)))
            for name, v in self.collectors.items()
        ]
        backend = f"pull:{kind}/{self.backend}" if self.backend else f"pull:{kind}"
        return NodeSnapshot(
            node=target.node, timestamp=now, backend=backend, agent_version=self.agent_version,
            labels=dict(target.labels), host=self.host, values=self.values,
            cpus=[self.cpus[i] for i in sorted(self.cpus)], disks=list(self.disks.values()),
            networks=list(self.nets.values()), gpus=gpus, usage=list(self.usage.values()),
            collectors=collectors, agent=self.agent,
        )


def _finite(v: float) -> bool:
    # NaN and Inf cannot travel in the snapshot's JSON (they would come back as null).
    return not (math.isnan(v) or math.isinf(v))


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


# ---- gpufleet text: the catalogue's own names, read back ---------------------------------------


def _map_gpufleet(samples: list[Sample], b: _Builder) -> int:
    ignored = 0
    for name, labels, v in samples:
        m = BY_NAME.get(name)
        if m is None or (m.kind != "info" and not _finite(v)):
            ignored += 1
            continue
        scope, key, get = m.scope, m.key, labels.get
        if scope == "node":
            if m.kind == "info":
                b.host = HostInfo(hostname=get("hostname", ""), os=get("os", ""), os_version=get("os_version", ""),
                                  kernel=get("kernel", ""), arch=get("arch", ""), cpu_model=get("cpu_model", ""),
                                  boot_time=b.host.boot_time)
                backend = get("backend", "")
                b.backend = "" if backend == "none" else backend
            else:
                b.values[key] = v
                if key == "boot_time_seconds":
                    b.host.boot_time = v
        elif scope == "agent":
            if m.kind == "info":
                b.agent_version = get("version", "")
            else:
                b.agent[key] = v
        elif scope == "cpu":
            cpu = _int(get("cpu"))
            if cpu is None:
                ignored += 1
                continue
            b.cpu(cpu).values[key] = v
        elif scope == "disk":
            b.disk(get("device", ""), get("mountpoint", ""), get("fstype", "")).values[key] = v
        elif scope == "net":
            b.net(get("interface", "")).values[key] = v
        elif scope in ("gpu", "mig", "gpu_process"):
            index = _int(get("gpu"))
            if index is None:
                ignored += 1
                continue
            g = b.gpu(index, get("uuid", ""), get("model", ""), get("vendor", ""))
            if scope == "gpu":
                if m.kind == "info":
                    g.info.update({k: get(k, "") for k in m.labels if get(k)})
                else:
                    g.values[key] = v
                    if key == "up":
                        g.up = v != 0.0
            elif scope == "mig":
                gi, ci = _int(get("gpu_instance")), _int(get("compute_instance"))
                if gi is None or ci is None:
                    ignored += 1
                    continue
                b.mig(g, gi, ci, get("profile", "")).values[key] = v
            else:
                pid = _int(get("pid"))
                if pid is None:
                    ignored += 1
                    continue
                owner_fields = {k: get(k, "") for k in ("container", "pod", "namespace", "slurm_job") if get(k)}
                g.processes.append(GpuProcess(pid=pid, memory_bytes=int(v), user=get("user", ""),
                                              command=get("command", ""),
                                              owner=Owner(**owner_fields) if owner_fields else None))
        elif scope == "user":
            b.user(get("user", "")).values[key] = v
        elif scope == "collector":
            b.collectors.setdefault(get("collector", ""), {})[key] = v
        else:
            ignored += 1
    return ignored


# ---- dcgm-exporter ----------------------------------------------------------------------------------


def _map_dcgm(samples: list[Sample], b: _Builder) -> int:
    ignored = 0
    # Raw framebuffer MiB per (gpu index, GPU instance or -1) to derive total memory afterwards.
    fb: dict[tuple[int, int], dict[str, float]] = {}
    for name, labels, v in samples:
        entry = _DCGM.get(name)
        is_fb = name in (FB_RESERVED, FB_TOTAL)
        if (entry is None and not is_fb) or not _finite(v):
            ignored += 1
            continue
        index = _int(labels.get("gpu"))
        if index is None:
            ignored += 1
            continue
        g = b.gpu(index, labels.get("UUID", ""), labels.get("modelName", ""), "nvidia")
        if "DCGM_FI_DRIVER_VERSION" in labels and "driver_version" not in g.info:
            g.info["driver_version"] = labels["DCGM_FI_DRIVER_VERSION"]
        if labels.get("pci_bus_id") and "pci_bus_id" not in g.info:
            g.info["pci_bus_id"] = labels["pci_bus_id"]
        if labels.get("Hostname") and not b.host.hostname:
            b.host.hostname = labels["Hostname"]
        gi = _int(labels.get("GPU_I_ID")) if labels.get("GPU_I_ID") else None
        if name in (FB_USED, FB_FREE, FB_RESERVED, FB_TOTAL):
            fb.setdefault((index, -1 if gi is None else gi), {})[name] = v
        if entry is None:
            continue
        if gi is not None:
            mig = b.mig(g, gi, 0, labels.get("GPU_I_PROFILE", ""))
            if "mig" in entry:
                m, inv = entry["mig"]
                mig.values[m.key] = inv(v)
                continue
            # A device-wide field reported on a MIG row (temperature, power, ...) is the
            # parent GPU's reading: keep it there, once. The instance's FB_FREE only feeds
            # its total above.
            if "gpu" in entry and name != FB_FREE:
                m, inv = entry["gpu"]
                g.values.setdefault(m.key, inv(v))
            continue
        if "gpu" in entry:
            m, inv = entry["gpu"]
            g.values[m.key] = inv(v)
        else:
            ignored += 1
    for (index, gi), f in fb.items():
        if FB_TOTAL in f:
            total = f[FB_TOTAL]
        elif FB_USED in f and FB_FREE in f:
            # nvidia-smi's total is used + free + reserved (driver-reserved memory, newer DCGM).
            total = f[FB_USED] + f[FB_FREE] + f.get(FB_RESERVED, 0.0)
        else:
            continue
        g = b.gpus[index]
        if gi < 0:
            g.values["memory_total_bytes"] = total * _MIB
        else:
            for mig in g.mig:
                if mig.gpu_instance == gi:
                    mig.values["memory_total_bytes"] = total * _MIB
    for g in b.gpus.values():
        g.values.setdefault("up", 1.0)
        if g.mig:
            g.values["mig_instances"] = float(len({m.gpu_instance for m in g.mig}))
    return ignored


# ---- all-smi ----------------------------------------------------------------------------------------

def _map_allsmi(samples: list[Sample], b: _Builder) -> int:
    ignored = 0
    for name, labels, v in samples:
        if name == "all_smi_gpu_info":
            index = _int(labels.get("index"))
            if index is None:
                ignored += 1
                continue
            model = labels.get("gpu", "")
            g = b.gpu(index, labels.get("uuid", ""), model, guess_vendor(model))
            for key in ("driver_version", "pci_bus_id", "serial"):
                if labels.get(key):
                    g.info[key] = labels[key]
            continue
        entry = _ALLSMI.get(name)
        if entry is None or not _finite(v):
            ignored += 1
            continue
        if labels.get("instance") and not b.host.hostname:
            b.host.hostname = labels["instance"]
        if "gpu" in entry:
            index = _int(labels.get("index"))
            if index is None:
                ignored += 1
                continue
            model = labels.get("gpu", "")
            m, inv = entry["gpu"]
            b.gpu(index, labels.get("uuid", ""), model, guess_vendor(model)).values[m.key] = inv(v)
        elif "node" in entry:
            m, inv = entry["node"]
            if m.key in b.values:  # several CPU sockets: the first row stands for the node
                ignored += 1
                continue
            b.values[m.key] = inv(v)
        else:
            ignored += 1
    for g in b.gpus.values():
        g.values.setdefault("up", 1.0)
    return ignored


# ---- node_exporter ----------------------------------------------------------------------------------


def _map_node_exporter(samples: list[Sample], b: _Builder, state: ScrapeState | None) -> int:
    ignored = 0
    cpu_times: dict[str, list[float]] = {}  # cpu -> [busy, total]
    freqs: dict[int, float] = {}
    fs: dict[tuple[str, str, str], dict[str, float]] = {}
    disk_io: dict[str, dict[str, float]] = {}
    swap_free: float | None = None
    now_s: float | None = None
    for name, labels, v in samples:
        if not _finite(v):
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
            cpu = _int(labels.get("cpu"))
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
        cpu = _int(cpu_text)
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


# ---- from samples to a snapshot ---------------------------------------------------------------------


def to_snapshot(target: Target, samples: list[Sample], kind: str | None = None,
                state: ScrapeState | None = None, now: float | None = None) -> NodeSnapshot:
    """Map parsed samples onto a NodeSnapshot for `target`; kind None/auto detects it."""
    if kind in (None, "auto"):
        kind = detect_kind(samples)
    b = _Builder()
    if kind == "gpufleet":
        ignored = _map_gpufleet(samples, b)
    elif kind == "dcgm":
        ignored = _map_dcgm(samples, b)
    elif kind == "all-smi":
        ignored = _map_allsmi(samples, b)
    elif kind == "node_exporter":
        ignored = _map_node_exporter(samples, b, state)
    else:
        kind, ignored = "unknown", len(samples)
    if b.gpus and "gpus" not in b.values:
        b.values["gpus"] = float(len(b.gpus))
    if state is not None:
        state.samples = len(samples)
        state.ignored = ignored
    return b.finish(target, kind, time.time() if now is None else now)


def from_agent_json(target: Target, snap: NodeSnapshot) -> NodeSnapshot:
    """An agent's own snapshot, renamed to the target's node and given the target's labels."""
    snap.backend = f"pull:gpufleet/{snap.backend}" if snap.backend else "pull:gpufleet"
    snap.node = target.node
    snap.labels = {**snap.labels, **target.labels}
    return snap


# ---- requests, written once for both drivers ---------------------------------------------------------


@dataclass(slots=True)
class _Request:
    url: str
    accept: str


@dataclass(slots=True)
class _Reply:
    status: int
    reason: str
    body: bytes


def _plan(target: Target, state: ScrapeState) -> Generator[_Request, _Reply, NodeSnapshot]:
    kind = target.kind
    if kind == "auto" and state.kind is not None:
        kind = state.kind
    if kind in ("auto", "gpufleet") and state.snapshot_api is not False:
        reply = yield _Request(target.base_url + SNAPSHOT_PATH, ACCEPT_JSON)
        if reply.status == 200:
            try:
                snap = from_json(reply.body)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                if state.snapshot_api:  # it worked before: this is the agent misbehaving
                    raise ScrapeError(target, f"invalid snapshot JSON from {SNAPSHOT_PATH}: {e}") from None
                state.snapshot_api = False  # something else answers that path (a landing page)
            else:
                state.snapshot_api = True
                state.kind = "gpufleet"
                state.samples = state.ignored = 0
                return from_agent_json(target, snap)
        elif reply.status == 503 or state.snapshot_api:
            # An agent answers 503 until its first collection; its /metrics would too.
            raise ScrapeError(target, f"HTTP {reply.status} {reply.reason} from {SNAPSHOT_PATH}")
        else:
            state.snapshot_api = False
    reply = yield _Request(target.url, ACCEPT_TEXT)
    if reply.status != 200:
        raise ScrapeError(target, f"HTTP {reply.status} {reply.reason}")
    try:
        samples = parse(reply.body)
    except ParseError as e:
        raise ScrapeError(target, f"cannot parse the exposition: {e}") from None
    if kind == "auto":
        detected = detect_kind(samples)
        if detected is not None:
            state.kind = detected
        kind = detected or "auto"
    return to_snapshot(target, samples, kind, state)


def _timeout(target: Target, timeout: float | None) -> float:
    if timeout is not None:
        return timeout
    if target.timeout is not None:
        return target.timeout
    return min(DEFAULT_TIMEOUT, target.interval)  # never longer than the interval it runs in


def _headers(req: _Request) -> dict[str, str]:
    return {"Accept": req.accept, "User-Agent": USER_AGENT}


def _transport_error(target: Target, e: Exception, limit: float) -> ScrapeError:
    if isinstance(e, httpx.TimeoutException):
        return ScrapeError(target, f"timed out after {limit:g}s ({type(e).__name__})")
    if isinstance(e, httpx.ConnectError):
        return ScrapeError(target, f"cannot connect: {e or 'connection failed'}")
    return ScrapeError(target, f"{type(e).__name__}: {e}")


def _too_big(target: Target) -> ScrapeError:
    return ScrapeError(target, f"response larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")


def _advance(plan: Generator[_Request, _Reply, NodeSnapshot], reply: _Reply | None) -> _Request | NodeSnapshot:
    """The plan's next request, or its snapshot once it has what it needs."""
    try:
        return next(plan) if reply is None else plan.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def scrape(target: Target, client: httpx.Client, *, state: ScrapeState | None = None,
           timeout: float | None = None) -> NodeSnapshot:
    """Scrape `target` with a sync client; the whole scrape (all requests) ends within `timeout`."""
    if isinstance(client, httpx.AsyncClient):
        raise TypeError("scrape() needs an httpx.Client; use `await scrape_async(...)` with an AsyncClient")
    state = state if state is not None else ScrapeState()
    limit = _timeout(target, timeout)
    started = time.monotonic()
    deadline = started + limit
    plan = _plan(target, state)
    step = _advance(plan, None)
    while isinstance(step, _Request):
        left = deadline - time.monotonic()
        if left <= 0:
            raise ScrapeError(target, f"timed out after {limit:g}s")
        try:
            with client.stream("GET", step.url, headers=_headers(step), timeout=left) as r:
                chunks: list[bytes] = []
                size = 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise _too_big(target)
                    if time.monotonic() > deadline:
                        raise ScrapeError(target, f"timed out after {limit:g}s reading the body")
                    chunks.append(chunk)
                reply = _Reply(r.status_code, r.reason_phrase, b"".join(chunks))
        except httpx.HTTPError as e:
            raise _transport_error(target, e, limit) from None
        step = _advance(plan, reply)
    return _done(step, state, started)


async def scrape_async(target: Target, client: httpx.AsyncClient, *, state: ScrapeState | None = None,
                       timeout: float | None = None) -> NodeSnapshot:
    """Scrape `target` on asyncio; the whole scrape (all requests) ends within `timeout` seconds."""
    state = state if state is not None else ScrapeState()
    limit = _timeout(target, timeout)
    started = time.monotonic()
    plan = _plan(target, state)
    try:
        async with asyncio.timeout(limit):
            step = _advance(plan, None)
            while isinstance(step, _Request):
                try:
                    async with client.stream("GET", step.url, headers=_headers(step), timeout=limit) as r:
                        chunks: list[bytes] = []
                        size = 0
                        async for chunk in r.aiter_bytes():
                            size += len(chunk)
                            if size > MAX_BODY_BYTES:
                                raise _too_big(target)
                            chunks.append(chunk)
                        reply = _Reply(r.status_code, r.reason_phrase, b"".join(chunks))
                except httpx.HTTPError as e:
                    raise _transport_error(target, e, limit) from None
                step = _advance(plan, reply)
    except TimeoutError:
        raise ScrapeError(target, f"timed out after {limit:g}s") from None
    return _done(step, state, started)


def _done(snap: NodeSnapshot, state: ScrapeState, started: float) -> NodeSnapshot:
    state.scrapes += 1
    state.duration = time.monotonic() - started
    return snap
