"""A simulated host for simulated nodes (`gpufleet up --simulate N`, benchmarks).

Without it every simulated node in one process would report the same real machine. It
derives a plausible host from the simulator's profile and jobs: cores busy with the jobs'
data loaders, memory that jobs hold, counters that grow, the jobs' users logged in and
their processes in the process table. Off by default; `up --simulate` turns it on in
place of the real host collectors.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from ..snapshot import CpuCore, Disk, HostInfo, LoginUser, NetInterface, NodeSnapshot, Process
from .base import CollectContext

SYSTEM_PROCS = (("systemd", "/sbin/init", "root"), ("sshd", "sshd: /usr/sbin/sshd -D", "root"),
                ("containerd", "/usr/bin/containerd", "root"), ("slurmd", "/usr/sbin/slurmd -D", "root"),
                ("node_exporter", "/usr/bin/node_exporter", "prometheus"))


class SimHostCollector:
    name = "simhost"

    def __init__(self, ctx: CollectContext) -> None:
        self.backend: Any = ctx.backend
        self.node = str(ctx.options.get("node", "sim"))
        host = getattr(getattr(self.backend, "profile", None), "host", {}) or {}
        self.cores = int(host.get("cpu_cores", 64))
        self.mem_total = float(host.get("memory_total_bytes", 256 * 1024**3))
        self.rng = random.Random(f"simhost|{self.node}")
        self.boot = time.time() - self.rng.uniform(2, 60) * 86400
        self.net = {"eth0": [self.rng.uniform(1e12, 5e12), self.rng.uniform(1e12, 5e12)],
                    "ib0": [self.rng.uniform(1e13, 5e13), self.rng.uniform(1e13, 5e13)]}
        self.disk_used = {"/": 0.35, "/data": self.rng.uniform(0.4, 0.93)}
        self.disk_io = {"nvme0n1": [self.rng.uniform(1e12, 4e12), self.rng.uniform(1e12, 4e12)]}
        self.last: float | None = None

    def collect(self, snap: NodeSnapshot) -> None:
        now = snap.timestamp
        dt = 0.0 if self.last is None else max(0.0, now - self.last)
        self.last = now
        jobs = self.backend.jobs() if hasattr(self.backend, "jobs") else []
        busy_jobs = [j for j in jobs if j.get("phase") not in ("idle", None)]
        # Data loaders keep a few cores per busy GPU job; the rest idles with noise.
        load_cores = min(self.cores, sum(4 * len(j["gpus"]) for j in busy_jobs))
        rng = self.rng
        snap.host = HostInfo(hostname=self.node, os="Ubuntu", os_version="22.04 (simulated)",
                             kernel="5.15.0-simulated", arch="x86_64",
                             cpu_model="Simulated EPYC 9654 96-Core", boot_time=self.boot)
        cpus = []
        total = 0.0
        for i in range(self.cores):
            u = (0.7 + 0.25 * rng.random()) if i < load_cores else 0.02 * rng.random()
            total += u
            cpus.append(CpuCore(cpu=i, values={"utilization_ratio": round(u, 4), "frequency_hertz": 2.4e9 + (1.3e9 if u > 0.5 else 0)}))
        snap.cpus = cpus
        used = self.mem_total * (0.06 + 0.05 * len(jobs)) + rng.uniform(0, 2e9)
        used = min(used, self.mem_total * 0.97)
        load = total + 0.3 * rng.random()
        snap.values.update({
            "boot_time_seconds": self.boot, "uptime_seconds": now - self.boot,
            "cpu_cores": float(self.cores), "cpu_physical_cores": float(self.cores // 2),
            "cpu_utilization_ratio": round(total / self.cores, 4), "cpu_frequency_hertz": 2.9e9,
            "load1": round(load, 2), "load5": round(load * 0.95, 2), "load15": round(load * 0.9, 2),
            "memory_total_bytes": self.mem_total, "memory_used_bytes": round(used),
            "memory_available_bytes": round(self.mem_total - used),
            "swap_total_bytes": 8 * 1024**3, "swap_used_bytes": 0.0,
        })
        for io in self.disk_io.values():
            io[0] += dt * rng.uniform(1e6, 4e8)
            io[1] += dt * rng.uniform(1e6, 2e8)
        r, w = self.disk_io["nvme0n1"]
        snap.disks = [
            Disk(device="/dev/nvme0n1p2", mountpoint="/", fstype="ext4",
                 values=self._disk(1.8e12, self.disk_used["/"], r, w)),
            Disk(device="/dev/md0", mountpoint="/data", fstype="xfs",
                 values=self._disk(30e12, self.disk_used["/data"], r, w)),
        ]
        nets = []
        for name, ctr in self.net.items():
            rate = 1e9 if name == "ib0" and busy_jobs else 2e6
            ctr[0] += dt * rate * rng.uniform(0.5, 1.5)
            ctr[1] += dt * rate * rng.uniform(0.5, 1.5)
            nets.append(NetInterface(interface=name, values={
                "receive_bytes_total": math.floor(ctr[0]), "transmit_bytes_total": math.floor(ctr[1]),
                "receive_packets_total": math.floor(ctr[0] / 4000), "transmit_packets_total": math.floor(ctr[1] / 4000),
                "receive_errors_total": 0, "transmit_errors_total": 0,
                "receive_drops_total": 0, "transmit_drops_total": 0}))
        snap.networks = nets
        self._people(snap, jobs, now)

    def _disk(self, size: float, used_ratio: float, r: float, w: float) -> dict[str, float]:
        used = round(size * used_ratio)
        return {"size_bytes": size, "used_bytes": used, "free_bytes": size - used,
                "read_bytes_total": math.floor(r), "written_bytes_total": math.floor(w),
                "reads_total": math.floor(r / 65536), "writes_total": math.floor(w / 65536)}

    def _people(self, snap: NodeSnapshot, jobs: list[dict[str, Any]], now: float) -> None:
        procs = [Process(pid=i + 1, ppid=0 if i == 0 else 1, user=u, name=n, command=c, state="S",
                         memory_bytes=50_000_000, started=self.boot)
                 for i, (n, c, u) in enumerate(SYSTEM_PROCS)]
        users: dict[str, LoginUser] = {}
        for j in jobs:
            user = str(j["user"])
            busy = j.get("phase") not in ("idle", None)
            for pid in j["pids"]:
                procs.append(Process(pid=int(pid), ppid=1, user=user, name="python", command=str(j["command"]),
                                     state="R" if busy else "S", cpu_ratio=4.0 if busy else 0.05,
                                     memory_bytes=8 * 1024**3, started=float(j["start"]),
                                     cpu_seconds=max(0.0, now - float(j["start"])) * (3.5 if busy else 0.1)))
            if user not in users and len(users) < 6:
                users[user] = LoginUser(name=user, terminal=f"pts/{len(users)}", host="10.0.0.%d" % (len(users) + 10),
                                        started=float(j["start"]))
        snap.processes = procs
        snap.users = list(users.values())
        snap.values["processes"] = float(len(procs))
        snap.values["users_logged_in"] = float(len(users))

