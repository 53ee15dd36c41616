"""`gpufleet top` in a real terminal (tmux) at 80x24 and 120x40 against a real hub process:
keys by send-keys, the screen by capture-pane; the hub is stopped and started again under it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from access import bearer, make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet

pytestmark = pytest.mark.realparts  # starts real gpufleet processes and tmux

SIM = 3
KEY: dict[str, str] = {}  # a viewer's API key per test directory, made with its first hub


def _hub(tmp: Path, port: int) -> Proc:
    url = f"http://127.0.0.1:{port}"
    p = Proc(gpufleet("up", "--simulate", str(SIM), "--listen", f"127.0.0.1:{port}", "--data", str(tmp / "d"),
                      "--interval", "1"), tmp / f"up-{len(list(tmp.glob('up-*')))}.log")
    p.wait_http(f"{url}/healthz")
    if str(tmp) not in KEY:  # kept in hub.db across the restart
        KEY[str(tmp)] = make_api_key(tmp / "d", "viewer")
    key = KEY[str(tmp)]
    eventually(lambda: len(httpx.get(f"{url}/api/v1/snapshots", headers=bearer(key)).json()["snapshots"]) == SIM + 1,
               timeout=30, what="the simulated fleet")
    return p


class Term:
    """One tmux server on its own socket, so the test never touches anyone else's sessions."""

    def __init__(self, tmp: Path, cols: int, rows: int, cmd: list[str]) -> None:
        tmux = shutil.which("tmux")
        assert tmux, "tmux not found: scripts/system-deps.sh installs it"
        self.base = [tmux, "-S", str(tmp / f"tmux-{cols}x{rows}.sock")]
        # The pane gets its size first (a placeholder), then the program: started with the session,
        # it can come up before tmux sizes the detached window and draw at tmux's default 80x24.
        # COLUMNS/LINES (set by some runners) would override the pane's real size.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        subprocess.run([*self.base, "-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", str(cols),
                        "-y", str(rows), "cat"], check=True, timeout=10, env=env)
        subprocess.run([*self.base, "respawn-pane", "-k", "-t", "top", shlex.join(cmd)], check=True, timeout=10)
        self.cols, self.rows = cols, rows

    def screen(self) -> list[str]:
        r = subprocess.run([*self.base, "capture-pane", "-p", "-t", "top"], capture_output=True, text=True,
                           timeout=10)
        return r.stdout.splitlines() if r.returncode == 0 else []

    def text(self) -> str:
        return "\n".join(self.screen())

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "top", *keys], check=True, timeout=10)

    def alive(self) -> bool:
        return subprocess.run([*self.base, "has-session", "-t", "top"], capture_output=True, timeout=10).returncode == 0

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=10)


@contextmanager
def term(tmp: Path, cols: int, rows: int, url: str) -> Iterator[Term]:
    t = Term(tmp, cols, rows, gpufleet("top", "--hub", url, "--interval", "0.5", "--api-key", KEY[str(tmp)]))
    try:
        yield t
    finally:
        t.close()


def _body_is_one_line_per_row(t: Term, nodes: set[str]) -> int:
    """Every list line is a GPU row or a node header: a wrapped row would start with neither."""
    lines = t.screen()
    assert len(lines) <= t.rows and all(len(ln) <= t.cols for ln in lines)
    body = [ln for ln in lines[1:-1] if ln.strip()]
    rows = 0
    for ln in body:
        if re.match(r"^  GPU ?\d+ ", ln):
            assert "%" in ln, ln
            rows += 1
        elif any(n.startswith(ln.split(" ")[0].rstrip("…")) for n in nodes):
            rows += 1
        else:
            assert ln.startswith(("▲", "  …")) or set(ln.strip()) <= set("▁▂▃▄▅▆▇█▏▕"), f"wrapped? {ln!r}"
    return rows


@pytest.mark.parametrize("cols,rows", [(80, 24), (120, 40)])
def test_top_in_a_terminal_survives_a_hub_restart(tmp_path: Path, cols: int, rows: int) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = _hub(tmp_path, port)
    listed = httpx.get(f"{url}/api/v1/nodes", headers=bearer(KEY[str(tmp_path)])).json()["nodes"]
    nodes = {n["name"] for n in listed}
    total = len(nodes) + sum(n["gpus"] for n in listed)
    try:
        with term(tmp_path, cols, rows, url) as t:
            eventually(lambda: f"{SIM + 1} nodes" in t.text() and "GPU 0" in t.text(), timeout=30,
                       what=f"the fleet on a {cols}x{rows} screen")
            shown = _body_is_one_line_per_row(t, nodes)
            assert shown >= min(rows - 4, total), t.text()  # the list fills the screen (or shows all)
            assert "°C" in t.text() and "free" in t.text()
            if cols >= 120:
                assert re.search(r"\d+W ", t.text())  # power has room at 120 columns

            t.keys("s")
            eventually(lambda: "sort util" in t.text(), what="the sort key in the summary")
            t.keys("f")
            eventually(lambda: "FREE GPUs" in t.text(), what="the free-GPU view")
            assert all(ln.rstrip().endswith("free") for ln in t.screen() if re.match(r"^  GPU ?\d+ ", ln))
            t.keys("f")

            # A burst of keys right after `/` (a paste, a slow link) is filter text, bindings included.
            user = next(p["user"] for s in httpx.get(f"{url}/api/v1/snapshots", headers=bearer(KEY[str(tmp_path)])).json()["snapshots"]
                        for g in s.get("gpus", []) for p in g.get("processes", []))
            t.keys("/", *f"user:{user}")
            eventually(lambda: f"filter: user:{user}" in t.text(), what="the typed filter in the summary")
            assert "sort util" in t.text() and "FREE" not in t.text()  # s and f were text, not keys
            gpu_lines = [ln for ln in t.screen() if re.match(r"^  GPU ?\d+ ", ln)]
            assert gpu_lines and all(user in ln for ln in gpu_lines)
            t.keys("Enter")
            t.keys("Escape")
            eventually(lambda: "filter:" not in t.text(), what="Esc to clear the filter")

            hub.stop()
            eventually(lambda: "reconnecting" in t.text(), timeout=30, what="'reconnecting' while the hub is gone")
            assert t.alive() and "GPU 0" in t.text()  # the last rows stay on screen
            hub = _hub(tmp_path, port)
            eventually(lambda: "reconnecting" not in t.text(), timeout=30, what="the view to resume")
            _body_is_one_line_per_row(t, nodes)

            t.keys("q")
            eventually(lambda: not t.alive(), what="q to quit")
    finally:
        hub.stop()
