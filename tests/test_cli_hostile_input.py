"""What a new user (or a typo) gives the new commands: one line naming the problem, exit 2, no
traceback, nothing left half-written (the QA pass over issues 10, 12 and 15)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpufleet.cli import main

BAD_URLS = ["http://[::1", "http://hub:99999", "http://hub:abc"]


Run = Callable[..., tuple[int, str]]


@pytest.fixture()
def run(capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    """gpufleet's own entry point in-process: exit code and what it printed (stdout + stderr)."""
    def go(*argv: str) -> tuple[int, str]:
        try:
            main(list(argv))
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return code, out + err
    yield go


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("cmd", [["status", "--hub"], ["report", "--hub"], ["jobs", "--hub"],
                                 ["k8s", "manifests", "--out", "OUT", "--hub-url"],
                                 ["service", "install", "agent", "--dry-run", "--hub"]])
def test_bad_hub_url_is_one_line(run: Run, tmp_path: Path, cmd: list[str], url: str) -> None:
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in cmd]
    code, out = run(*argv, url)
    assert code == 2, out
    assert "Traceback" not in out and out.count("\n") == 1 and "is not a URL" in out, out
    assert not (tmp_path / "out").exists()


def test_k8s_out_under_a_file_is_one_line(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    code, out = run("k8s", "manifests", "--out", str(tmp_path / "f" / "sub"))
    assert code == 2 and out.startswith("gpufleet: error: --out ") and "cannot write there" in out, out


def test_service_unit_dir_that_cannot_be_made(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    unit_dir = tmp_path / "f" / "units"
    code, out = run("service", "install", "agent", "--unit-dir", str(unit_dir), "--config-dir",
                     str(tmp_path / "cfg"), "--hub", "http://hub:8080")
    assert code == 2 and "cannot write" in out and "Traceback" not in out, out
