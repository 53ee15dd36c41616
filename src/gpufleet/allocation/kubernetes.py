"""Allocations from Kubernetes: which pod's container was given which GPU, from the kubelet.

The kubelet's PodResourcesLister (unix socket /var/lib/kubelet/pod-resources/kubelet.sock)
answers `List` with every pod's devices. Speaking gRPC would add grpcio to the agent, so the
agent runs a command that prints the response as JSON (its protobuf JSON form, e.g.
`grpcurl -plaintext -unix /var/lib/kubelet/pod-resources/kubelet.sock
v1.PodResourcesLister/List`) and `parse_pod_resources` reads it: camelCase (protobuf JSON,
grpcurl) or snake_case (the .proto's own names) keys.

Device ids are what the device plugin hands out: GPU UUIDs (NVIDIA, `nvidia.com/gpu`), MIG
UUIDs (`nvidia.com/mig-1g.10gb`, or `nvidia.com/gpu` under the single strategy), or indices;
a grant carries the id as a UUID, or as an index when it is a plain number.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Any

from .grant import Grant
from .jsonshape import json_list

SOURCE = "kubernetes"
# Resource names that are accelerators (NVIDIA's plugin, its MIG resources, AMD's, Intel's).
GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/mig-", "amd.com/gpu", "gpu.intel.com/")


class PodResourcesError(ValueError):
    pass


def _get(d: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in d:
            return d[n]
    return None


def is_gpu_resource(name: str) -> bool:
    return any(name == r or (r.endswith(("-", "/")) and name.startswith(r)) for r in GPU_RESOURCES)


def parse_pod_resources(data: bytes | str) -> list[Grant]:
    """Grants in a PodResourcesLister List response (JSON); PodResourcesError says what is wrong."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise PodResourcesError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise PodResourcesError("expected the List response object with \"podResources\"")
    pods = _get(doc, "podResources", "pod_resources")
    if pods is None:
        return []  # protobuf JSON leaves an empty list out
    if not isinstance(pods, list):
        raise PodResourcesError("\"podResources\" is not a list")
    out: list[Grant] = []
    for pod in pods:
        if not isinstance(pod, dict):
            continue
        name, namespace = str(pod.get("name") or ""), str(pod.get("namespace") or "")
        for c in json_list(pod.get("containers"), f"pod {namespace}/{name}: containers", PodResourcesError):
            if not isinstance(c, dict):
                continue
            for dev in json_list(c.get("devices"), f"pod {namespace}/{name}: devices", PodResourcesError):
                if not isinstance(dev, dict):
                    continue
                resource = str(_get(dev, "resourceName", "resource_name") or "")
                if not is_gpu_resource(resource):
                    continue
                ids = _get(dev, "deviceIds", "device_ids")
                for dev_id in json_list(ids, f"pod {namespace}/{name}: deviceIds", PodResourcesError):
                    dev_id = str(dev_id)
                    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
                    gpu = int(dev_id) if dev_id.isascii() and dev_id.isdigit() and len(dev_id) <= 9 else None
                    out.append(Grant(SOURCE, gpu=gpu, uuid="" if gpu is not None else dev_id,
                                     pod=name, namespace=namespace, container=str(c.get("name") or "")))
    return out


Runner = Callable[[list[str]], bytes]


def run_command(argv: list[str], timeout: float = 10.0) -> bytes:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise PodResourcesError(f"{argv[0]} not found: fix --allocation-pod-resources") from None
    except subprocess.TimeoutExpired:
        raise PodResourcesError(f"{argv[0]} took over {timeout:g} s (is the kubelet answering?)") from None
    except OSError as e:
        raise PodResourcesError(f"cannot run {argv[0]}: {e.strerror or e}") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PodResourcesError(f"{argv[0]} failed ({done.returncode}): {tail[-1] if tail else 'no output'}")
    return done.stdout


class PodResourcesSource:
    """Runs the configured command at most every `refresh` seconds."""

    def __init__(self, command: str, refresh: float = 30.0, runner: Runner = run_command,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as e:  # an unclosed quote: name the flag it came from
            raise PodResourcesError(f"--allocation-pod-resources {command!r}: {e}") from None
        if not self.argv:
            raise PodResourcesError("--allocation-pod-resources is empty: give the command that prints "
                                    "the kubelet's pod-resources List response as JSON")
        self.refresh = refresh
        self._run = runner
        self._clock = clock
        self._at: float | None = None
        self._grants: list[Grant] = []

    def grants(self) -> list[Grant]:
        now = self._clock()
        if self._at is None or now - self._at >= self.refresh:
            try:
                self._grants = parse_pod_resources(self._run(self.argv))
            except PodResourcesError as e:
                raise PodResourcesError(f"pod resources ({self.argv[0]}): {e}") from None
            self._at = now
        return self._grants
