"""`gpufleet k8s manifests`: valid against Kubernetes' own schemas, and its arguments run for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

from access import bearer, make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet, join_token

TOKEN = "gft_k8s0123456789abcdefghijklmnopq"


def _generate(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    out = tmp_path / "k8s"
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    r = subprocess.run(gpufleet("k8s", "manifests", "--out", str(out), "--hub-url", "https://gpus.example.org",
                                "--token-file", str(token), "--image", "registry.lab/gpufleet:1"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    objects = {}
    for f in sorted(out.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out, objects


def test_manifests_pass_the_kubernetes_schemas(tmp_path: Path) -> None:
    out, objects = _generate(tmp_path)
    assert sorted(objects) == ["DaemonSet/gpufleet-agent", "Namespace/gpufleet", "Secret/gpufleet-agent-token",
                               "Service/gpufleet-hub", "ServiceAccount/gpufleet-agent", "ServiceAccount/gpufleet-hub",
                               "StatefulSet/gpufleet-hub"]
    for version in ("1.28", kubernetes_validate.latest_version()):
        for name, doc in objects.items():
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{name} against Kubernetes {version}: {e.message}")
    # minimal RBAC: no roles at all, and no API token in any pod
    assert not any(k.startswith(("Role", "ClusterRole")) for k in objects)
    ds = objects["DaemonSet/gpufleet-agent"]["spec"]["template"]["spec"]
    assert ds["hostPID"] is True and ds["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert ds["automountServiceAccountToken"] is False and ds["runtimeClassName"] == "nvidia"
    agent = ds["containers"][0]
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    assert mounts["pod-resources"] == {"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources",
                                       "readOnly": True}
    assert agent["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"} in agent["env"]
    assert "nvidia.com/gpu" not in str(agent["resources"])  # a monitor takes no GPU from the scheduler
    vols = {v["name"]: v for v in ds["volumes"]}
    assert vols["token"]["secret"]["secretName"] == "gpufleet-agent-token"
    hub = objects["StatefulSet/gpufleet-hub"]["spec"]
    assert hub["replicas"] == 1 and hub["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert objects["Service/gpufleet-hub"]["spec"]["ports"][0]["port"] == 8080
    assert (out / "15-agent-token-secret.yaml").stat().st_mode & 0o777 == 0o600
    assert TOKEN not in "".join(p.read_text() for p in out.glob("*.yaml") if "secret" not in p.name)
    r = subprocess.run(gpufleet("k8s", "manifests", "--out", str(out)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not empty" in r.stderr


@pytest.mark.realparts
def test_the_manifests_arguments_run(tmp_path: Path) -> None:
    """The containers' args, with only addresses and paths swapped, start a real hub and agent."""
    _, objects = _generate(tmp_path)
    hub_args = objects["StatefulSet/gpufleet-hub"]["spec"]["template"]["spec"]["containers"][0]["args"]
    agent_args = objects["DaemonSet/gpufleet-agent"]["spec"]["template"]["spec"]["containers"][0]["args"]
    port, data = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    swap = {f"0.0.0.0:{8080}": f"127.0.0.1:{port}", "/data": str(data)}
    hub = Proc(gpufleet(*[swap.get(a, a) for a in hub_args]), tmp_path / "hub.log")
    agent = None
    try:
        hub.wait_http(f"{url}/healthz")
        # an agent in the cluster names the Service as Host
        r = httpx.get(f"{url}/healthz", headers={"Host": "gpufleet-hub.gpufleet.svc:8080"}, timeout=5)
        assert r.status_code == 200
        token = join_token(data)
        (tmp_path / "tok").write_text(token)
        swap = {"0.0.0.0:9401": f"127.0.0.1:{free_port()}", "https://gpus.example.org": url,
                "/etc/gpufleet/token/token": str(tmp_path / "tok"), "/var/lib/gpufleet-agent/spool": str(tmp_path / "sp")}
        agent = Proc(gpufleet(*[swap.get(a, a) for a in agent_args], "--simulate", "2xRTX4090"),
                     tmp_path / "agent.log", env={"GPUFLEET_NODE": "k8s-node-1"})
        h = bearer(make_api_key(data, "viewer"))
        eventually(lambda: httpx.get(f"{url}/api/v1/nodes/k8s-node-1", headers=h, timeout=5).status_code == 200,
                   timeout=30, what="the DaemonSet's agent registered under the node's name")
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
