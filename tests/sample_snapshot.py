"""A hand-built snapshot for exposition and API tests (no collectors involved)."""

from __future__ import annotations

from gpufleet.snapshot import (
    CollectorStatus, CpuCore, Disk, Gpu, GpuProcess, HostInfo, MigInstance, NetInterface, NodeSnapshot,
    Owner, UserUsage,
)


def sample_snapshot(node: str = "n1") -> NodeSnapshot:
    return NodeSnapshot(
        node=node,
        timestamp=1700000000.0,
        backend="sim",
        host=HostInfo(hostname=node, os="Debian GNU/Linux", os_version="12", kernel="6.1.0", arch="x86_64",
                      cpu_model='Xeon "Gold"', boot_time=1699990000.0),
        values={"memory_total_bytes": 64e9, "memory_used_bytes": 12.5e9, "load1": 0.75, "gpus": 2.0},
        cpus=[CpuCore(cpu=0, values={"utilization_ratio": 0.5}), CpuCore(cpu=1, values={"utilization_ratio": 0.25})],
        disks=[Disk(device="/dev/vda1", mountpoint="/", fstype="ext4", values={"size_bytes": 1e11})],
        networks=[NetInterface(interface="eth0", values={"receive_bytes_total": 12345.0})],
        gpus=[
            Gpu(index=0, uuid="GPU-aaa", model="NVIDIA H100 80GB HBM3", vendor="nvidia",
                info={"driver_version": "550.54", "pci_bus_id": "00000000:18:00.0"},
                values={"up": 1.0, "utilization_ratio": 0.87, "memory_used_bytes": 2 * 1024**3,
                        "temperature_celsius": 71.0, "power_watts": 512.25, "energy_joules_total": 1234.5,
                        "sm_clock_hertz": 1.98e9},
                processes=[GpuProcess(pid=4242, memory_bytes=1024**3, user="alice", command="python train.py",
                                      owner=Owner(container="abcdef123456", pod="train-0", namespace="ml"))]),
            Gpu(index=1, uuid="GPU-bbb", model="NVIDIA A100 80GB", vendor="nvidia",
                values={"up": 1.0, "utilization_ratio": 0.0},
                mig=[MigInstance(gpu_instance=1, compute_instance=0, profile="3g.40gb",
                                 values={"memory_used_bytes": 3 * 1024**2})]),
        ],
        usage=[UserUsage(user="alice", values={"gpu_memory_used_bytes": float(1024**3), "gpus_in_use": 1.0})],
        collectors=[CollectorStatus(collector="cpu", success=True, duration=0.001),
                    CollectorStatus(collector="disks", success=False, duration=0.002, error="boom", errors_total=3)],
        agent={"collections_total": 7.0},
    )
