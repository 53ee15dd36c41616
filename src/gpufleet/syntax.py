"""The small grammars every part of gpufleet reads: durations, label names, label matchers,
URLs with secrets, and YAML that remembers line numbers. One of each, so a flag, a rule file
and a targets file accept the same spellings and fail with the same words.

A leaf module: the standard library, PyYAML and gpufleet.errors only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from .errors import UserError

# ---- durations ------------------------------------------------------------------------------------

DURATION_UNITS: dict[str, float] = {
    "y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001,
}
# Prometheus' duration grammar (units largest first, each at most once: 1h30m, 90s, 2d12h, 500ms),
# and a plain number of seconds (15, 2.5) as a shorthand Prometheus does not have.
_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)y)?(?:(\d+(?:\.\d+)?)w)?(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?"
    r"(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?"
)
_SECONDS = re.compile(r"\d+(?:\.\d+)?")
DURATION_HINT = "use e.g. 90s, 5m, 1h30m, 7d or a number of seconds"


class DurationError(ValueError):
    """Text that is not a duration; the message names it and shows the spelling."""


def parse_duration(text: str | int | float) -> float:
    """'90s', '5m', '1h30m', '30d', '500ms', 15, '2.5' -> seconds (>= 0); DurationError otherwise."""
    if isinstance(text, bool):  # YAML's yes/no: never a duration
        raise DurationError(f"{text!r} is not a duration: {DURATION_HINT}")
    if isinstance(text, (int, float)):
        if not text >= 0 or text == float("inf"):
            raise DurationError(f"{text!r} is not a duration: it must be a finite number of seconds, 0 or more")
        return float(text)
    s = str(text).strip()
    if _SECONDS.fullmatch(s):
        return float(s)
    m = _DURATION.fullmatch(s)
    if not s or m is None or not any(m.groups()):
        raise DurationError(f"{str(text)!r} is not a duration: {DURATION_HINT}")
    return sum(float(g) * size for g, size in zip(m.groups(), DURATION_UNITS.values()) if g)


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest Prometheus duration ('5m', '1h30m', '0s'), to the millisecond."""
    total_ms = round(seconds * 1000)
    if total_ms == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):  # not y / w: Prometheus prints 14d, not 2w
        size = round(DURATION_UNITS[unit] * 1000)
        if total_ms >= size:
            out.append(f"{total_ms // size}{unit}")
            total_ms %= size
    return "".join(out)


# ---- label names and matchers ---------------------------------------------------------------------

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_HINT = "use letters, digits and _, not starting with a digit"


def is_label_name(name: str) -> bool:
    return LABEL_NAME.fullmatch(name) is not None


MATCH_OPS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True, slots=True)
class Matcher:
    """A PromQL label matcher `name op "value"` with op one of = != =~ !~.

    Regexes are anchored at both ends, as in PromQL, and a label that is absent counts as
    the empty string, so `Matcher("pod", "=", "")` selects series without a `pod` label.
    ValueError (naming the label) for a bad name, operator or regular expression.
    """

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not isinstance(self.value, str):
            raise ValueError("matcher name and value must be strings")
        if self.op not in MATCH_OPS:
            raise ValueError(f"matcher operator {self.op!r} for label {self.name!r} is not one of = != =~ !~")
        if not is_label_name(self.name):
            raise ValueError(f"bad label name {self.name!r} in matcher: {LABEL_NAME_HINT}")
        if self.op in ("=~", "!~") and self.regex is None:
            try:
                object.__setattr__(self, "regex", re.compile(self.value))
            except re.error as e:
                raise ValueError(f"bad regular expression {self.value!r} for label {self.name}: {e}") from None

    def accepts(self, value: str) -> bool:
        """Whether a label's value (absent: "") passes this matcher."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = self.regex is not None and self.regex.fullmatch(value) is not None
        return hit if self.op == "=~" else not hit

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.accepts(labels.get(self.name, ""))

    def promql(self) -> str:
        return f"{self.name}{self.op}{quote(self.value)}"


def quote(value: str) -> str:
    """A PromQL string literal (Go escapes; these three are all a label value can need)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_MATCHER_TEXT = re.compile(r'\s*(' + LABEL_NAME.pattern + r')\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_UNESCAPES = {"n": "\n", "t": "\t"}


def unquote(body: str) -> str:
    """The inside of a PromQL string literal, escapes undone."""
    return re.sub(r"\\(.)", lambda m: _UNESCAPES.get(m.group(1), m.group(1)), body)


def parse_matcher(text: str) -> Matcher:
    """'gpu="0"', 'node=~"a.*"' -> Matcher; ValueError says what is wrong."""
    m = _MATCHER_TEXT.fullmatch(text)
    if not m:
        raise ValueError(f'{text!r} is not NAME="VALUE" (operators =, !=, =~, !~)')
    return Matcher(m.group(1), m.group(2), unquote(m.group(3)))


# ---- URLs -------------------------------------------------------------------------------------------


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """The URL safe to log or show: password (or a lone user token) and query values as `***`.

    `keep_path=False` also hides the path (as `/…`): webhook and chat URLs carry their
    secret there. An unparseable URL shows as `<unparseable URL>`, never as itself.
    """
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        port = f":{p.port}" if p.port else ""
    except ValueError:
        return "<unparseable URL>"
    netloc = (host if ":" not in host else f"[{host}]") + port
    if p.username is not None or p.password is not None:
        netloc = f"{p.username or ''}:***@{netloc}" if p.password is not None else f"***@{netloc}"
    if not keep_path:
        return f"{p.scheme}://{netloc}" + ("/…" if p.path not in ("", "/") or p.query else "")
    query = "&".join(f"{kv.split('=', 1)[0]}=***" for kv in p.query.split("&") if kv) if p.query else ""
    return urlunsplit((p.scheme, netloc, p.path, query, ""))


def normalize_hub_url(raw: str) -> str:
    """'http://Hub:9400/' -> 'http://hub:9400'. Raises UserError for anything that is not a base URL."""
    text = raw.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (a port out of 0-65535 or not a number raises here, not later in a traceback)
    except ValueError as e:  # '[::1' or a port out of range: urllib's words say which
        raise UserError(f"--hub is not a URL ({e}): use http://HOST:PORT or https://HOST") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UserError(f"--hub {redact_url(text)!r} is not a URL: use http://HOST:PORT or https://HOST")
    if parts.query or parts.fragment:
        # Tokens belong in --token (sent as a header), never in a URL that ends up in logs.
        raise UserError("--hub must not carry a query or fragment: pass the join token with --token")
    netloc = parts.netloc.rsplit("@", 1)
    netloc[-1] = netloc[-1].lower()
    return urlunsplit((parts.scheme.lower(), "@".join(netloc), parts.path.rstrip("/"), "", ""))


def no_credentials_in_url(url: str, flag: str) -> str:
    """`url`, or UserError when it carries a user or password: it would be written into a file
    others can read (a systemd unit, a Kubernetes manifest) and shown by `ps` and `systemctl show`."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise UserError(f"{flag} {redact_url(url)!r}: no user or password in the URL; it would be written into "
                        "a world-readable file (the join token authenticates the agent)")
    return url


# ---- YAML with line numbers ----------------------------------------------------------------------


class ConfigError(ValueError):
    """A problem in a config file, located: `path:line: message` (line 0: the whole file)."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.path, "line": self.line, "message": self.message, "text": str(self)}


class LineDict(dict[Any, Any]):
    """A YAML mapping with the 1-based line of itself (`line`) and of each key (`lines`)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


def line_of(obj: Any, key: Any = None, default: int = 0) -> int:
    if isinstance(obj, LineDict):
        return obj.line_of(key) if key is not None else obj.line
    return default


def compose_yaml(text: str, path: str) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    """The YAML node tree (each node knows its line) and the safe loader that can construct
    its values; for readers that check a file node by node. ConfigError on a syntax error."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(path, line, f"not valid YAML: {e.problem or e.context or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, 0, f"not valid YAML: {e}") from None
    if root is not None:
        _check_expanded_size(root, path)
    return root, loader


# Values a YAML document may hold once its aliases are expanded. An alias is a reference, so
# a few lines of nested aliases spell out billions of values ("billion laughs"), which building
# the result (one object per use, with its line) would take hours and all memory to do.
MAX_YAML_VALUES = 200_000


def _check_expanded_size(root: yaml.Node, path: str) -> None:
    """ConfigError when the document expands to more than MAX_YAML_VALUES values; stops counting there."""
    stack: list[yaml.Node] = [root]
    count = 0
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise ConfigError(path, 0,
                              f"the YAML expands to more than {MAX_YAML_VALUES:,} values through its aliases "
                              "(&name / *name): write the values out or use fewer aliases")
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # YAML merge keys (<<)
        out = LineDict()
        out.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            out[key] = _construct(loader, value_node)
            out.lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item) for item in node.value]
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, path: str) -> Any:
    """Parse YAML safely; mappings load as LineDict. ConfigError names the line of a syntax error."""
    root, loader = compose_yaml(text, path)
    try:
        return None if root is None else _construct(loader, root)
    except yaml.YAMLError as e:  # e.g. a bad timestamp or an unknown tag
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(path, mark.line + 1 if mark is not None else 0, f"not valid YAML: {e}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(str(path), 0, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:  # a binary file given by mistake
        raise ConfigError(str(path), 0, "not a text file (not UTF-8): give the YAML file") from None
    return load_yaml(text, str(path))
