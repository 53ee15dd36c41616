"""Run store code in a child process, kill -9 it mid-ingest, and say what it had acknowledged."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))


def run_and_kill(code: str, path: str, stop_when: Callable[[int], bool]) -> int:
    """`code` appends, then prints each push's index; returns the last index printed before the kill."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    last = -1
    for line in proc.stdout:
        last = int(line)
        if stop_when(last):
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for line in proc.stdout:  # acknowledgements still in the pipe when the kill landed
        if line.endswith("\n"):
            last = int(line)
    return last
