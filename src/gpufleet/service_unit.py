"""systemd units for the agent and the hub (`gpufleet service install`): text only, no side effects.

Both run as the `gpufleet` system user with `Type=notify` (READY once serving; the watchdog
pinged from the loop that proves the process works, see sdnotify.py) and `Restart=always`.
Hardening is as strict as each job allows:

- agent: needs the GPUs (DeviceAllow for /dev/nvidia*, /dev/kfd and DRM under a closed device
  policy) and other users' /proc entries for process attribution. /proc/PID/stat, status,
  cmdline and cgroup are world-readable; environ (Slurm job and pod ids), io and the exe link
  need ptrace read access, hence CAP_SYS_PTRACE as the one ambient capability, while the
  ptrace family of system calls stays forbidden (SystemCallFilter) so the capability is used
  for reading /proc only. /home is read-only rather than hidden so disk usage of /home is right.
- hub: no devices, no capabilities, its data in StateDirectory (/var/lib/gpufleet-hub, 0700).

Secrets never sit in the unit: the agent's join token comes through LoadCredential from a
root-only file and is handed over as `%d/token` (the service's own credentials directory).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

USER = "gpufleet"
CONFIG_DIR = Path("/etc/gpufleet")
UNIT_DIR = Path("/etc/systemd/system")
WATCHDOG_SEC = 60
DEFAULT_LISTEN = {"agent": "0.0.0.0:9401", "hub": "0.0.0.0:8080"}
DESCRIPTION = {
    "agent": "gpufleet agent: accelerator, host and process metrics for the hub and Prometheus",
    "hub": "gpufleet hub: fleet registry, ingest, history, alerts, API and web UI",
}

COMMON_HARDENING = [
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "RemoveIPC=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources @debug process_vm_readv process_vm_writev",
    "SystemCallErrorNumber=EPERM",
    "UMask=0077",
]

AGENT_HARDENING = [
    "ProtectHome=read-only",
    # Other users' /proc/PID/environ, io and exe for process attribution (see the docstring).
    "AmbientCapabilities=CAP_SYS_PTRACE",
    "CapabilityBoundingSet=CAP_SYS_PTRACE",
    "DevicePolicy=closed",
    "DeviceAllow=char-nvidia* rw",  # nvidiactl, nvidia0..N, nvidia-uvm, nvidia-caps (MIG), nvswitch
    "DeviceAllow=/dev/kfd rw",  # AMD: ROCm SMI
    "DeviceAllow=char-drm rw",  # AMD: /dev/dri/renderD*
]

HUB_HARDENING = [
    "ProtectHome=yes",
    "PrivateDevices=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "StateDirectory=gpufleet-hub",
    "StateDirectoryMode=0700",
]


@dataclass(slots=True)
class UnitSpec:
    kind: str  # "agent" | "hub"
    command: list[str]  # how to run gpufleet: [python, "-m", "gpufleet"] or [/path/to/gpufleet]
    listen: str = ""
    hub_url: str | None = None  # agent: push here
    token_file: Path = CONFIG_DIR / "agent.token"
    env_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # agent: video, render where they exist (device nodes 0660)

    @property
    def name(self) -> str:
        return f"gpufleet-{self.kind}.service"


def _exec_start(spec: UnitSpec) -> str:
    listen = spec.listen or DEFAULT_LISTEN[spec.kind]
    args = [*spec.command, spec.kind, "--listen", listen]
    if spec.kind == "agent":
        if spec.hub_url:
            # %d: the credentials directory systemd made for this service (LoadCredential=token:...)
            args += ["--hub", spec.hub_url, "--token-file", "%d/token", "--spool", "%S/gpufleet-agent/spool"]
    else:
        args += ["--data", "%S/gpufleet-hub"]
    args += spec.extra_args
    # systemd splits ExecStart like a shell: quote what needs it, and double % outside specifiers.
    return " ".join(a if a.startswith(("%d/", "%S/")) else shlex.quote(a).replace("%", "%%") for a in args)


def render_unit(spec: UnitSpec) -> str:
    env_file = spec.env_file or CONFIG_DIR / f"{spec.kind}.env"
    service = [
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={_exec_start(spec)}",
        # GPUFLEET_* settings (every option has one) without editing this file; '-': optional
        f"EnvironmentFile=-{env_file}",
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=always",
        "RestartSec=5",
        f"WatchdogSec={WATCHDOG_SEC}",
        "TimeoutStartSec=180",  # a hub replays its write-ahead log before it is ready
        "TimeoutStopSec=30",
        f"User={USER}",
        f"Group={USER}",
    ]
    if spec.kind == "agent":
        if spec.hub_url:
            service += [f"LoadCredential=token:{spec.token_file}", "StateDirectory=gpufleet-agent",
                        "StateDirectoryMode=0700"]
        service += AGENT_HARDENING
        if spec.groups:  # a group that does not exist would stop the unit from starting
            service.append(f"SupplementaryGroups={' '.join(spec.groups)}")
    else:
        service += HUB_HARDENING
    service += COMMON_HARDENING
    lines = [
        "# Written by `gpufleet service install` (see gpufleet's docs/deploy.md);",
        "# `gpufleet service uninstall` removes it. Settings: GPUFLEET_* in the EnvironmentFile below.",
        "[Unit]",
        f"Description={DESCRIPTION[spec.kind]}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        *service,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)
