"""`gpufleet k8s manifests --out DIR [--hub-url URL]`: YAML for kubectl apply -f DIR."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .errors import UserError


@click.group()
def k8s() -> None:
    """Kubernetes: manifests for the hub and an agent on every GPU node (see docs/deploy.md)."""


@k8s.command("manifests")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="directory to write the YAML files to (new or empty)")
@click.option("--hub-url", metavar="URL", help="where agents push [default: the hub's Service in the cluster]")
@click.option("--image", metavar="IMAGE", help="container image with gpufleet [default: gpufleet:VERSION]")
@click.option("--runtime-class", default="nvidia", show_default=True,
              help="runtimeClassName giving the agent NVIDIA's container runtime ('' to leave it out)")
@click.option("--storage", default="20Gi", show_default=True, help="size of the hub's volume")
@click.option("--storage-class", default="", help="the hub volume's storageClassName [default: the cluster's]")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="also write the agents' join token as a Secret (file mode 0600)")
@click.option("--pod-resources-command", default="", metavar="CMD",
              help="the agent's --allocation-pod-resources (a command printing the kubelet's pod-resources "
                   "List as JSON, e.g. grpcurl in your image)")
def manifests(out: Path, hub_url: str | None, image: str | None, runtime_class: str, storage: str,
              storage_class: str, token_file: Path | None, pod_resources_command: str) -> None:
    """Write Namespace, hub (StatefulSet, Service, volume) and agent DaemonSet manifests."""
    import yaml

    from .k8s_manifests import K8sOptions, manifests as build

    import re

    # Checked here rather than by `kubectl apply` halfway through the files.
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?([KMGTPE]i?|[eE][0-9]+|m|k)?", storage):
        raise UserError(f"--storage {storage!r} is not a Kubernetes quantity: e.g. 20Gi or 500Mi")
    for flag, name in (("--runtime-class", runtime_class), ("--storage-class", storage_class)):
        if name and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name):
            raise UserError(f"{flag} {name!r} is not a Kubernetes name: lower-case letters, digits, '-' and '.'")
    o = K8sOptions(runtime_class=runtime_class, storage=storage, storage_class=storage_class,
                   pod_resources_command=pod_resources_command)
    if hub_url:
        from .syntax import no_credentials_in_url, normalize_hub_url

        o.hub_url = no_credentials_in_url(normalize_hub_url(hub_url), "--hub-url")
    if image:
        o.image = image
    token = None
    if token_file is not None:
        from .config import read_token_file

        token = read_token_file(token_file)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} is not empty: pick a new directory (nothing is overwritten)")
    files = build(o, token)
    made = not out.exists()
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, docs in files.items():
            text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
            secret = any(d["kind"] == "Secret" for d in docs)
            fd = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
            written.append(out / name)
            with os.fdopen(fd, "w") as f:
                f.write(text)
    except OSError as e:  # nothing half-written: what this run wrote goes again
        for p in written:
            p.unlink(missing_ok=True)
        if made and out.is_dir():
            out.rmdir()
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e}); pick a writable directory") from None
    click.echo(f"wrote {', '.join(files)} to {out}")
    if token is None:
        click.echo(f"then: kubectl apply -f {out}; the first join token is in `kubectl -n gpufleet logs "
                   "statefulset/gpufleet-hub`; give it to the agents with `kubectl -n gpufleet create secret "
                   "generic gpufleet-agent-token --from-file=token=FILE`")
    else:
        click.echo(f"then: kubectl apply -f {out}")
