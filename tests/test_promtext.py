"""gpufleet.promtext against prometheus_client's parser, plus the cases it must refuse."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.exposition import render
from gpufleet.promtext import ParseError, parse, parse_exposition
from conftest import FIXTURES as ALL_FIXTURES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_snapshot import sample_snapshot  # noqa: E402

FIXTURES = ALL_FIXTURES / "exporters"


def _same_value(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def theirs(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def assert_same(text: str) -> None:
    ours = parse(text)
    ref = theirs(text)
    assert len(ours) == len(ref)
    for (n1, l1, v1), (n2, l2, v2) in zip(ours, ref):
        # prometheus_client renames samples of a `counter` family that lack `_total`;
        # the wire name (which Prometheus stores) is what we keep.
        assert n1 == n2 or n1 + "_total" == n2, (n1, n2)
        assert l1 == l2
        assert _same_value(v1, float(v2)), (n1, v1, v2)


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.txt")))
def test_fixtures_match_prometheus_client(fixture: str) -> None:
    assert_same((FIXTURES / fixture).read_text())


@pytest.mark.parametrize("compat", [(), ("dcgm",), ("dcgm", "all-smi")])
def test_rendered_snapshots_match_prometheus_client(compat: tuple[str, ...]) -> None:
    assert_same(render(sample_snapshot(), compat=compat).decode())


def test_escapes_in_label_values() -> None:
    text = 'm{path="C:\\\\dir\\\\f",q="say \\"hi\\"",nl="a\\nb",brace="}{,=",u="ünï ✓"} 1\n'
    [(name, labels, value)] = parse(text)
    assert name == "m" and value == 1.0
    assert labels == {"path": "C:\\dir\\f", "q": 'say "hi"', "nl": "a\nb", "brace": "}{,=", "u": "ünï ✓"}
    assert_same(text)


def test_values_timestamps_and_specials() -> None:
    text = 'a NaN\nb +Inf\nc -Inf 1700000000000\nd 1.5e-3\ne{x="1"} -2 123\n'
    got = parse(text)
    assert [n for n, _, _ in got] == ["a", "b", "c", "d", "e"]
    assert math.isnan(got[0][2]) and got[1][2] == math.inf and got[2][2] == -math.inf
    assert got[3][2] == 0.0015 and got[4] == ("e", {"x": "1"}, -2.0)


def test_whitespace_shapes_prometheus_accepts() -> None:
    text = 'a  1\nb\t2\nc {x="1"} 3\nd{ x = "1" , y="2", } 4\ne{} 5\n  f 6\n\n'
    assert parse(text) == [("a", {}, 1.0), ("b", {}, 2.0), ("c", {"x": "1"}, 3.0),
                           ("d", {"x": "1", "y": "2"}, 4.0), ("e", {}, 5.0), ("f", {}, 6.0)]


def test_comments_types_help_and_crlf() -> None:
    data = (b"# HELP up Whether the \\\\target\\n is up.\r\n# TYPE up gauge\r\n# just a note\r\n"
            b"#TYPE not a type line\r\nup{job=\"x\"} 1\r\n")
    exp = parse_exposition(data)
    assert exp.samples == [("up", {"job": "x"}, 1.0)]
    assert exp.types == {"up": "gauge"}
    assert exp.help == {"up": "Whether the \\target\n is up."}


def test_openmetrics_eof_and_exemplars() -> None:
    text = ('# TYPE rpc counter\nrpc_total{code="200"} 17 1700000000.5 # {trace_id="abc"} 1.0 1700000000.1\n'
            'rpc_created{code="200"} 1.7e9\nplain_total 3 # {span="x"} 2\n# EOF\n')
    assert parse(text) == [("rpc_total", {"code": "200"}, 17.0), ("rpc_created", {"code": "200"}, 1.7e9),
                           ("plain_total", {}, 3.0)]
    with pytest.raises(ParseError) as e:
        parse("a 1\n# EOF\nb 2\n")
    assert e.value.line == 3 and "EOF" in str(e.value)


@pytest.mark.parametrize("text,line,fragment", [
    ("ok 1\nbad{ 1\n", 2, "label name"),
    ("ok 1\nok 2\n1bad 3\n", 3, "metric name"),
    ('a{x="1",x="2"} 1\n', 1, "duplicate label"),
    ('a{x="1} 1\n', 1, "unterminated"),
    ('a{x=1} 1\n', 1, "label value"),
    ('a{x="\\q"} 1\n', 1, "escape"),
    ("a 1_000\n", 1, "invalid value"),
    ("a one\n", 1, "invalid value"),
    ("\n\na\n", 3, "no value"),
    ("a 1 2 3\n", 1, "after the value"),
    ("a 1 soon\n", 1, "timestamp"),
    ("# TYPE a flavour\na 1\n", 1, "TYPE"),
    ('a{,} 1\n', 1, "label name"),
])
def test_malformed_lines_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ParseError) as e:
        parse(text)
    assert e.value.line == line
    assert str(e.value).startswith(f"line {line}: ")
    assert fragment in str(e.value)


def test_invalid_utf8_names_the_line() -> None:
    with pytest.raises(ParseError) as e:
        parse(b'a 1\nb{x="\xff"} 2\n')
    assert e.value.line == 2


# ---- generated expositions ----------------------------------------------------------------------

_name = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True)
_label_name = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,12}", fullmatch=True)
_label_value = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"),
                       max_size=20)
_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**53), max_value=2**53).map(float),
)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


@st.composite
def expositions(draw: st.DrawFn) -> tuple[str, list[tuple[str, dict[str, str], float]]]:
    lines: list[str] = []
    expected: list[tuple[str, dict[str, str], float]] = []
    for fam in draw(st.lists(_name, min_size=1, max_size=6, unique=True)):
        if draw(st.booleans()):
            lines.append(f"# HELP {fam} {draw(st.text(alphabet='abc xyz', max_size=10))}")
            lines.append(f"# TYPE {fam} {draw(st.sampled_from(['gauge', 'untyped']))}")
        for _ in range(draw(st.integers(1, 4))):
            labels = draw(st.dictionaries(_label_name, _label_value, max_size=4))
            value = draw(_value)
            sep = draw(st.sampled_from([",", ", "]))
            block = sep.join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            ts = draw(st.sampled_from(["", " 1700000000000"]))
            lines.append(f"{fam}{{{block}}} {_fmt(value)}{ts}" if labels or draw(st.booleans())
                         else f"{fam} {_fmt(value)}{ts}")
            expected.append((fam, labels, value))
    return "\n".join(lines) + "\n", expected


@settings(max_examples=300, deadline=None)
@given(expositions())
def test_generated_expositions(case: tuple[str, list[tuple[str, dict[str, str], float]]]) -> None:
    text, expected = case
    got = parse(text)
    assert [(n, lbl) for n, lbl, _ in got] == [(n, lbl) for n, lbl, _ in expected]
    assert all(_same_value(a[2], b[2]) for a, b in zip(got, expected))
    assert_same(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        parse(text)
    except ParseError as e:
        assert e.line >= 1
