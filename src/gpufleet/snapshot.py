"""NodeSnapshot: the one typed record that flows from collectors to exposition, hub and UI.

Numeric readings live in each record's `values` dict, keyed by the catalogue's `Metric.key`
for that record's scope (see catalogue.py); a reading a device does not offer is simply
absent. Strings that identify or describe (names, users, commands) are typed fields.

The JSON form (GET /api/v1/snapshot, and what agents push to the hub) is this structure
encoded by msgspec; docs/snapshot.md documents it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

SCHEMA_VERSION = 1

Values = dict[str, float]


class HostInfo(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    hostname: str = ""
    os: str = ""
    os_version: str = ""
    kernel: str = ""
    arch: str = ""
    cpu_model: str = ""
    boot_time: float = 0.0


class CpuCore(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    cpu: int
    values: Values = {}


class Disk(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    device: str
    mountpoint: str
    fstype: str = ""
    values: Values = {}


class NetInterface(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    interface: str
    values: Values = {}


class LoginUser(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    name: str
    terminal: str = ""
    host: str = ""
    started: float = 0.0
    pid: int | None = None


class Owner(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Who a process belongs to beyond its Unix user: container, pod, batch job."""

    container: str = ""  # container id (docker/containerd/podman/cri-o), short form
    runtime: str = ""  # docker | containerd | podman | crio | ...
    pod: str = ""  # Kubernetes pod name (or pod UID when the name is unknown)
    pod_uid: str = ""
    namespace: str = ""
    slurm_job: str = ""


class Process(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    pid: int
    ppid: int = 0
    user: str = ""
    name: str = ""
    command: str = ""
    state: str = ""
    cpu_ratio: float = 0.0  # cores busy (1.0 = one full core), like `top`'s %CPU / 100
    memory_bytes: int = 0  # resident set size
    cpu_seconds: float = 0.0
    started: float = 0.0
    owner: Owner | None = None
    gpus: list[int] = []  # indices of accelerators this process uses


class GpuProcess(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    pid: int
    memory_bytes: int | None = None
    kind: str = "compute"  # compute | graphics
    user: str = ""
    command: str = ""
    owner: Owner | None = None
    gpu_instance: int | None = None  # MIG instance the process runs in


class MigInstance(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    gpu_instance: int
    compute_instance: int = 0
    profile: str = ""
    uuid: str = ""
    values: Values = {}


class GpuLink(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One GPU-to-GPU link (NVLink, or XGMI on AMD) of a GPU; values keyed by the gpu_link scope."""

    link: int
    values: Values = {}


class Gpu(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    index: int
    uuid: str
    model: str
    vendor: str
    up: bool = True
    info: dict[str, str] = {}  # driver_version, pci_bus_id, serial, vbios_version, ...
    values: Values = {}
    throttle_reasons: list[str] = []
    processes: list[GpuProcess] = []
    mig: list[MigInstance] = []
    links: list[GpuLink] = []  # NVLink / XGMI links, by link number
    events: list[str] = []  # recent notable events, e.g. "xid 79"


class UserUsage(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    user: str
    group: str = ""  # the user's group (allocation collector: --groups-file, else the Unix primary group)
    values: Values = {}


class Allocation(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Who holds one GPU, or one MIG slice, at this moment (collectors/allocation.py).

    Every answering GPU has entries: one per slot (the whole GPU, or each MIG GPU instance)
    and holder. A free slot has one entry with `state` "free" and no user; a slot shared by
    several holders (users, containers, jobs) has one entry per holder, its GPU-equivalents
    split evenly, so the entries' `gpu_equivalents` always add up to the node's capacity.
    """

    gpu: int  # index of the physical GPU
    state: str  # free | in_use | idle_held (held, but utilisation under the idle threshold)
    gpu_equivalents: float  # share of one full GPU this entry covers (MIG: compute slices / 7)
    uuid: str = ""  # the GPU's UUID, or the MIG instance's
    gpu_instance: int | None = None  # MIG GPU instance; None for a whole GPU
    profile: str = ""  # MIG profile ("3g.40gb"); empty for a whole GPU
    user: str = ""
    group: str = ""
    container: str = ""  # short container id, or the name an allocation source gave
    pod: str = ""
    namespace: str = ""
    slurm_job: str = ""
    partition: str = ""  # Slurm partition, when Slurm is the source
    utilization_ratio: float | None = None  # the slot's busy share this collection (0-1), when known
    source: str = ""  # what says it is held: processes | state_file | slurm | kubernetes
    unmanaged: bool = False  # a container using the slot outside every allocation a source knows
    stopped: bool = False  # the holder is a stopped container that keeps its GPU (an allocation source says so)


class CollectorStatus(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    collector: str
    success: bool
    duration: float
    error: str = ""
    errors_total: int = 0


class NodeSnapshot(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    node: str
    timestamp: float
    schema: int = SCHEMA_VERSION
    agent_version: str = ""
    backend: str = ""
    labels: dict[str, str] = {}
    host: HostInfo = msgspec.field(default_factory=HostInfo)
    values: Values = {}  # node-scope readings (memory, load, ...)
    cpus: list[CpuCore] = []
    disks: list[Disk] = []
    networks: list[NetInterface] = []
    users: list[LoginUser] = []
    processes: list[Process] = []
    gpus: list[Gpu] = []
    usage: list[UserUsage] = []  # per-user aggregates
    allocations: list[Allocation] = []  # who holds each GPU / MIG slice (free, in_use, idle_held)
    collectors: list[CollectorStatus] = []
    agent: Values = {}  # agent-scope readings (collections_total, ...)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(NodeSnapshot)


def to_json(snapshot: NodeSnapshot) -> bytes:
    return _encoder.encode(snapshot)


def from_json(data: bytes | str) -> NodeSnapshot:
    """Decode and validate; raises msgspec.ValidationError naming the bad field's path."""
    return _decoder.decode(data)


def json_schema() -> dict[str, object]:
    return msgspec.json.schema(NodeSnapshot)


def gpu_busy_ratio(values: Mapping[str, float], mig: Iterable[Mapping[str, float]] = ()) -> float | None:
    """How busy a GPU is (0-1): its utilisation, or, with MIG on (NVML then reports none for the
    whole GPU), its instances' engine activity weighted by their memory, the share of the GPU
    each holds. None when neither is known. `mig` holds each MIG instance's values."""
    util = values.get("utilization_ratio")
    if util is not None:
        return util
    total = weight = 0.0
    for m in mig:
        active = m.get("graphics_engine_active_ratio")
        if active is not None:
            w = m.get("memory_total_bytes") or 1.0
            total += active * w
            weight += w
    return total / weight if weight else None
