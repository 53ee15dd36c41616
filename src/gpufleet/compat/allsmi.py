"""`--compat all-smi`: all-smi v0.25's all_smi_* names, units and labels, as its API mode
exports them (facts: all-smi's src/api/metrics/*.rs at v0.25.0).

Labels per family, as all-smi writes them:
- per device: `gpu` (the model), `instance`, `gpu_uuid`, `gpu_index`; all_smi_gpu_info adds `type`;
- all_smi_energy_consumed_joules_total (a counter): `host`, `scope="gpu"`, `gpu_index`, `gpu_uuid`;
- CPU: `cpu_model`, `instance`, `hostname`, `index`; memory and swap: `instance`, `hostname`, `index`;
- disks: `instance`, `mount_point`, `index`; MIG instances: the device's labels with `host`,
  `mig_instance`, `mig_uuid`, `mig_profile`, `gpu_instance_id`, `compute_instance_id`;
- GPU processes: `pid`, `name`, `user`, `device_id`, `gpu_index`, `device_uuid`, `command`.

all-smi writes a HELP and TYPE line before every sample (grouped by device); this writes
each family once, with all its samples, as the exposition format asks. The per-device labels
before 2026-04 (`uuid`, `index`) are `--compat all-smi-legacy` (allsmi_legacy.py).
"""

from __future__ import annotations

import os

from ..snapshot import NodeSnapshot
from ..textformat import escape, format_value
from .base import CompatMode, Labeller, families, render_families

FAMILIES = families(lambda m: m.allsmi)
ENERGY = "all_smi_energy_consumed_joules_total"
# Not one catalogue reading each: all-smi's memory utilisation (%) is used over total.
MEMORY_UTILIZATION = "all_smi_memory_utilization"


def _command_name(command: str) -> str:
    return os.path.basename(command.split(" ", 1)[0]) if command else ""


def labeller(snap: NodeSnapshot, legacy: bool = False) -> Labeller:
    host = escape(snap.node)
    inst = f'instance="{host}"'
    cpu = f'cpu_model="{escape(snap.host.cpu_model)}",{inst},hostname="{host}",index="0"'
    mem = f'{inst},hostname="{host}",index="0"'
    disk_index = {d.mountpoint: str(i) for i, d in enumerate(snap.disks)}
    uuid_l, index_l = ("uuid", "index") if legacy else ("gpu_uuid", "gpu_index")

    def device(ids: tuple[str, ...]) -> str:
        return f'gpu="{escape(ids[2])}",{inst},{uuid_l}="{escape(ids[1])}",{index_l}="{ids[0]}"'

    def labels(name: str, scope: str, ids: tuple[str, ...]) -> str | None:
        if scope == "gpu":
            if name == ENERGY:
                return None if legacy else f'host="{host}",scope="gpu",gpu_index="{ids[0]}",gpu_uuid="{escape(ids[1])}"'
            return device(ids)
        if scope == "node":
            if legacy:
                return inst
            return cpu if name.startswith("all_smi_cpu_") else mem
        if scope == "disk":
            return f'{inst},mount_point="{escape(ids[1])}",index="{disk_index.get(ids[1], "0")}"'
        if scope == "mig":
            return (f'{device(ids)},host="{host}",mig_instance="{ids[4]}",mig_uuid="",'
                    f'mig_profile="{escape(ids[6])}",gpu_instance_id="{ids[4]}",compute_instance_id="{ids[5]}"')
        if scope == "gpu_process":
            gpu, uuid, pid, user, command = ids[:5]
            return (f'pid="{pid}",name="{escape(_command_name(command))}",user="{escape(user)}",'
                    f'device_id="{gpu}",gpu_index="{gpu}",device_uuid="{escape(uuid)}",command="{escape(command)}"')
        return None

    return labels


def render_mode(snap: NodeSnapshot, openmetrics: bool, out: list[str], legacy: bool) -> None:
    label = labeller(snap, legacy)
    render_families(snap, FAMILIES, label, openmetrics, out)
    from ..scopes import gpu_ids

    info = []
    for g in snap.gpus:
        extra = f',driver_version="{escape(g.info["driver_version"])}"' if g.info.get("driver_version") else ""
        kind = escape(g.info.get("type") or "GPU")
        info.append(f'all_smi_gpu_info{{{label("all_smi_gpu_info", "gpu", gpu_ids(g))},type="{kind}"{extra}}} 1')
    if info:
        out.append("# HELP all_smi_gpu_info GPU/NPU device information")
        out.append("# TYPE all_smi_gpu_info gauge")
        out.extend(info)
    total, used = snap.values.get("memory_total_bytes"), snap.values.get("memory_used_bytes")
    if not legacy and total and used is not None:
        out.append(f"# HELP {MEMORY_UTILIZATION} Memory utilization percentage")
        out.append(f"# TYPE {MEMORY_UTILIZATION} gauge")
        out.append(f'{MEMORY_UTILIZATION}{{{label(MEMORY_UTILIZATION, "node", ())}}} {format_value(used / total * 100)}')
    if not legacy:
        out.append("# HELP all_smi_up 1 once the exporter has completed a collection cycle, 0 before that")
        out.append("# TYPE all_smi_up gauge")
        out.append(f'all_smi_up{{instance="{escape(snap.node)}",hostname="{escape(snap.node)}"}} 1')


def render(snap: NodeSnapshot, openmetrics: bool, out: list[str]) -> None:
    render_mode(snap, openmetrics, out, legacy=False)


MODE = CompatMode("all-smi v0.25's all_smi_* names and labels (gpu_uuid, gpu_index)", render, names="all_smi")
