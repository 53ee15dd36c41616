"""Prometheus text parsing speed: gpufleet.promtext vs prometheus_client's parser, same input, same run.

    .venv/bin/python benchmarks/bench_promtext.py [--gpus 8] [--nodes 20] [--repeat 5] [--file F ...]

The input is what the hub scrapes most: a gpufleet agent's exposition with dcgm-exporter
compatibility names (rendered from a synthetic 8-GPU node) plus the fixture outputs of
dcgm-exporter and all-smi; `--file` parses saved expositions instead (e.g. a real
node_exporter's `curl -s host:9100/metrics`). Figures are samples per second, best of --repeat runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from gpufleet.exposition import render  # noqa: E402
from gpufleet.promtext import parse  # noqa: E402
from gpufleet.snapshot import CpuCore, Disk, Gpu, NetInterface, NodeSnapshot  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "exporters"


def synthetic_node(gpus: int) -> NodeSnapshot:
    return NodeSnapshot(
        node="bench-node-01", timestamp=time.time(), backend="sim",
        values={"memory_total_bytes": 1.0e12, "memory_used_bytes": 3.3e11, "load1": 12.5},
        cpus=[CpuCore(cpu=i, values={"utilization_ratio": (i % 10) / 10, "frequency_hertz": 2.6e9})
              for i in range(128)],
        disks=[Disk(device=f"/dev/nvme{i}n1", mountpoint=f"/data{i}", fstype="xfs",
                    values={"size_bytes": 3.8e12, "used_bytes": 1.2e12, "free_bytes": 2.6e12}) for i in range(4)],
        networks=[NetInterface(interface=f"ib{i}", values={"receive_bytes_total": 1.5e15 + i,
                                                           "transmit_bytes_total": 1.4e15 + i}) for i in range(8)],
        gpus=[Gpu(index=i, uuid=f"GPU-{i:08x}-1111-2222-3333-444455556666", model="NVIDIA H100 80GB HBM3",
                  vendor="nvidia", info={"driver_version": "550.54.15", "pci_bus_id": f"00000000:{i:02x}:00.0"},
                  values={"up": 1.0, "utilization_ratio": 0.93, "memory_used_bytes": 7.1e10,
                          "memory_free_bytes": 1.4e10, "temperature_celsius": 64.0, "power_watts": 611.5,
                          "energy_joules_total": 9.87654321e7, "sm_clock_hertz": 1.98e9,
                          "memory_clock_hertz": 2.619e9, "sm_active_ratio": 0.81, "tensor_active_ratio": 0.44})
              for i in range(gpus)],
    )


def corpus(gpus: int, nodes: int) -> str:
    parts = [render(synthetic_node(gpus), compat=("dcgm",)).decode() for _ in range(nodes)]
    for f in sorted(FIXTURES.glob("*.txt")):
        parts.append(f.read_text())
    # Each part is a complete exposition; joining them repeats family names, which
    # prometheus_client tolerates in text format.
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def best(fn, text: str, repeat: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    times = []
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn(text)
        times.append(time.perf_counter() - t0)
    return min(times), n


def ours(text: str) -> int:
    return len(parse(text))


def theirs(text: str) -> int:
    return sum(len(f.samples) for f in text_string_to_metric_families(text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--nodes", type=int, default=20, help="agent expositions concatenated into the input")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--file", type=Path, nargs="*", help="saved expositions to parse instead of the corpus")
    args = ap.parse_args()
    text = "".join(f.read_text() for f in args.file) if args.file else corpus(args.gpus, args.nodes)
    lines = text.count("\n")
    t_ours, n_ours = best(ours, text, args.repeat)
    t_theirs, n_theirs = best(theirs, text, args.repeat)
    print(f"input: {len(text) / 1e6:.2f} MB, {lines} lines; samples: ours {n_ours}, prometheus_client {n_theirs}")
    print(f"{'parser':<28}{'seconds':>10}{'samples/s':>14}")
    print(f"{'gpufleet.promtext':<28}{t_ours:>10.4f}{n_ours / t_ours:>14,.0f}")
    print(f"{'prometheus_client.parser':<28}{t_theirs:>10.4f}{n_theirs / t_theirs:>14,.0f}")
    print(f"speed-up: {t_theirs / t_ours:.1f}x")


if __name__ == "__main__":
    main()
