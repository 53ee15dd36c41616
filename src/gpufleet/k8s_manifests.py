"""Kubernetes manifests for gpufleet (`gpufleet k8s manifests`): plain dicts, written as YAML.

- Namespace `gpufleet`.
- Hub: StatefulSet of one (its data on a PersistentVolumeClaim), a ClusterIP Service, and a
  ServiceAccount without an API token: the hub never talks to Kubernetes.
- Agent: a DaemonSet on GPU nodes (`nvidia.com/gpu.present=true`, as NVIDIA's GPU feature
  discovery labels them). It sees the GPUs through the NVIDIA container runtime
  (`NVIDIA_VISIBLE_DEVICES=all`), which does not take a GPU from the device plugin as a
  `nvidia.com/gpu` request would; the host's PID namespace and network (process attribution,
  host network counters, an address Prometheus reaches); CAP_SYS_PTRACE alone for other
  processes' /proc/PID/environ (Slurm and pod ids); the kubelet's pod-resources socket read-only
  for pod attribution; its credential and spool on the node, so a restarted pod keeps its name.
  The join token comes from a Secret. It needs no Kubernetes API either: minimal RBAC is a
  ServiceAccount with no role and no token mounted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import __version__

NS = "gpufleet"
POD_RESOURCES = "/var/lib/kubelet/pod-resources"
TOKEN_SECRET = "gpufleet-agent-token"
AGENT_PORT, HUB_PORT = 9401, 8080


@dataclass(slots=True)
class K8sOptions:
    hub_url: str = f"http://gpufleet-hub.{NS}.svc:{HUB_PORT}"
    image: str = f"gpufleet:{__version__}"
    runtime_class: str = "nvidia"  # "" leaves runtimeClassName out (the default runtime is NVIDIA's)
    storage: str = "20Gi"
    storage_class: str = ""
    pod_resources_command: str = ""  # --allocation-pod-resources for the agent (e.g. a grpcurl line)


def _meta(name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": NS, "labels": _labels(component)}


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "gpufleet", "app.kubernetes.io/component": component}


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": _labels("namespace")}}


def service_account(component: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(f"gpufleet-{component}", component),
            "automountServiceAccountToken": False}


def hub_service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta("gpufleet-hub", "hub"),
            "spec": {"selector": _labels("hub"), "type": "ClusterIP",
                     "ports": [{"name": "http", "port": HUB_PORT, "targetPort": "http", "protocol": "TCP"}]}}


def hub_statefulset(o: K8sOptions) -> dict[str, Any]:
    svc = f"gpufleet-hub.{NS}.svc"
    args = ["hub", "--listen", f"0.0.0.0:{HUB_PORT}", "--data", "/data",
            # agents and browsers name the Service as Host: the hub refuses unknown names (DNS rebinding)
            "--allowed-host", "gpufleet-hub", "--allowed-host", svc, "--allowed-host", f"{svc}.cluster.local",
            "--public-url", o.hub_url]
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": o.storage}}}
    if o.storage_class:
        claim["storageClassName"] = o.storage_class
    container = {
        "name": "hub", "image": o.image, "args": args,
        "ports": [{"name": "http", "containerPort": HUB_PORT, "protocol": "TCP"}],
        # /healthz is 503 while a background job fails (a full disk): not ready, but not restarted for it
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 60, "periodSeconds": 20},
        "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5, "failureThreshold": 60},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "4Gi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta("gpufleet-hub", "hub"),
        "spec": {
            "serviceName": "gpufleet-hub", "replicas": 1,  # one hub per data directory
            "selector": {"matchLabels": _labels("hub")},
            "template": {"metadata": {"labels": _labels("hub")}, "spec": {
                "serviceAccountName": "gpufleet-hub", "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                    "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            }},
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": _labels("hub")}, "spec": claim}],
        },
    }


def agent_daemonset(o: K8sOptions) -> dict[str, Any]:
    args = ["agent", "--listen", f"0.0.0.0:{AGENT_PORT}", "--hub", o.hub_url,
            "--token-file", "/etc/gpufleet/token/token", "--spool", "/var/lib/gpufleet-agent/spool"]
    if o.pod_resources_command:
        args += ["--allocation-pod-resources", o.pod_resources_command]
    container = {
        "name": "agent", "image": o.image, "args": args,
        "env": [
            {"name": "GPUFLEET_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},  # every GPU, none taken from the scheduler
            {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "utility"},  # NVML, nothing more
        ],
        "ports": [{"name": "metrics", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 15},
        "livenessProbe": {"tcpSocket": {"port": "metrics"}, "initialDelaySeconds": 30, "periodSeconds": 30},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [
            {"name": "pod-resources", "mountPath": POD_RESOURCES, "readOnly": True},
            {"name": "token", "mountPath": "/etc/gpufleet/token", "readOnly": True},
            {"name": "state", "mountPath": "/var/lib/gpufleet-agent"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        # root in the container, with every capability dropped but SYS_PTRACE: reading other
        # processes' /proc/PID/environ (Kubernetes grants added capabilities to root only).
        "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"], "add": ["SYS_PTRACE"]}},
    }
    spec: dict[str, Any] = {
        "serviceAccountName": "gpufleet-agent", "automountServiceAccountToken": False,
        "hostPID": True,  # every process of the node, for attribution to users, jobs and pods
        "hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet",  # node's counters and address
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [
            {"name": "pod-resources", "hostPath": {"path": POD_RESOURCES, "type": "Directory"}},
            {"name": "token", "secret": {"secretName": TOKEN_SECRET, "defaultMode": 0o400}},
            {"name": "state", "hostPath": {"path": "/var/lib/gpufleet-agent", "type": "DirectoryOrCreate"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if o.runtime_class:
        spec["runtimeClassName"] = o.runtime_class
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta("gpufleet-agent", "agent"),
        "spec": {"selector": {"matchLabels": _labels("agent")},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
                 "template": {"metadata": {"labels": _labels("agent")}, "spec": spec}},
    }


def token_secret(token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(TOKEN_SECRET, "agent"), "type": "Opaque",
            "stringData": {"token": token}}


def manifests(o: K8sOptions, token: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """File name -> the objects in it, in the order `kubectl apply -f DIR` should meet them."""
    files = {
        "00-namespace.yaml": [namespace()],
        "10-hub.yaml": [service_account("hub"), hub_service(), hub_statefulset(o)],
        "20-agent.yaml": [service_account("agent"), agent_daemonset(o)],
    }
    if token is not None:
        files["15-agent-token-secret.yaml"] = [token_secret(token)]
    return dict(sorted(files.items()))
