"""Alert annotation templates: the slice of Prometheus' Go templates that rules need.

Supported: `{{ $labels.NAME }}`, `{{ $value }}`, `{{ $value | humanize }}`,
`{{ $value | humanizePercentage }}`, `{{ humanize $value }}`, `{{ printf "%.1f" $value }}`.
Values print the way Go prints a float64, so an annotation the hub renders is the text
Prometheus renders from the exported rule (the promtool parity test checks this).
Parameters of rule templates (`{{ threshold }}`, AAMI's `{{ .threshold }}`) are a different
thing, substituted once when rules load: see rules.py.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from ...syntax import LABEL_NAME

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_LABEL = re.compile(r"^\$labels\.(" + LABEL_NAME.pattern + r")$")
_PRINTF = re.compile(r'^printf\s+"(%[-+ 0#]*\d*(?:\.\d+)?[fegdsv%])"\s+\$value$')
_PIPE = re.compile(r"^\$value\s*\|\s*(humanize|humanizePercentage)$")
_CALL = re.compile(r"^(humanize|humanizePercentage)\s+\$value$")


class TemplateError(ValueError):
    pass


def go_float(v: float) -> str:
    """fmt's %v of a float64 (what `{{ $value }}` prints in Prometheus): shortest digits,
    exponent form below 1e-4 and from 1e6 on ("1.5e+06"), as Go's strconv 'g' with -1."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(float(v))).normalize().as_tuple()
    ds = "".join(map(str, digits))
    exp10 = len(ds) + int(exponent) - 1
    neg = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if exp10 < 0:
        return f"{neg}0.{'0' * (-exp10 - 1)}{ds}"
    whole, frac = ds[:exp10 + 1].ljust(exp10 + 1, "0"), ds[exp10 + 1:]
    return f"{neg}{whole}{'.' + frac if frac else ''}"


def _g4(v: float) -> str:
    # Go's %.4g and Python's agree on digits and exponent form ("1e+06"); only NaN/Inf differ.
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return "%.4g" % v


def humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return _g4(v) + prefix


def humanize_percentage(v: float) -> str:
    return _g4(v * 100) + "%"


def _action(body: str):  # type: ignore[no-untyped-def]
    """Compile one {{ ... }} into a function (labels, value) -> str."""
    if body == "$value":
        return lambda labels, value: go_float(value)
    m = _LABEL.match(body)
    if m:
        name = m.group(1)
        return lambda labels, value: labels.get(name, "")
    m = _PIPE.match(body) or _CALL.match(body)
    if m:
        fn = humanize if m.group(1) == "humanize" else humanize_percentage
        return lambda labels, value: fn(value)
    m = _PRINTF.match(body)
    if m:
        fmt = m.group(1)
        if fmt[-1] in "dsv":
            raise TemplateError(f"printf {fmt!r}: only float formats (%f, %e, %g) are supported for $value")
        return lambda labels, value: fmt % value
    raise TemplateError(
        f"unsupported template action {{{{ {body} }}}}: use $labels.NAME, $value, "
        "$value | humanize, $value | humanizePercentage or printf \"%.1f\" $value")


class Template:
    """A compiled annotation; `render(labels, value)`; TemplateError at compile time if unsupported."""

    __slots__ = ("text", "_parts", "uses_value")

    def __init__(self, text: str) -> None:
        self.text = text
        parts: list[object] = []
        pos = 0
        self.uses_value = False  # False: the text depends on the labels only
        for m in _ACTION.finditer(text):
            if m.start() > pos:
                parts.append(text[pos:m.start()])
            parts.append(_action(m.group(1)))
            self.uses_value = self.uses_value or not _LABEL.match(m.group(1))
            pos = m.end()
        if pos < len(text):
            parts.append(text[pos:])
        if "{{" in "".join(p for p in parts if isinstance(p, str)):
            raise TemplateError("unclosed {{ in template")
        self._parts = parts

    def render(self, labels: dict[str, str], value: float) -> str:
        return "".join(p if isinstance(p, str) else p(labels, value) for p in self._parts)  # type: ignore[operator]
