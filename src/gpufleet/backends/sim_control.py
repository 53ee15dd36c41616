"""A control file through which `gpufleet stress` loads simulated GPUs.

`gpufleet stress` on a simulated node writes {"until", "load", "gpus", "nodes"} here; every
simulator on the machine (an agent with --simulate, `gpufleet up --simulate N`) reads it at
each sample and keeps those GPUs at least that busy until `until`, so the load shows in
metrics, the UI and alerts like a real stress run. Simulators mark their presence (one file
per process, named by pid), which is how `gpufleet stress` knows it is on a simulated node.

The directory is per user (0700) in the temp directory, or `GPUFLEET_SIM_CONTROL` (a
directory) when set: both the simulator and `gpufleet stress` must see the same one.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "GPUFLEET_SIM_CONTROL"
STRESS_FILE = "stress.json"
PRESENT_DIR = "present"
PRESENCE_REFRESH_S = 10.0
CHECK_EVERY_S = 0.25  # how soon a simulator sees a new stress request


def control_dir() -> Path:
    given = os.environ.get(ENV, "")
    return Path(given) if given else Path(tempfile.gettempdir()) / f"gpufleet-sim-{os.getuid()}"


@dataclass(slots=True, frozen=True)
class Stress:
    load: float  # 0-1: the least utilisation the listed GPUs show
    until: float  # wall clock
    gpus: tuple[int, ...] | None = None  # None: every GPU
    nodes: tuple[str, ...] | None = None  # None: every simulated node reading this file

    def applies(self, node: str, now: float) -> bool:
        return now < self.until and (self.nodes is None or node in self.nodes)

    def load_of(self, gpu: int) -> float | None:
        return self.load if self.gpus is None or gpu in self.gpus else None


def parse(text: str) -> Stress | None:
    """A stress request from the file's text; None for anything malformed (a half-written file)."""
    try:
        d = json.loads(text)
        load, until = float(d["load"]), float(d["until"])
        gpus = None if d.get("gpus") is None else tuple(int(g) for g in d["gpus"])
        nodes = None if d.get("nodes") is None else tuple(str(n) for n in d["nodes"])
    except (ValueError, KeyError, TypeError):
        return None
    if not 0.0 <= load <= 1.0:
        return None
    return Stress(load, until, gpus, nodes)


class ControlDirError(OSError):
    pass


def owned_dir(d: Path) -> Path:
    """`d`, made 0700 if missing; ControlDirError when it is not a real directory of this user that
    only this user can write. The default lives in the shared temp directory under a guessable name:
    another user could make it first and plant a symlink where we write (or requests we read)."""
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise ControlDirError(f"simulator control directory {d} is not a directory only you can write "
                              f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}): remove it, or set "
                              f"{ENV} to a directory of your own")
    return d


def write(stress: Stress, where: Path | None = None) -> Path:
    d = owned_dir(where or control_dir())
    path = d / STRESS_FILE
    tmp = d / f".{STRESS_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"load": stress.load, "until": stress.until,
                            "gpus": None if stress.gpus is None else list(stress.gpus),
                            "nodes": None if stress.nodes is None else list(stress.nodes)}))
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    return path


def clear(where: Path | None = None) -> None:
    try:
        ((where or control_dir()) / STRESS_FILE).unlink()
    except FileNotFoundError:
        pass


def simulators(where: Path | None = None) -> list[int]:
    """Pids of live processes that simulate GPUs and read this directory."""
    found = []
    try:
        entries = list(((where or control_dir()) / PRESENT_DIR).iterdir())
    except OSError:
        return []
    for p in entries:
        if not p.name.isdigit():
            continue
        try:
            os.kill(int(p.name), 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass  # alive, another user's
        found.append(int(p.name))
    return found


class Reader:
    """What a simulator calls at each sample: the stress in force, the file read at most every CHECK_EVERY_S."""

    def __init__(self, where: Path | None = None) -> None:
        self.dir = where or control_dir()
        self._stress: Stress | None = None
        self._present_at = -PRESENCE_REFRESH_S
        self._checked_at = -CHECK_EVERY_S

    def current(self, now: float) -> Stress | None:
        mono = time.monotonic()
        if mono - self._checked_at >= CHECK_EVERY_S:  # a stat per sample of 1,000 simulated nodes adds up
            self._checked_at = mono
            self._check()
        return self._stress if self._stress is not None and now < self._stress.until else None

    def _check(self) -> None:
        self._mark_present()
        try:
            owned_dir(self.dir)  # requests only from this user (see owned_dir)
            text = (self.dir / STRESS_FILE).read_text()
        except OSError:
            self._stress = None
            return
        self._stress = parse(text)

    def _mark_present(self) -> None:
        mono = time.monotonic()
        if mono - self._present_at < PRESENCE_REFRESH_S:
            return
        self._present_at = mono
        try:
            owned_dir(self.dir)
            d = owned_dir(self.dir / PRESENT_DIR)
            (d / str(os.getpid())).touch()
        except OSError:
            pass  # a read-only or foreign directory: the simulator runs on without stress control


_shared: dict[Path, Reader] = {}


def shared_reader() -> Reader:
    """One reader per control directory and process (`gpufleet up --simulate 1000` stats once per sample)."""
    d = control_dir()
    r = _shared.get(d)
    if r is None:
        r = _shared[d] = Reader(d)
    return r
