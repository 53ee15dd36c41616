"""Who owns a process beyond its Unix user: container, Kubernetes pod, Slurm job.

Pure functions over the text of /proc/PID/cgroup and the bytes of /proc/PID/environ, so
each runtime's path layout is tested on strings. Cgroup paths name the container id, the
pod UID and the Slurm job; the pod's name and namespace are not in any cgroup, so they come
from the process environment when a pod spec exported them (downward API), else the pod is
named by its UID.
"""

from __future__ import annotations

import re

from .snapshot import Owner

SHORT_ID = 12

_HEX64 = r"[0-9a-f]{64}"
# Each runtime's cgroup leaf, systemd-driver (`<prefix>-<id>.scope`) and cgroupfs forms.
# Order matters: the first pattern that matches a path segment names the runtime.
_CONTAINER_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("docker", re.compile(rf"^docker-({_HEX64})\.scope$")),
    ("containerd", re.compile(rf"^cri-containerd-({_HEX64})\.scope$")),
    ("crio", re.compile(rf"^crio-({_HEX64})(?:\.scope)?$")),
    ("podman", re.compile(rf"^libpod-({_HEX64})(?:\.scope)?$")),
    ("containerd", re.compile(rf"^nerdctl-({_HEX64})\.scope$")),
)
# cgroupfs driver: `/docker/<id>`, `/kubepods/.../pod<uid>/<id>`, nerdctl's `/<namespace>/<id>`.
_BARE_ID = re.compile(rf"^({_HEX64})$")
# LXC 4+ (`lxc.payload.<name>`); its monitor process sits in `lxc.monitor.<name>`, not the container.
_LXC_PAYLOAD = "lxc.payload."

# Pod UIDs are UUIDs; with the systemd driver their dashes become underscores. Static
# (mirror) pods use a 32-hex config hash without dashes.
_POD = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})(?:\.slice)?$"
)
_SLURM_JOB = re.compile(r"^job_(\d+)$")

# Downward-API names pod specs commonly use for the pod's own name and namespace.
_POD_NAME_VARS = ("POD_NAME", "MY_POD_NAME", "KUBERNETES_POD_NAME", "K8S_POD_NAME")
_POD_NAMESPACE_VARS = ("POD_NAMESPACE", "MY_POD_NAMESPACE", "KUBERNETES_NAMESPACE", "K8S_NAMESPACE")


def parse_environ(data: bytes | str) -> dict[str, str]:
    """NUL-separated KEY=VALUE pairs; entries without '=' are ignored, the last duplicate wins."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    env: dict[str, str] = {}
    for item in data.split("\0"):
        key, sep, value = item.partition("=")
        if sep and key:
            env[key] = value
    return env


def cgroup_paths(text: str) -> list[str]:
    """The path of each line `hierarchy:controllers:path` (v1 has many lines, v2 one `0::`)."""
    paths: list[str] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2]:
            paths.append(parts[2].strip())
    return paths


def _from_path(path: str, owner: Owner) -> None:
    segments = [s for s in path.split("/") if s]
    is_slurm = any("slurm" in s for s in segments)
    in_kube = any(s.startswith("kubepods") for s in segments)
    for seg in segments:
        m = _POD.search(seg)
        if m and in_kube and not owner.pod_uid:
            owner.pod_uid = m.group(1).replace("_", "-")
            continue
        if is_slurm and not owner.slurm_job:
            m = _SLURM_JOB.match(seg)
            if m:
                owner.slurm_job = m.group(1)
                continue
        for runtime, pattern in _CONTAINER_PATTERNS:
            m = pattern.match(seg)
            if m:
                # Nested containers (docker in docker): the innermost, i.e. last, segment wins.
                owner.container, owner.runtime = m.group(1)[:SHORT_ID], runtime
                break
        else:
            m = _BARE_ID.match(seg)
            if m:
                owner.container = m.group(1)[:SHORT_ID]
                # `/docker/<id>` says docker; a bare id under kubepods can be any CRI runtime.
                owner.runtime = "docker" if "docker" in segments else ""
                continue
            if seg.startswith(_LXC_PAYLOAD) and len(seg) > len(_LXC_PAYLOAD):
                owner.container, owner.runtime = seg[len(_LXC_PAYLOAD):], "lxc"
    # LXC before 4.0 used `/lxc/<name>`: the container's name follows the `lxc` segment.
    if segments[:1] == ["lxc"] and len(segments) > 1 and not owner.container:
        owner.container, owner.runtime = segments[1], "lxc"


def owner_from_cgroup(text: str) -> Owner:
    owner = Owner()
    for path in cgroup_paths(text):
        if path != "/":
            _from_path(path, owner)
    return owner


def _first(env: dict[str, str], names: tuple[str, ...]) -> str:
    for n in names:
        if env.get(n):
            return env[n]
    return ""


def apply_environ(owner: Owner, env: dict[str, str], node_hostname: str = "") -> None:
    """Fill what the cgroup cannot say: the pod's name/namespace and a Slurm job id.

    Kubernetes sets HOSTNAME to the pod name, except for hostNetwork pods where it is the
    node's own name; so HOSTNAME names the pod only when it differs from the node's.
    """
    if not owner.slurm_job:
        owner.slurm_job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
    in_pod = bool(owner.pod_uid) or "KUBERNETES_SERVICE_HOST" in env
    if not in_pod:
        return
    name = _first(env, _POD_NAME_VARS)
    if not name and owner.pod_uid:
        host = env.get("HOSTNAME", "")
        if host and host != node_hostname:
            name = host
    if name:
        owner.pod = name
    namespace = _first(env, _POD_NAMESPACE_VARS)
    if namespace:
        owner.namespace = namespace


def attribute(cgroup_text: str | None, environ: bytes | str | None = None, node_hostname: str = "") -> Owner | None:
    """The Owner of one process, or None when it runs in no container, pod or job."""
    owner = owner_from_cgroup(cgroup_text) if cgroup_text else Owner()
    if environ:
        apply_environ(owner, parse_environ(environ), node_hostname)
    if owner.pod_uid and not owner.pod:
        owner.pod = owner.pod_uid
    if owner == Owner():
        return None
    return owner
