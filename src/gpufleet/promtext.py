"""A fast parser of Prometheus text exposition (0.0.4) and OpenMetrics (1.0) into flat samples.

The hub scrapes many exporters, so parsing is on its hot path. prometheus_client's parser
builds families and validates through regexes (about 100k samples/s); this one parses each
line with a few `str` operations and falls back to a careful character-by-character parser
only for the rare shapes the fast path declines (escapes in label values, whitespace inside
label sets, exemplars). Both paths give the same answers; the slow one also gives the error.

Output is a list of `(name, labels, value)` tuples. Timestamps are checked and dropped (the
hub stamps samples with its own scrape time, like Prometheus does with honor_timestamps off);
`parse_exposition` also returns the `# TYPE` and `# HELP` lines for callers that want them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .syntax import LABEL_NAME, METRIC_NAME

Sample = tuple[str, dict[str, str], float]

TYPES = frozenset(
    ("counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset", "gaugehistogram")
)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_CACHE_MAX = 65536  # distinct metric names / label-name sets remembered; bounded against hostile input


class ParseError(ValueError):
    """A line the parser cannot read; `line` is 1-based, the message names it."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.reason = message


@dataclass(slots=True)
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    help: dict[str, str] = field(default_factory=dict)


# Names and label-name tuples recur on every line of a family, so validating them once and
# remembering the answer is most of what makes the fast path fast.
_good_names: set[str] = set()
_label_sets: dict[tuple[str, ...], tuple[str, ...] | None] = {}
_UNSEEN: Any = object()  # sentinel distinct from None (a cached "not plain") in _label_sets lookups


def _valid_name(name: str) -> bool:
    if name in _good_names:
        return True
    if METRIC_NAME.fullmatch(name) is None:
        return False
    if len(_good_names) < _CACHE_MAX:
        _good_names.add(name)
    return True


def _label_names(raw: tuple[str, ...]) -> tuple[str, ...] | None:
    """Label names from the text between quoted values: ('a=', ',b=', '') -> ('a', 'b').

    None when the shape is not the plain `a="..",b=".."` form (the slow path then decides).
    """
    try:
        return _label_sets[raw]
    except KeyError:
        pass
    names: list[str] = []
    last = len(raw) - 1
    # A trailing comma is allowed after a label pair, not in an otherwise empty set.
    ok = raw[last] == "" or (raw[last] == "," and last > 0)
    for i in range(last):
        part = raw[i]
        name = part[:-1] if i == 0 else part[1:-1]
        if (
            not part.endswith("=")
            or (i > 0 and not part.startswith(","))
            or LABEL_NAME.fullmatch(name) is None
            or name in names
        ):
            ok = False
            break
        names.append(name)
    result = tuple(names) if ok else None
    if len(_label_sets) < _CACHE_MAX:
        _label_sets[raw] = result
    return result


def _float(text: str) -> float:
    # float() also takes '1_000' and padded text; the exposition formats do not.
    if "_" in text:
        raise ValueError(text)
    return float(text)


def _fast_line(line: str, good_names: set[str] = _good_names,
               label_sets: dict[tuple[str, ...], tuple[str, ...] | None] = _label_sets) -> Sample | None:
    """The common shapes: `name value [ts]` and `name{a="x",...} value [ts]`, no backslashes.

    None means "not sure": the caller then uses the exact (slow) parser. Helpers are inlined
    and the caches bound as defaults because this runs once per line of every scrape.
    """
    brace = line.find("{")
    if brace < 0:
        parts = line.split(" ")
        n = len(parts)
        if n == 2:
            name, value = parts
        elif n == 3:
            name, value, ts = parts
            if "_" in ts:
                return None
            try:
                float(ts)
            except ValueError:
                return None
        else:
            return None
        if (name not in good_names and not _valid_name(name)) or "_" in value:
            return None
        try:
            return (name, {}, float(value))
        except ValueError:
            return None
    if "\\" in line:
        return None
    close = line.rfind("}")
    if close < brace or line[close + 1: close + 2] != " ":
        return None
    name = line[:brace]
    if name not in good_names and not _valid_name(name):
        return None
    value = line[close + 2:]
    if " " in value:
        value, _, ts = value.partition(" ")
        if " " in ts or "_" in ts:
            return None
        try:
            float(ts)
        except ValueError:
            return None
    if "_" in value:
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    if close == brace + 1:
        return (name, {}, v)
    pieces = line[brace + 1: close].split('"')
    key = tuple(pieces[0::2])
    names = label_sets.get(key, _UNSEEN)
    if names is _UNSEEN:
        names = _label_names(key)
    if names is None:
        return None
    return (name, dict(zip(names, pieces[1::2])), v)


class _Line:
    """Character-level reader of one sample line: exact, slower, and says what is wrong."""

    __slots__ = ("s", "i", "n")

    def __init__(self, s: str) -> None:
        self.s = s
        self.i = 0
        self.n = len(s)

    def skip_ws(self) -> None:
        while self.i < self.n and self.s[self.i] in " \t":
            self.i += 1

    def ident(self, what: str, pattern: re.Pattern[str]) -> str:
        start = self.i
        while self.i < self.n and (self.s[self.i].isalnum() or self.s[self.i] in "_:"):
            self.i += 1
        word = self.s[start: self.i]
        if not word or pattern.fullmatch(word) is None or not word.isascii():
            got = word or (self.s[self.i] if self.i < self.n else "end of line")
            raise ValueError(f"invalid {what} {got!r}")
        return word

    def quoted(self) -> str:
        if self.i >= self.n or self.s[self.i] != '"':
            raise ValueError("expected '\"' to start a label value")
        self.i += 1
        out: list[str] = []
        start = self.i
        s = self.s
        while True:
            if self.i >= self.n:
                raise ValueError("unterminated label value")
            c = s[self.i]
            if c == '"':
                out.append(s[start: self.i])
                self.i += 1
                return "".join(out)
            if c == "\\":
                out.append(s[start: self.i])
                nxt = s[self.i + 1: self.i + 2]
                if nxt not in _ESCAPES:
                    raise ValueError(f"invalid escape '\\{nxt}' in label value")
                out.append(_ESCAPES[nxt])
                self.i += 2
                start = self.i
                continue
            self.i += 1

    def number(self, what: str) -> float:
        start = self.i
        while self.i < self.n and self.s[self.i] not in " \t":
            self.i += 1
        text = self.s[start: self.i]
        try:
            return _float(text)
        except ValueError:
            raise ValueError(f"invalid {what} {text!r}") from None


def _slow_line(line: str) -> Sample:
    r = _Line(line)
    r.skip_ws()
    name = r.ident("metric name", METRIC_NAME)
    r.skip_ws()
    labels: dict[str, str] = {}
    if r.i < r.n and line[r.i] == "{":
        r.i += 1
        while True:
            r.skip_ws()
            if r.i < r.n and line[r.i] == "}":
                r.i += 1
                break
            label = r.ident("label name", LABEL_NAME)
            r.skip_ws()
            if r.i >= r.n or line[r.i] != "=":
                raise ValueError(f"expected '=' after label name {label!r}")
            r.i += 1
            r.skip_ws()
            value = r.quoted()
            if label in labels:
                raise ValueError(f"duplicate label {label!r}")
            labels[label] = value
            r.skip_ws()
            if r.i < r.n and line[r.i] == ",":
                r.i += 1
                continue
            if r.i < r.n and line[r.i] == "}":
                r.i += 1
                break
            raise ValueError("expected ',' or '}' in label set")
        r.skip_ws()
    if r.i >= r.n:
        raise ValueError(f"no value for {name}")
    v = r.number("value")
    r.skip_ws()
    if r.i < r.n and line[r.i] != "#":
        r.number("timestamp")
        r.skip_ws()
    # OpenMetrics exemplars (`# {trace_id="..."} 1.0`) follow the sample; they are not kept.
    if r.i < r.n and line[r.i] != "#":
        raise ValueError(f"unexpected text after the value: {line[r.i:]!r}")
    return (name, labels, v)


def _unescape_help(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _comment(line: str, lineno: int, out: Exposition) -> bool:
    """Handle a '#' line; True when it is OpenMetrics' `# EOF`."""
    parts = line.split(None, 3)
    if len(parts) < 2 or parts[0] != "#":
        return False
    word = parts[1]
    if word == "EOF" and len(parts) == 2:
        return True
    if word == "TYPE":
        if len(parts) != 4 or parts[3].strip() not in TYPES:
            raise ParseError(lineno, f"malformed TYPE line: {line!r}")
        if not _valid_name(parts[2]):
            raise ParseError(lineno, f"invalid metric name {parts[2]!r} in TYPE line")
        out.types[parts[2]] = parts[3].strip()
    elif word == "HELP":
        if len(parts) < 3:
            raise ParseError(lineno, f"malformed HELP line: {line!r}")
        out.help[parts[2]] = _unescape_help(parts[3]) if len(parts) == 4 else ""
    # Any other comment is free text.
    return False


def parse_exposition(data: str | bytes) -> Exposition:
    """Parse text exposition; raises ParseError naming the first bad line."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            at = data[: e.start].count(b"\n") + 1
            raise ParseError(at, "not valid UTF-8") from None
    else:
        text = data
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    out = Exposition()
    samples = out.samples
    append = samples.append
    fast = _fast_line
    lines = text.split("\n")
    eof_at = 0
    for lineno, line in enumerate(lines, 1):
        if not line:
            continue
        if eof_at:
            raise ParseError(lineno, f"content after '# EOF' (line {eof_at})")
        if line[0] == "#":
            if _comment(line, lineno, out):
                eof_at = lineno
            continue
        sample = fast(line)
        if sample is None:
            stripped = line.lstrip(" \t")
            if not stripped:
                continue
            if stripped[0] == "#":
                if _comment(stripped, lineno, out):
                    eof_at = lineno
                continue
            try:
                sample = _slow_line(line)
            except ValueError as e:
                raise ParseError(lineno, f"{e}: {line[:200]!r}") from None
        append(sample)
    return out


def parse(data: str | bytes) -> list[Sample]:
    """The samples of a text exposition as (name, labels, value); ParseError names the bad line."""
    return parse_exposition(data).samples
