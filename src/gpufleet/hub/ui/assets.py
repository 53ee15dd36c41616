"""Where the UI's files are: our own static files and templates, and the npm libraries (uPlot,
Swagger UI) that setup.py copies into the package at build time (vendored.py lists them).

A checkout run without a build (an editable install made before `npm ci`) reads the libraries
from node_modules/ instead."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .vendored import FILES, VENDOR_DIR

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
VENDOR = HERE / VENDOR_DIR

# URL name under /ui/vendor/ -> (npm package, its file)
UPLOT_FILES = {"uplot.js": ("uplot", "dist/uPlot.iife.min.js"), "uplot.css": ("uplot", "dist/uPlot.min.css")}
# URL name under /docs/static/ -> (npm package, its file)
SWAGGER_FILES = {"swagger-ui-bundle.js": ("swagger-ui-dist", "swagger-ui-bundle.js"),
                 "swagger-ui.css": ("swagger-ui-dist", "swagger-ui.css"),
                 "favicon-32x32.png": ("swagger-ui-dist", "favicon-32x32.png")}
MISSING_HINT = ("uPlot is not installed: in a gpufleet checkout run `make up` (it runs npm ci); "
                "a pip-installed hub has it unless the wheel was built without `npm ci`")
SWAGGER_MISSING_HINT = ("Swagger UI is not installed: in a gpufleet checkout run `make up` (it runs npm ci); "
                        "the API's description is at /openapi.json")

assert all(rel in FILES[pkg] for pkg, rel in [*UPLOT_FILES.values(), *SWAGGER_FILES.values()])


def _node_modules() -> list[Path]:
    """$GPUFLEET_NODE_MODULES, or node_modules of the checkout holding this package."""
    out = []
    env = os.environ.get("GPUFLEET_NODE_MODULES")
    if env:
        out.append(Path(env))
    out.extend(p / "node_modules" for p in HERE.parents)
    return out


def npm_file(package: str, rel: str) -> Path | None:
    """The package's own copy of an npm library's file, else node_modules' (a checkout)."""
    own = VENDOR / package / Path(rel).name
    if own.is_file():
        return own
    for nm in _node_modules():
        p = nm / package / rel
        if p.is_file():
            return p
    return None


def files(table: dict[str, tuple[str, str]]) -> dict[str, Path] | None:
    """Every file of `table` (URL name -> path), or None when any is missing."""
    found = {name: npm_file(pkg, rel) for name, (pkg, rel) in table.items()}
    if any(p is None for p in found.values()):
        return None
    return {name: p for name, p in found.items() if p is not None}


def static_version() -> str:
    """A hash of our static files: appended to their URLs so a new release is never served stale."""
    h = hashlib.sha256()
    for p in sorted(STATIC.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:10]
