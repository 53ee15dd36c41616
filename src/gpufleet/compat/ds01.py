"""`--compat ds01`: DS01's business exporter names (ds01_*), from the allocation model.

DS01 (hertie-data-science-lab/ds01-infra, monitoring/exporter/ds01_exporter.py) publishes who
holds which GPU slot, per-user counts, containers and unmanaged containers. Its series are
views (counts, sums, other labels) over `NodeSnapshot.allocations`, not one catalogue metric
each under another name, so this module spells them, once, in FAMILIES below; names and
label names are DS01's exactly (docs/allocation.md lists the differences in values).

- `gpu_slot` is DS01's: "2" for a whole GPU, "2.0", "2.1", ... for its MIG instances in order
  of GPU instance id (as nvidia-smi -L numbers MIG devices, which DS01 maps onto GPU_I_ID).
- `interface` is what says the slot is held (our `source`: processes, state_file, slurm,
  kubernetes); DS01 writes how the container was made (orchestration, atomic, other).
- `container` is the container (name from a source, else short id), else namespace/pod,
  else `slurm-<job>`; empty for a bare process, which DS01 would warn about.
- ds01_events_24h_total is the hub's (`gpufleet hub --compat ds01`, render_events_24h): the
  agent sees one node at one moment, the hub keeps the events.
- Not produced: ds01_state_disk_bytes and ds01_user_cpu_usage_seconds_total (DS01's own state
  directory and user cgroups).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from .. import __version__
from ..snapshot import Allocation, NodeSnapshot
from ..textformat import escape, format_value, header
from .base import CompatMode

# name -> help, in the order rendered; all gauges, as DS01 types them.
FAMILIES: dict[str, str] = {
    "ds01_exporter_info": "DS01 exporter information",
    "ds01_gpu_allocated": "GPU/MIG slot allocation status (1=allocated)",
    "ds01_gpu_equivalents": "GPU-equivalents allocated per slot (1.0 = full GPU, MIG = compute slices / 7)",
    "ds01_containers_total": "Total DS01 containers by status and interface",
    "ds01_user_gpus_allocated": "GPU/MIG slots allocated to user",
    "ds01_user_gpu_equivalents": "GPU-equivalents allocated to user",
    "ds01_user_containers_count": "Number of containers for user",
    "ds01_lifecycle_events_total": "Lifecycle enforcement events by action",
    "ds01_ssh_sessions_active": "Active remote login sessions per user",
    "ds01_ssh_sessions_total": "Active remote login sessions",
    "ds01_gpu_slot_info": "Full GPU slot mapping",
    "ds01_mig_slot_info": "MIG slot mapping for DCGM metric joins",
    "ds01_mig_mapping_status": "MIG slot mapping health (1=ok, 0=mismatch)",
    "ds01_unmanaged_gpu_container": "Unmanaged container with GPU access",
    "ds01_unmanaged_gpu_count": "Total unmanaged GPU containers",
    "ds01_unmanaged_gpu_running": "Running unmanaged GPU containers",
    "ds01_user_group_info": "User group membership",
    "ds01_group_members_total": "Users per group",
    "ds01_user_memory_current_bytes": "Resident memory of a user's processes",
}
# DS01 emits every action, 0 when none happened; gpufleet enforces nothing, so all stay 0.
LIFECYCLE_ACTIONS = ("idle_kill", "runtime_kill", "oom_kill", "gpu_warning", "memory_warning",
                     "container_warning", "bare_metal_warning")
EXPORTER_TYPE = "gpufleet"
# The hub's events (hub/usage) under DS01's event types: DS01 logs a GPU allocated or released
# and a container started or stopped; a gpufleet job (Slurm job, pod or container) is what
# DS01's container is, as container_of names it.
EVENTS_24H = ("ds01_events_24h_total", "Events in last 24 hours by type")
EVENT_TYPES = {"gpu_taken": "gpu.allocated", "gpu_released": "gpu.released", "job_started": "container.started",
               "job_ended": "container.stopped"}


def _lbl(**labels: str) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())


def slot_names(snap: NodeSnapshot) -> dict[tuple[int, int | None], str]:
    out: dict[tuple[int, int | None], str] = {}
    for g in snap.gpus:
        out[(g.index, None)] = str(g.index)
        for pos, gi in enumerate(sorted({m.gpu_instance for m in g.mig})):
            out[(g.index, gi)] = f"{g.index}.{pos}"
    return out


def container_of(a: Allocation) -> str:
    if a.container:
        return a.container
    if a.pod:
        return f"{a.namespace}/{a.pod}" if a.namespace else a.pod
    return f"slurm-{a.slurm_job}" if a.slurm_job else ""


def _held(snap: NodeSnapshot) -> Iterable[Allocation]:
    return (a for a in snap.allocations if a.state != "free")


def _series(snap: NodeSnapshot) -> dict[str, list[str]]:
    """Each family's sample lines (name{labels} value)."""
    s: dict[str, list[str]] = defaultdict(list)
    s["ds01_exporter_info"].append(f"ds01_exporter_info{{{_lbl(version=__version__, type=EXPORTER_TYPE)}}} 1")
    slots = slot_names(snap)

    allocated: dict[tuple[str, ...], int] = {}
    equivalents: dict[tuple[str, ...], float] = defaultdict(float)
    containers: dict[tuple[str, str], bool] = {}  # (container, interface) -> stopped
    user_containers: dict[str, set[str]] = defaultdict(set)
    unmanaged: dict[str, tuple[str, set[str], bool]] = {}
    for a in _held(snap):
        slot = slots.get((a.gpu, a.gpu_instance), str(a.gpu))
        profile = a.profile or "full"
        name = container_of(a)
        allocated[(slot, name, a.user, a.source, profile)] = 1
        equivalents[(slot, a.user, a.source, profile)] += a.gpu_equivalents
        if name:
            containers[(name, a.source)] = containers.get((name, a.source), True) and a.stopped
            user_containers[a.user].add(name)
        if a.unmanaged:
            user, gpus, stopped = unmanaged.get(name, (a.user, set(), True))
            gpus.add(slot)
            unmanaged[name] = (user, gpus, stopped and a.stopped)
    for (slot, name, user, iface, profile) in allocated:
        s["ds01_gpu_allocated"].append(
            f"ds01_gpu_allocated{{{_lbl(gpu_slot=slot, container=name, user=user, interface=iface, profile=profile)}}} 1")
    for (slot, user, iface, profile), eq in equivalents.items():
        s["ds01_gpu_equivalents"].append(
            f"ds01_gpu_equivalents{{{_lbl(gpu_slot=slot, user=user, interface=iface, profile=profile)}}} "
            f"{format_value(round(eq, 6))}")
    by_iface: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (_, iface), is_stopped in containers.items():
        by_iface[iface][1 if is_stopped else 0] += 1
    for iface, (n_running, n_stopped) in sorted(by_iface.items()):
        s["ds01_containers_total"].append(
            f'ds01_containers_total{{{_lbl(status="running", interface=iface)}}} {n_running}')
        s["ds01_containers_total"].append(
            f'ds01_containers_total{{{_lbl(status="stopped", interface=iface)}}} {n_stopped}')

    groups: dict[str, set[str]] = defaultdict(set)
    for u in snap.usage:
        v = u.values
        if "gpus_allocated" in v:
            s["ds01_user_gpus_allocated"].append(
                f"ds01_user_gpus_allocated{{{_lbl(user=u.user)}}} {format_value(v['gpus_allocated'])}")
            s["ds01_user_gpu_equivalents"].append(
                f"ds01_user_gpu_equivalents{{{_lbl(user=u.user)}}} {format_value(v.get('gpu_equivalents', 0.0))}")
            s["ds01_user_containers_count"].append(
                f"ds01_user_containers_count{{{_lbl(user=u.user)}}} {len(user_containers.get(u.user, ()))}")
        if u.group:
            groups[u.group].add(u.user)
            s["ds01_user_group_info"].append(f"ds01_user_group_info{{{_lbl(user=u.user, group=u.group)}}} 1")
        if "memory_used_bytes" in v:
            s["ds01_user_memory_current_bytes"].append(
                f"ds01_user_memory_current_bytes{{{_lbl(user=u.user, group=u.group)}}} "
                f"{format_value(v['memory_used_bytes'])}")
    for group, members in sorted(groups.items()):
        s["ds01_group_members_total"].append(f"ds01_group_members_total{{{_lbl(group=group)}}} {len(members)}")

    for action in LIFECYCLE_ACTIONS:
        s["ds01_lifecycle_events_total"].append(f"ds01_lifecycle_events_total{{{_lbl(action=action)}}} 0")
    sessions: dict[str, int] = defaultdict(int)
    for login in snap.users:
        if login.host:  # a remote login (ssh); local consoles are not sessions DS01 counts
            sessions[login.name] += 1
    for user, n in sorted(sessions.items()):
        s["ds01_ssh_sessions_active"].append(f"ds01_ssh_sessions_active{{{_lbl(user=user)}}} {n}")
    s["ds01_ssh_sessions_total"].append(f"ds01_ssh_sessions_total {sum(sessions.values())}")

    mig_count = 0
    for g in snap.gpus:
        if not g.mig:
            s["ds01_gpu_slot_info"].append(
                f'ds01_gpu_slot_info{{{_lbl(gpu=str(g.index), slot=str(g.index), gpu_uuid=g.uuid, mig_enabled="false")}}} 1')
            continue
        uuids: dict[int, str] = {}
        for m in g.mig:
            uuids.setdefault(m.gpu_instance, m.uuid)
        for gi, uuid in sorted(uuids.items()):
            mig_count += 1
            s["ds01_mig_slot_info"].append(
                f"ds01_mig_slot_info{{{_lbl(gpu=str(g.index), gpu_i_id=str(gi), slot=slots[(g.index, gi)], mig_uuid=uuid)}}} 1")
    if mig_count:
        # Our GPU instance ids come from the driver with each instance: nothing is left unmapped.
        s["ds01_mig_mapping_status"].append(f'ds01_mig_mapping_status{{{_lbl(mapped=str(mig_count), unmapped="0")}}} 1')

    for name, (user, gpus, stopped) in sorted(unmanaged.items()):
        s["ds01_unmanaged_gpu_container"].append(
            "ds01_unmanaged_gpu_container{" + _lbl(container=name, user=user, gpu_count=str(len(gpus)),
                                                   access_type="observed", running="false" if stopped else "true")
            + "} 1")
    s["ds01_unmanaged_gpu_count"].append(f"ds01_unmanaged_gpu_count {len(unmanaged)}")
    s["ds01_unmanaged_gpu_running"].append(
        f"ds01_unmanaged_gpu_running {sum(1 for _, _, stopped in unmanaged.values() if not stopped)}")
    return s


def render(snap: NodeSnapshot, openmetrics: bool, out: list[str]) -> None:
    series = _series(snap)
    for name, help_text in FAMILIES.items():
        lines = series.get(name)
        if not lines:
            continue
        if openmetrics and name.endswith(("_total", "_count")):
            # DS01's gauges named *_total and *_count: OpenMetrics keeps those suffixes for counters
            # and summaries, so the family is `unknown` there (Prometheus is answered in the text
            # format, as DS01 answers it).
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} unknown")
        else:
            header(out, name, help_text, "gauge", openmetrics)
        out.extend(lines)


def render_events_24h(counts: Mapping[str, int], out: list[str]) -> None:
    """The hub's last-24-h event counts (keyed by our kinds) as DS01's ds01_events_24h_total.
    Every type is written, 0 when none happened (DS01 writes only those it saw: a dashboard
    summing them reads the same)."""
    name, help_text = EVENTS_24H
    header(out, name, help_text, "gauge", False)
    for kind, event_type in EVENT_TYPES.items():
        out.append(f"{name}{{{_lbl(event_type=event_type)}}} {counts.get(kind, 0)}")


MODE = CompatMode("DS01's ds01_* allocation names (who holds which GPU slot, per-user counts, unmanaged containers)",
                  render, prefers_text=True)
