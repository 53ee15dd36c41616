"""gpufleet's own text exposition, read back through the catalogue (when an agent's JSON
snapshot is not offered): the inverse of scopes.py's record readers."""

from __future__ import annotations

from ...catalogue import BY_NAME
from ...promtext import Sample
from ...snapshot import GpuProcess, HostInfo, Owner
from .builder import Builder, finite, to_int


def map_samples(samples: list[Sample], b: Builder) -> int:
    ignored = 0
    for name, labels, v in samples:
        m = BY_NAME.get(name)
        if m is None or (m.kind != "info" and not finite(v)):
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
            cpu = to_int(get("cpu"))
            if cpu is None:
                ignored += 1
                continue
            b.cpu(cpu).values[key] = v
        elif scope == "disk":
            b.disk(get("device", ""), get("mountpoint", ""), get("fstype", "")).values[key] = v
        elif scope == "net":
            b.net(get("interface", "")).values[key] = v
        elif scope in ("gpu", "gpu_link", "mig", "gpu_process"):
            index = to_int(get("gpu"))
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
            elif scope == "gpu_link":
                link = to_int(get("link"))
                if link is None:
                    ignored += 1
                    continue
                b.link(g, link).values[key] = v
            elif scope == "mig":
                gi, ci = to_int(get("gpu_instance")), to_int(get("compute_instance"))
                if gi is None or ci is None:
                    ignored += 1
                    continue
                b.mig(g, gi, ci, get("profile", "")).values[key] = v
            else:
                pid = to_int(get("pid"))
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
