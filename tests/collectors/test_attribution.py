"""Container, pod and Slurm attribution from real-world /proc/PID/cgroup and environ text."""

from __future__ import annotations


import pytest

from gpufleet.attribution import attribute, cgroup_paths, owner_from_cgroup, parse_environ
from gpufleet.snapshot import Owner
from conftest import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "proc"
ID = "8f3c2e1d0b4a" + "9" * 52  # a 64-hex container id
SHORT = ID[:12]
UID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
UID_ = UID.replace("-", "_")


@pytest.mark.parametrize(("cgroup", "runtime"), [
    # Docker, cgroup v2 with the systemd driver, and v1 with cgroupfs (many controllers).
    (f"0::/system.slice/docker-{ID}.scope\n", "docker"),
    (f"12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/docker/{ID}\n", "docker"),
    (f"0::/docker/{ID}\n", "docker"),
    # Docker in docker: the innermost container counts.
    (f"0::/docker/{'1' * 64}/docker/{ID}\n", "docker"),
    # containerd outside Kubernetes (nerdctl) and inside it.
    (f"0::/system.slice/nerdctl-{ID}.scope\n", "containerd"),
    (f"0::/system.slice/cri-containerd-{ID}.scope\n", "containerd"),
    # CRI-O, with systemd and with cgroupfs.
    (f"0::/machine.slice/crio-{ID}.scope\n", "crio"),
    (f"0::/kubepods/besteffort/pod{UID}/crio-{ID}\n", "crio"),
    # Podman rootful, rootful with a nested `container` cgroup, rootless, and cgroupfs.
    (f"0::/machine.slice/libpod-{ID}.scope\n", "podman"),
    (f"0::/machine.slice/libpod-{ID}.scope/container\n", "podman"),
    (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n", "podman"),
    (f"1:name=systemd:/libpod_parent/libpod-{ID}\n", "podman"),
    # cgroup v1 with the systemd driver (one line per controller): docker, containerd, podman.
    (f"12:pids:/system.slice/docker-{ID}.scope\n4:memory:/system.slice/docker-{ID}.scope\n"
     f"1:name=systemd:/system.slice/docker-{ID}.scope\n", "docker"),
    (f"11:devices:/system.slice/cri-containerd-{ID}.scope\n1:name=systemd:/system.slice/cri-containerd-{ID}.scope\n",
     "containerd"),
    (f"9:memory:/machine.slice/libpod-{ID}.scope\n1:name=systemd:/machine.slice/libpod-{ID}.scope\n", "podman"),
    # nerdctl with cgroupfs names the containerd namespace, not the runtime: an id, runtime unknown.
    (f"0::/default/{ID}\n", ""),
    (f"5:memory:/k8s.io/{ID}\n", ""),
])
def test_container_runtimes(cgroup: str, runtime: str) -> None:
    o = attribute(cgroup)
    assert o is not None
    assert (o.container, o.runtime) == (SHORT, runtime)


@pytest.mark.parametrize("cgroup", [
    f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n",
    f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n",
    # Guaranteed QoS pods sit right under kubepods.
    f"0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope\n",
    f"11:memory:/kubepods/burstable/pod{UID}/{ID}\n0::/\n",
    f"4:cpu,cpuacct:/kubepods/pod{UID}/{ID}\n",
    f"0::/kubepods/besteffort/pod{UID}/{ID}\n",
    f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope\n",
    f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope\n",
    # cgroup v1 with the kubelet's systemd driver (one line per controller).
    f"12:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
    f"3:devices:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
    f"1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
    f"cri-containerd-{ID}.scope\n",
])
def test_kubernetes_pod_uid_and_container(cgroup: str) -> None:
    o = attribute(cgroup)
    assert o is not None
    assert o.pod_uid == UID
    assert o.pod == UID  # no name in the environment: the UID names the pod
    assert o.container == SHORT
    assert o.namespace == ""


def test_static_pod_uid_is_a_config_hash() -> None:
    o = owner_from_cgroup(f"0::/kubepods/burstable/pod6b3b1d9e2fb0dbd4a2d2f7a6e3c4d5e6/{ID}\n")
    assert o.pod_uid == "6b3b1d9e2fb0dbd4a2d2f7a6e3c4d5e6"


def test_pod_sandbox_pause_container_belongs_to_the_pod() -> None:
    # The pause process is just another container of the pod.
    o = attribute(f"0::/kubepods/pod{UID}/{'a' * 64}\n")
    assert o is not None and o.pod_uid == UID and o.container == "a" * 12


def test_pod_name_and_namespace_from_environment() -> None:
    env = b"PATH=/usr/bin\0HOSTNAME=web-5d8f-xk2p\0POD_NAMESPACE=prod\0KUBERNETES_SERVICE_HOST=10.96.0.1\0"
    o = attribute(f"0::/kubepods/burstable/pod{UID}/{ID}\n", env, node_hostname="node-1")
    assert o is not None
    assert (o.pod, o.namespace, o.pod_uid) == ("web-5d8f-xk2p", "prod", UID)
    # An explicit downward-API name wins over HOSTNAME.
    o = attribute(f"0::/kubepods/pod{UID}/{ID}\n", b"HOSTNAME=x\0MY_POD_NAME=real\0MY_POD_NAMESPACE=ns\0")
    assert o is not None and (o.pod, o.namespace) == ("real", "ns")


def test_host_network_pod_hostname_is_not_the_pod_name() -> None:
    o = attribute(f"0::/kubepods/pod{UID}/{ID}\n", b"HOSTNAME=node-1\0", node_hostname="node-1")
    assert o is not None and o.pod == UID


def test_hostname_outside_kubernetes_is_ignored() -> None:
    o = attribute(f"0::/docker/{ID}\n", b"HOSTNAME=8f3c2e1d0b4a\0")
    assert o is not None and o.pod == "" and o.namespace == ""


@pytest.mark.parametrize(("cgroup", "job"), [
    ("12:pids:/slurm/uid_1000/job_1234/step_0/task_0\n4:memory:/slurm/uid_1000/job_1234/step_0\n", "1234"),
    ("0::/slurm/uid_1000/job_1234/step_batch\n", "1234"),
    ("4:cpuset:/slurm/uid_1000/job_77/step_extern\n", "77"),
    # cgroup v2 plugin: slurmstepd's scope holds the jobs.
    ("0::/system.slice/slurmstepd.scope/job_5678/step_0/user/task_0\n", "5678"),
    # Several slurmd on one host (multiple-slurmd builds): /slurm_<node>/...
    ("4:memory:/slurm_node01/uid_1000/job_42/step_1\n", "42"),
    ("0::/system.slice/slurmstepd.scope/job_9\n", "9"),
    # cgroup v1 with slurmd under systemd: the job lines, beside slurmd's own service cgroup.
    ("11:devices:/slurm/uid_1000/job_81234/step_0/task_1\n1:name=systemd:/system.slice/slurmd.service\n", "81234"),
])
def test_slurm_jobs_from_cgroup(cgroup: str, job: str) -> None:
    o = attribute(cgroup)
    assert o is not None and o.slurm_job == job and o.container == ""


def test_job_segment_outside_slurm_is_not_a_job() -> None:
    assert attribute("0::/system.slice/job_1234.service\n") is None
    assert attribute("0::/user.slice/job_12\n") is None


def test_slurm_job_from_environment() -> None:
    o = attribute("0::/user.slice/user-1000.slice/session-4.scope\n", b"SLURM_JOB_ID=31337\0SLURM_JOB_USER=ann\0")
    assert o is not None and o.slurm_job == "31337"
    old = attribute("0::/\n", b"SLURM_JOBID=12\0")
    assert old is not None and old.slurm_job == "12"


def test_cgroup_job_wins_over_environment() -> None:
    o = attribute("0::/slurm/uid_1/job_5/step_0\n", b"SLURM_JOB_ID=6\0")
    assert o is not None and o.slurm_job == "5"


@pytest.mark.parametrize("cgroup", [
    "0::/\n",
    "0::/init.scope\n",
    "0::/user.slice/user-1000.slice/session-2.scope\n",
    "0::/system.slice/ssh.service\n",
    "12:pids:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-c1.scope\n0::/user.slice\n",
    "0::/system.slice/docker.service\n",  # dockerd itself is not inside a container
    "0::/system.slice/containerd.service\n",
    f"0::/machine.slice/libpod-conmon-{ID}.scope\n",  # podman's monitor, outside the container
    "",
])
def test_plain_host_processes_have_no_owner(cgroup: str) -> None:
    assert attribute(cgroup, b"PATH=/bin\0HOME=/root\0") is None


def test_lxc_containers() -> None:
    o = attribute("0::/lxc.payload.web01/system.slice/nginx.service\n")
    assert o is not None and (o.container, o.runtime) == ("web01", "lxc")
    o = attribute("5:memory:/lxc/db02\n")
    assert o is not None and (o.container, o.runtime) == ("db02", "lxc")
    assert attribute("0::/lxc.monitor.web01\n") is None


def test_parse_environ() -> None:
    assert parse_environ(b"A=1\0B=x=y\0EMPTY=\0noequals\0\0A=2\0") == {"A": "2", "B": "x=y", "EMPTY": ""}
    assert parse_environ("K=v\0") == {"K": "v"}
    assert parse_environ(b"") == {}
    assert parse_environ(b"BAD=\xff\0") == {"BAD": "\ufffd"}


def test_cgroup_paths_v1_and_v2() -> None:
    assert cgroup_paths("12:pids:/a\n1:name=systemd:/b:c\n0::/d\nbroken\n") == ["/a", "/b:c", "/d"]


def test_fixture_tree_processes() -> None:
    def owner(pid: int) -> Owner | None:
        return attribute((FIXTURES / str(pid) / "cgroup").read_text(), (FIXTURES / str(pid) / "environ").read_bytes(),
                         node_hostname="gpu-node-01")

    docker = owner(4242)
    assert docker is not None and (docker.container, docker.runtime, docker.pod) == ("4d2a6e1b9c3f", "docker", "")
    pod = owner(5150)
    assert pod == Owner(container="f1e2d3c4b5a6", runtime="containerd", pod="trainer-7c9f8-abcde",
                        pod_uid="0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", namespace="ml-team")
    job = owner(6000)
    assert job is not None and job.slurm_job == "1234"
    env_job = owner(6001)
    assert env_job is not None and env_job.slurm_job == "999"
    assert owner(1) is None
