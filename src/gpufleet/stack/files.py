"""Write a whole stack folder or nothing: build it in a temporary sibling, then rename it into place.

A folder that is not empty is refused unless --force; even with --force, only a folder this
command wrote before (it holds MARKER) is replaced, so a mistyped --out cannot wipe a folder of
someone's own files. The files hold no secrets (keys stay in the files they name), and are
world-readable because the containers read them as their own users (nobody, grafana).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from ..errors import UserError

MARKER = ".gpufleet-stack"
FILE_MODE = 0o644
DIR_MODE = 0o755


def _check_relative(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"output path {name!r} must stay inside the stack folder")
    return p


def write_tree(out: Path, files: Mapping[str, str], force: bool) -> None:
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder (it is created if missing)")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UserError(f"--out {out}: the folder is not empty; add --force to replace what "
                            "`gpufleet stack generate` wrote there before")
        if not (out / MARKER).is_file():
            raise UserError(f"--out {out}: the folder is not empty and was not written by `gpufleet stack "
                            "generate`; choose a new or empty folder")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise UserError(f"--out {out}: the folder above it, {parent}, does not exist")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=parent))
    except OSError as e:
        raise UserError(f"--out {out}: cannot write in {parent}: {e.strerror}") from None
    try:
        tmp.chmod(DIR_MODE)
        for name, text in {**files, MARKER: "Written by `gpufleet stack generate`; --force may replace this folder.\n"}.items():
            path = tmp.joinpath(*_check_relative(name).parts)
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(FILE_MODE)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap(new: Path, out: Path) -> None:
    """Put `new` where `out` is; an old folder is moved aside first and removed only afterwards."""
    old: Path | None = None
    if out.is_dir():
        if any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=new.parent))
            os.rename(out, old / out.name)
        else:
            out.rmdir()
    try:
        os.rename(new, out)
    except OSError as e:
        if old is not None:
            os.rename(old / out.name, out)  # put the previous stack back as it was
            old.rmdir()
        raise UserError(f"--out {out}: cannot rename the new folder into place: {e.strerror}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
