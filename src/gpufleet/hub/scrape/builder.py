"""A NodeSnapshot built from samples that arrive in any order, and the catalogue read backwards
(other exporters' names to ours) for the mappers."""

from __future__ import annotations

import math

from ...catalogue import CATALOGUE, Metric
from ...snapshot import CollectorStatus, CpuCore, Disk, Gpu, GpuLink, HostInfo, MigInstance, NetInterface, NodeSnapshot
from ...snapshot import UserUsage
from ..targets import Target


class Builder:
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

    def link(self, gpu: Gpu, link: int) -> GpuLink:
        found = next((x for x in gpu.links if x.link == link), None)
        if found is None:
            found = GpuLink(link=link, values={})
            gpu.links.append(found)
            gpu.links.sort(key=lambda x: x.link)
        return found

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


def finite(v: float) -> bool:
    # NaN and Inf cannot travel in the snapshot's JSON (they would come back as null).
    return not (math.isnan(v) or math.isinf(v))


def to_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


# ---- reverse indexes over the catalogue -------------------------------------------------------


class Unscale:
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


def compat_index(attr: str) -> dict[str, dict[str, tuple[Metric, Unscale]]]:
    idx: dict[str, dict[str, tuple[Metric, Unscale]]] = {}
    for m in CATALOGUE:
        c = getattr(m, attr)
        if c is not None:
            idx.setdefault(c.name, {})[m.scope] = (m, Unscale(c.scale))
    return idx
