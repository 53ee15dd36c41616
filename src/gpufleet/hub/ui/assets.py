"""Where the UI's files are: our own static files and templates (in the package) and the
chart library, installed by `npm ci` into node_modules/ at the repository root."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

UPLOT_FILES = {"uplot.js": "uPlot.iife.min.js", "uplot.css": "uPlot.min.css"}
MISSING_HINT = "uPlot is not installed: run `make up` (it runs npm ci) in the gpufleet checkout"


def uplot_dir() -> Path | None:
    """node_modules/uplot/dist: $GPUFLEET_NODE_MODULES, the checkout holding this package, or cwd."""
    candidates = []
    env = os.environ.get("GPUFLEET_NODE_MODULES")
    if env:
        candidates.append(Path(env))
    candidates.extend(p / "node_modules" for p in HERE.parents)
    candidates.append(Path.cwd() / "node_modules")
    for nm in candidates:
        d = nm / "uplot" / "dist"
        if (d / UPLOT_FILES["uplot.js"]).is_file():
            return d
    return None


def static_version() -> str:
    """A hash of our static files: appended to their URLs so a new release is never served stale."""
    h = hashlib.sha256()
    for p in sorted(STATIC.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:10]
