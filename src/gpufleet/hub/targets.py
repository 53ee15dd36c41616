"""The hub's pull targets: a YAML file in Prometheus' file_sd shape, reloaded when it changes.

    - targets: ['10.0.1.100:9400', 'gpu02:9400']
      labels: {cluster: production, datacenter: dc1}
      kind: dcgm            # gpufleet | dcgm | all-smi | node_exporter | auto (default)
      scheme: http          # optional
      path: /metrics        # optional
      interval: 15s         # optional (default 15s): seconds or a Prometheus duration
      timeout: 5s           # optional

Files Algalon users already feed to vmagent/Prometheus work unchanged (only `targets` and
`labels`; `__scheme__` / `__metrics_path__` labels are honoured like Prometheus does).
Errors name the file and line, and a watcher keeps serving the last good list while the
file is broken, so a typo never empties the fleet.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..syntax import DURATION_HINT, ConfigError, compose_yaml, is_label_name
from ..syntax import parse_duration as _parse_duration

log = logging.getLogger("gpufleet.hub.targets")

KINDS = ("auto", "gpufleet", "dcgm", "all-smi", "node_exporter")
SCHEMES = ("http", "https")
GROUP_KEYS = ("targets", "labels", "kind", "scheme", "path", "interval", "timeout")
CHECK_EVERY = 5.0  # seconds between stat() calls: well inside the 30 s pick-up promise
DEFAULT_INTERVAL = 15.0  # seconds between scrapes when a group sets no `interval`

_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?\Z")


class TargetsError(UserError):
    """A targets file that cannot be used; the message starts with `file:line:`."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.reason = message


@dataclass(frozen=True, slots=True)
class Target:
    node: str
    address: str  # host:port as written
    kind: str = "auto"
    scheme: str = "http"
    path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)
    interval: float = DEFAULT_INTERVAL  # seconds between scrapes
    timeout: float | None = None
    source: str = ""  # "file:line" of the target, for messages

    @property
    def url(self) -> str:
        """What is scraped, and the target's identity (stable across reloads while the file keeps it)."""
        return f"{self.scheme}://{self.address}{self.path}"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.address}"

    @property
    def host(self) -> str:
        return split_address(self.address)[0]


def split_address(address: str) -> tuple[str, int]:
    """'gpu01:9400' -> ('gpu01', 9400); '[::1]:9100' -> ('::1', 9100); ValueError says why not."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or address[end + 1: end + 2] != ":":
            raise ValueError("an IPv6 target is written [address]:port")
        host, port_text = address[1:end], address[end + 2:]
        if not host or not all(c in "0123456789abcdefABCDEF:." for c in host):
            raise ValueError(f"{host!r} is not an IPv6 address")
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep:
            raise ValueError("no port: write host:port")
        if not _HOST_RE.match(host):
            raise ValueError(f"{host!r} is not a host name or address")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def parse_duration(value: object) -> float:
    """A scrape interval or timeout: syntax.parse_duration, and more than zero."""
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a duration: {DURATION_HINT}")
    seconds = _parse_duration(value)
    if not seconds > 0:
        raise ValueError(f"{value!r}: a duration must be more than zero")
    return seconds


# ---- parsing with line numbers ------------------------------------------------------------------


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Reader:
    """Walks the composed YAML tree so every complaint can point at a line."""

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader

    def fail(self, node: yaml.Node, message: str) -> TargetsError:
        return TargetsError(self.file, _line(node), message)

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "expected a single value here, not a list or mapping")
        return self.loader.construct_object(node)

    def string(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node)
        # Prometheus requires label values to be strings; numbers are harmless to accept,
        # booleans (YAML's yes/no/on/off) almost always mean a quoting mistake.
        if isinstance(value, bool) or value is None:
            raise self.fail(node, f"{what} must be a string: quote it")
        if isinstance(value, (int, float)):
            return str(node.value)
        if not isinstance(value, str):
            raise self.fail(node, f"{what} must be a string")
        return value

    def group(self, node: yaml.Node, raw: list[_RawTarget]) -> None:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "each entry must be a mapping with `targets:` (and optional `labels:`)")
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if key not in GROUP_KEYS:
                raise self.fail(key_node, f"unknown key {key!r}; allowed: {', '.join(GROUP_KEYS)}")
            if key in seen:
                raise self.fail(key_node, f"key {key!r} given twice")
            seen[key] = value_node
        if "targets" not in seen:
            raise self.fail(node, "entry has no `targets:` list")

        labels: dict[str, str] = {}
        if "labels" in seen:
            given = seen["labels"]
            lnode: yaml.Node | None = given
            if isinstance(given, yaml.ScalarNode) and self.scalar(given) is None:
                lnode = None  # `labels:` with nothing after it
            elif not isinstance(given, yaml.MappingNode):
                raise self.fail(given, "`labels` must be a mapping of label name to value")
            for k_node, v_node in (lnode.value if lnode is not None else ()):
                name = self.string(k_node, "a label name")
                if not is_label_name(name):
                    raise self.fail(k_node, f"invalid label name {name!r}: use letters, digits and _ "
                                            "(not starting with a digit)")
                if name in labels:
                    raise self.fail(k_node, f"label {name!r} given twice")
                labels[name] = self.string(v_node, f"label {name!r}")

        scheme = labels.pop("__scheme__", "http")
        path = labels.pop("__metrics_path__", "/metrics")
        # Other __-prefixed labels are Prometheus-internal (dropped after relabelling there too).
        for name in [n for n in labels if n.startswith("__")]:
            del labels[name]
        kind = "auto"
        interval: float = DEFAULT_INTERVAL
        timeout: float | None = None
        if "kind" in seen:
            kind = self.string(seen["kind"], "kind")
            if kind not in KINDS:
                raise self.fail(seen["kind"], f"unknown kind {kind!r}; choose from: {', '.join(KINDS)}")
        if "scheme" in seen:
            scheme = self.string(seen["scheme"], "scheme")
        if scheme not in SCHEMES:
            raise self.fail(seen.get("scheme", node), f"scheme {scheme!r} must be http or https")
        if "path" in seen:
            path = self.string(seen["path"], "path")
        if not path.startswith("/") or any(c in path for c in " ?#"):
            raise self.fail(seen.get("path", node), f"path {path!r} must start with / and hold no spaces, ? or #")
        for key in ("interval", "timeout"):
            if key in seen:
                try:
                    val = parse_duration(self.scalar(seen[key]))
                except ValueError as e:
                    raise self.fail(seen[key], f"{key}: {e}") from None
                if key == "interval":
                    interval = val
                else:
                    timeout = val
        if timeout is not None and timeout > interval:
            # As Prometheus: a scrape that may outlast its interval would pile up behind itself.
            raise self.fail(seen["timeout"], f"timeout ({timeout:g}s) must not exceed interval ({interval:g}s)")

        tnode = seen["targets"]
        if not isinstance(tnode, yaml.SequenceNode):
            raise self.fail(tnode, "`targets` must be a list of host:port")
        for t_node in tnode.value:
            address = self.string(t_node, "a target")
            try:
                split_address(address)
            except ValueError as e:
                raise self.fail(t_node, f"target {address!r}: {e}") from None
            raw.append(_RawTarget(address, kind, scheme, path, labels, interval, timeout, _line(t_node)))


@dataclass(slots=True)
class _RawTarget:
    address: str
    kind: str
    scheme: str
    path: str
    labels: dict[str, str]
    interval: float
    timeout: float | None
    line: int


def _name_nodes(raw: list[_RawTarget], file: str) -> list[Target]:
    hosts: dict[str, int] = {}
    for r in raw:
        h = split_address(r.address)[0]
        hosts[h] = hosts.get(h, 0) + 1
    out: list[Target] = []
    seen_url: dict[str, int] = {}
    seen_node: dict[str, int] = {}
    for r in raw:
        host = split_address(r.address)[0]
        node = r.labels.get("node") or (host if hosts[host] == 1 else r.address)
        t = Target(node=node, address=r.address, kind=r.kind, scheme=r.scheme, path=r.path,
                   labels=dict(r.labels), interval=r.interval, timeout=r.timeout, source=f"{file}:{r.line}")
        if t.url in seen_url:
            raise TargetsError(file, r.line, f"{t.url} is already listed on line {seen_url[t.url]}")
        # Two scrapes reporting under one node name would overwrite each other's snapshot.
        if node in seen_node:
            raise TargetsError(file, r.line, f"node name {node!r} is already used by the target on line "
                                             f"{seen_node[node]}; give each a distinct `node` label")
        seen_url[t.url] = r.line
        seen_node[node] = r.line
        out.append(t)
    return out


def parse_targets(text: str, file: str = "<targets>") -> list[Target]:
    """Targets from file_sd-shaped YAML (or JSON); TargetsError names file and line."""
    try:
        root, loader = compose_yaml(text, file)
    except ConfigError as e:
        raise TargetsError(file, e.line or 1, e.message) from None
    try:
        if root is None:
            return []  # an empty file: no targets, like Prometheus
        reader = _Reader(file, loader)
        if isinstance(root, yaml.ScalarNode) and reader.scalar(root) is None:
            return []
        if not isinstance(root, yaml.SequenceNode):
            raise reader.fail(root, "a targets file is a list of `- targets: [host:port, ...]` entries")
        raw: list[_RawTarget] = []
        for group in root.value:
            reader.group(group, raw)
        return _name_nodes(raw, file)
    finally:
        loader.dispose()


def load_targets(path: str | os.PathLike[str]) -> list[Target]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetsError(str(p), 0, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TargetsError(str(p), 0, f"cannot read: {e}") from None
    return parse_targets(text, str(p))


class TargetsWatcher:
    """Reloads a targets file when it changes; a broken file keeps the last good list.

    `poll()` is cheap to call often: it looks at the file at most every `check_every` seconds,
    and reads it only when its size, mtime or inode changed (editors often replace the file).
    """

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.monotonic,
                 check_every: float = CHECK_EVERY) -> None:
        self.path = Path(path)
        self.clock = clock
        self.check_every = check_every
        self.targets: list[Target] = []
        self.last_error: TargetsError | None = None
        self.loaded_at: float | None = None  # clock() of the last successful load
        self._next_check = float("-inf")
        self._signature: tuple[int, ...] | None = None
        self._loaded_once = False

    def poll(self) -> list[Target] | None:
        """The new target list when the file changed and is valid; otherwise None."""
        now = self.clock()
        if now < self._next_check:
            return None
        self._next_check = now + self.check_every
        try:
            st = self.path.stat()
            sig: tuple[int, ...] = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
        except OSError:
            sig = ()
        if sig == self._signature:
            return None
        self._signature = sig
        try:
            targets = load_targets(self.path)
        except TargetsError as e:
            if self.last_error is None or str(e) != str(self.last_error):
                log.warning("targets file not reloaded, keeping %d target(s) from the last good version: %s",
                            len(self.targets), e)
            self.last_error = e
            return None
        self.last_error = None
        self.loaded_at = now
        if targets == self.targets and self._loaded_once:
            return None
        self._loaded_once = True
        self.targets = targets
        log.info("targets file %s: %d target(s)", self.path, len(targets))
        return targets
