"""Typed configuration from four sources: command line > environment > YAML file > default.

Each option is declared once (`Option`) with its parser; every error names the source and
the key (`--interval`, `GPUFLEET_INTERVAL`, `agent.yaml: interval`) and what to do.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compat import COMPAT_MODES
from .errors import UserError
from .masking import DEFAULT_PATTERNS, check_patterns
from .syntax import ConfigError, is_label_name, load_yaml
from .vendors import BACKEND_CHOICES

ENV_PREFIX = "GPUFLEET_"


# ---- value parsers: take a raw value (str from CLI/env, anything from YAML) -----------------


def parse_listen(raw: Any) -> tuple[str, int]:
    """'HOST:PORT', '[::1]:PORT' or ':PORT' (loopback) -> (host, port)."""
    text = str(raw).strip()
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]*):(\d+)", text)
    if not m:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9401 or [::1]:9401)")
    host = m.group(1) or m.group(3) or "127.0.0.1"
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host, port


def parse_advertise(raw: Any) -> tuple[str, int]:
    """'HOST:PORT' or 'HOST' (port 0: the one the agent listens on) that others reach the agent at."""
    text = str(raw).strip()
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([^:\[\]\s/@]+)(?::(\d+))?|([0-9a-fA-F:]+)", text)
    if not m:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 10.0.0.7:9401, gpu01.lab:9401 or [2001:db8::7]:9401)")
    host = m.group(1) or m.group(3) or m.group(5)
    port = int(m.group(2) or m.group(4) or 0)
    if host in ("0.0.0.0", "::"):
        raise ValueError(f"{host} is not an address others can reach: give this node's address or name")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    return host, port


def parse_interval(raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not a number of seconds") from None
    if not 0.5 <= value <= 3600:
        raise ValueError(f"{value:g} s is out of range: use 0.5 to 3600 seconds")
    return value


def parse_timeout(raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not a number of seconds") from None
    if not 0.1 <= value <= 3600:
        raise ValueError(f"{value:g} s is out of range: use 0.1 to 3600 seconds")
    return value


def parse_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not an integer")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not an integer") from None


def parse_str(raw: Any) -> str:
    if isinstance(raw, (dict, list)):
        raise ValueError(f"expected a single value, got {type(raw).__name__}")
    return str(raw).strip()


def parse_hub_list(raw: Any) -> str:
    """--hub: one URL, several comma-separated, or a YAML list; kept as one comma-separated string
    (agent/hubs.py splits and checks it where pushing starts)."""
    if isinstance(raw, dict):
        raise ValueError("expected a URL or a list of URLs")
    items = raw if isinstance(raw, list) else [raw]
    return ",".join(str(x).strip() for x in items if str(x).strip())


def parse_list(raw: Any) -> list[str]:
    if isinstance(raw, list):
        return [str(x).strip() for x in raw if str(x).strip()]
    return [x.strip() for x in str(raw).split(",") if x.strip()]


def parse_labels(raw: Any) -> dict[str, str]:
    """{'cluster': 'a'} from YAML, or 'cluster=a,rack=r1' from CLI/env."""
    if isinstance(raw, dict):
        pairs = {str(k): str(v) for k, v in raw.items()}
    else:
        pairs = {}
        for item in parse_list(raw):
            if "=" not in item:
                raise ValueError(f"label {item!r} is not NAME=VALUE")
            k, v = item.split("=", 1)
            pairs[k.strip()] = v.strip()
    for k in pairs:
        if not is_label_name(k) or k.startswith("__"):
            raise ValueError(f"label name {k!r} is not valid (letters, digits, _; not starting with __)")
    return pairs


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{raw!r} is not true or false")


def parse_command_patterns(raw: Any) -> list[str]:
    from .agent.command_policy import parse_patterns

    return parse_patterns(raw)


def parse_mask(raw: Any) -> list[str]:
    return check_patterns(parse_list(raw))


def parse_path(raw: Any) -> Path:
    return Path(str(raw)).expanduser()


def parse_ratio(raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{value:g} is out of range: use a share from 0 to 1 (0.05 = 5%)")
    return value


def parse_groups(raw: Any) -> str:
    """'unix', 'none', or a groups file, read now so a bad one stops the start with its name."""
    text = parse_str(raw)
    if text in ("unix", "none"):
        return text
    from .allocation.groups import load

    path = Path(text).expanduser()
    load(path)  # GroupsError (a ValueError) names the file and the problem
    return str(path)


@dataclass(frozen=True, slots=True)
class Option:
    name: str  # key in YAML and dataclass field; CLI flag is --name with _ -> -
    parse: Callable[[Any], Any]
    help: str = ""
    merge: bool = False  # a mapping: each source adds to (and overrides keys of) the ones below it

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def resolve(
    options: list[Option],
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: Path | None,
) -> dict[str, Any]:
    """Merge the sources; return only the options some source set (defaults are the caller's).

    The command line wins over the environment, which wins over the file; a `merge` option
    (labels) takes every source's keys, the same precedence deciding a key set twice."""
    known = {o.name: o for o in options}
    layers: dict[str, list[tuple[Any, str]]] = {}  # option -> (raw value, where from), weakest first
    if config_file is not None:
        for key, value in _read_yaml(config_file).items():
            if key not in known:
                raise UserError(
                    f"{config_file}: unknown key {key!r}; valid keys: {', '.join(sorted(known))}"
                )
            layers.setdefault(key, []).append((value, f"{config_file}: {key}"))
    for o in options:
        if o.env in env and env[o.env] != "":
            layers.setdefault(o.name, []).append((env[o.env], o.env))
    for o in options:
        if cli.get(o.name) is not None:
            layers.setdefault(o.name, []).append((cli[o.name], o.flag))
    result: dict[str, Any] = {}
    for name, found in layers.items():
        opt = known[name]
        parsed = []
        for raw, source in found if opt.merge else found[-1:]:
            try:
                parsed.append(opt.parse(raw))
            except ValueError as e:
                raise UserError(f"{source}: {e}") from None
        result[name] = {k: v for p in parsed for k, v in p.items()} if opt.merge else parsed[0]
    return result


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = load_yaml(text, str(path))
    except ConfigError as e:
        raise UserError(str(e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of option: value at the top level")
    # `log-level`, `log_level`; `disks.remote_usage` (the collector's own spelling) = disks_remote_usage
    return {str(k).replace("-", "_").replace(".", "_"): v for k, v in data.items()}


# ---- the agent's options ----------------------------------------------------------------


AGENT_OPTIONS: list[Option] = [
    Option("listen", parse_listen, "HOST:PORT to serve /metrics on (loopback unless told)"),
    Option("advertise", parse_advertise, "HOST:PORT the hub and Prometheus reach this agent at (default: the "
           "listen address; on 0.0.0.0 or ::, this node's primary address)"),
    Option("node", parse_str, "node name (default: the hostname)"),
    Option("simulate", parse_str, "simulate accelerators with a named profile, e.g. 8xH100"),
    Option("backend", parse_str, "|".join(BACKEND_CHOICES)),
    Option("all_smi_url", parse_str, "--backend all-smi: URL of the local all-smi's /metrics "
           "(default http://127.0.0.1:9090/metrics)"),
    Option("compat", parse_list, f"also emit other exporters' names: {','.join(COMPAT_MODES)}"),
    Option("interval", parse_interval, "seconds between collections (0.5 to 3600)"),
    Option("seed", parse_int, "random seed for simulated accelerators"),
    Option("labels", parse_labels, "node labels NAME=VALUE,... (cluster, datacenter, ...); added to the "
           "config file's", merge=True),
    Option("collectors", parse_list, "collectors to run (default: all)"),
    Option("collector_timeout", parse_timeout, "seconds a collector may take before it is reported failed "
           "and the round goes on without it (default 10)"),
    Option("disks_remote_usage", parse_bool, "also report usage of network and FUSE mounts (NFS, Lustre, ...), "
           "probed off the collection thread (true/false; default false)"),
    Option("processes_environ", parse_bool, "read processes' environment to find Slurm jobs and pods "
           "(true/false; default true)"),
    Option("allocation_idle_below", parse_ratio, "busy share under which a held GPU counts as idle-held "
           "(0 to 1; default 0.05)"),
    Option("allocation_state_file", parse_path, "JSON allocation state file (DS01's gpu-state.json, or "
           "{\"allocations\": [...]}) saying who holds which GPU"),
    Option("allocation_slurm", parse_bool, "ask Slurm (squeue, scontrol) which job holds which GPU on this "
           "node (true/false; default false)"),
    Option("allocation_pod_resources", parse_str, "command printing the kubelet's pod-resources List response "
           "as JSON (e.g. grpcurl ... v1.PodResourcesLister/List)"),
    Option("allocation_refresh", parse_timeout, "seconds between questions to Slurm or the kubelet (default 30)"),
    Option("groups", parse_groups, "users' groups: unix (primary Unix group; default), none, or a YAML/CSV "
           "groups file"),
    Option("procfs", parse_path, "procfs root (for containers and tests)"),
    Option("sysfs", parse_path, "sysfs root"),
    Option("hub", parse_hub_list, "hub URL to push snapshots to; several (repeat --hub, or comma-separated) "
           "share the fleet and take over from one another (docs/scale.md)"),
    Option("token", parse_str, "join token for the hub (prefer --token-file: a --token is in the process table)"),
    Option("token_file", parse_path, "file holding the join token (mode 0600)"),
    Option("tls_cert", parse_path, "serve HTTPS with this PEM certificate (chain); needs --tls-key"),
    Option("tls_key", parse_path, "the certificate's PEM private key"),
    Option("ca", parse_path, "trust only this CA (PEM) for the hub's HTTPS certificate"),
    Option("mask", parse_mask, "patterns of secrets to mask in collected command lines, replacing the "
           "defaults: --FLAG globs (--*token) and NAME globs for NAME=VALUE (*TOKEN); '' masks nothing"),
    Option("spool", parse_path, "directory for the on-disk queue while the hub is unreachable"),
    Option("log_level", parse_str, "debug|info|warning|error"),
    Option("allow_commands", parse_command_patterns,
           "run remote commands whose argv matches this glob, e.g. 'nvidia-smi *' (repeatable; off by default)"),
    Option("command_user", parse_str, "run remote commands as this user (default: the agent's own, never root)"),
    Option("allow_root_commands", parse_bool, "allow remote commands to run as root"),
]


@dataclass(slots=True)
class AgentConfig:
    listen: tuple[str, int] = ("127.0.0.1", 9401)
    advertise: tuple[str, int] | None = None
    node: str = field(default_factory=socket.gethostname)
    simulate: str | None = None
    backend: str = "auto"
    all_smi_url: str = ""
    compat: list[str] = field(default_factory=list)
    interval: float = 5.0
    seed: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    collectors: list[str] | None = None
    collector_timeout: float = 10.0
    disks_remote_usage: bool = False
    processes_environ: bool = True
    allocation_idle_below: float = 0.05
    allocation_state_file: Path | None = None
    allocation_slurm: bool = False
    allocation_pod_resources: str | None = None
    allocation_refresh: float = 30.0
    groups: str = "unix"
    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    hub: str | None = None
    token: str | None = None
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca: Path | None = None
    mask: list[str] = field(default_factory=lambda: list(DEFAULT_PATTERNS))
    spool: Path | None = None
    log_level: str = "info"
    allow_commands: list[str] = field(default_factory=list)
    command_user: str | None = None
    allow_root_commands: bool = False


def load_agent_config(
    cli: Mapping[str, Any], env: Mapping[str, str], config_file: Path | None = None
) -> AgentConfig:
    values = resolve(AGENT_OPTIONS, cli, env, config_file)
    cfg = AgentConfig(**values)
    if cfg.simulate and cfg.backend == "auto":
        cfg.backend = "sim"
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        raise UserError(f"log level {cfg.log_level!r} is not one of debug, info, warning, error")
    if not cfg.node:
        raise UserError("node name is empty: pass --node NAME")
    if cfg.allow_commands and not cfg.hub:
        raise UserError("--allow-commands needs --hub: agents fetch commands from their hub")
    if cfg.allow_commands and "," in (cfg.hub or ""):
        # Commands are signed by one hub whose key the agent pins; following a failover would
        # mean trusting every hub's key for commands: not done without a design of its own.
        raise UserError("--allow-commands works with one --hub only: remote commands come from the hub "
                        "whose signing key the agent pins")
    from .tls import client_verify, server_tls

    server_tls(cfg.tls_cert, cfg.tls_key)  # a bad file or a lone flag is one line, before anything starts
    client_verify(cfg.ca)
    if cfg.token_file is not None:
        if cfg.token:
            raise UserError("both a join token (--token or GPUFLEET_TOKEN) and --token-file are set: keep one")
        cfg.token = read_token_file(cfg.token_file)
    return cfg


def read_token_file(path: Path) -> str:
    """The join token from a file (first non-empty line), so it never appears in `ps`."""
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"--token-file: cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:  # a binary file given by mistake
        raise UserError(f"--token-file: {path} is not a text file: put the join token in it") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserError(f"--token-file: {path} is empty: put the join token from `gpufleet token create` in it")
    if len(lines) > 1 or any(c.isspace() for c in lines[0]):
        raise UserError(f"--token-file: {path} must hold only the join token, on one line")
    return lines[0]
