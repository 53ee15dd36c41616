"""gpufleet.syntax: the one grammar for durations, label matchers, secret-free URLs and YAML lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpufleet.syntax import (
    ConfigError, LineDict, Matcher, format_duration, load_yaml, parse_duration, parse_matcher, redact_url,
)

from realparts import gpufleet


@pytest.mark.parametrize("text,seconds", [
    ("1h30m", 5400.0), ("90s", 90.0), ("5m", 300.0), ("30d", 30 * 86400.0), ("15", 15.0), (15, 15.0),
    ("2.5", 2.5), (2.5, 2.5), ("500ms", 0.5), ("1m30s", 90.0), ("2w", 14 * 86400.0), ("1y", 365 * 86400.0),
    (" 7d ", 7 * 86400.0), ("0", 0.0), ("1.5h", 5400.0),
])
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "m", "1h1h", "30m1h", "-5m", "1.h", True, -1, float("nan"),
                                  float("inf"), "1e3"])
def test_bad_durations_say_how_to_spell_one(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10 * 365 * 86400 * 1000))
def test_format_then_parse_round_trips(ms: int) -> None:
    assert round(parse_duration(format_duration(ms / 1000)) * 1000) == ms


def test_matchers() -> None:
    labels = {"gpu": "10", "node": "a-1"}
    assert Matcher("gpu", "=~", "1").matches(labels) is False  # anchored, as in PromQL
    assert Matcher("gpu", "=~", "1.*").matches(labels)
    assert Matcher("pod", "=", "").matches(labels)  # absent is ""
    assert Matcher("node", "!~", "b.*").matches(labels)
    assert parse_matcher('node=~"a\\\\.b"') == Matcher("node", "=~", "a\\.b")
    assert parse_matcher(' gpu = "0" ').promql() == 'gpu="0"'
    for bad, words in [(("bad-name", "=", "x"), "label name"), (("a", "==", "b"), "operator"),
                       (("a", "=~", "("), "regular expression")]:
        with pytest.raises(ValueError, match=words):
            Matcher(*bad)
    with pytest.raises(ValueError, match="NAME="):
        parse_matcher("gpu=0")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20))
def test_matcher_text_round_trips(value: str) -> None:
    m = Matcher("model", "=", value)
    assert parse_matcher(m.promql()) == m


def test_redact_url_hides_passwords_tokens_and_queries() -> None:
    assert redact_url("https://u:pw@h:9/p?token=abc&x=1") == "https://u:***@h:9/p?token=***&x=***"
    assert redact_url("https://tok@h/api") == "https://***@h/api"
    assert redact_url("https://hooks.example/services/T0/B0/secret", keep_path=False) == "https://hooks.example/…"
    assert redact_url("http://[::1]:x") == "<unparseable URL>"


def test_yaml_remembers_lines_and_locates_errors() -> None:
    doc = load_yaml("a: 1\nb:\n  c: [1, 2]\n", "f.yaml")
    assert isinstance(doc, LineDict) and doc.line_of("b") == 2 and doc["b"].line == 3
    with pytest.raises(ConfigError, match=r"^f.yaml:2: not valid YAML"):
        load_yaml("a: [1\nb: 2\n", "f.yaml")


def _hub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpufleet("hub", *args), capture_output=True, text=True, timeout=60)


def test_hub_down_after_takes_a_compound_duration(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    # --down-after is read before --retention-raw: the error names the second, so the first passed.
    r = _hub("--down-after", "1h30m", "--retention-raw", "bogus", "--data", data)
    assert r.returncode == 2 and r.stderr == ("gpufleet: error: --retention-raw: 'bogus' is not a duration: "
                                              "use e.g. 90s, 5m, 1h30m, 7d or a number of seconds\n"), r.stderr
    r = _hub("--down-after", "5 minutes", "--data", data)
    assert r.returncode == 2 and "--down-after: '5 minutes' is not a duration" in r.stderr
    r = _hub("--down-after", "0s", "--data", data)
    assert r.returncode == 2 and "--down-after: must be more than zero" in r.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created
