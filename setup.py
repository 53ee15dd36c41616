"""Build step for the web UI's libraries; everything else about the package is in pyproject.toml.

uPlot and Swagger UI come from npm (pinned in package-lock.json, installed by `npm ci`). Building
the sdist or a wheel copies the files the hub serves (src/gpufleet/hub/ui/vendored.py lists them)
from node_modules/ into src/gpufleet/hub/ui/vendor/, where package-data picks them up: so the
wheel carries them, and the sdist carries them too, so a wheel built from the sdist needs no npm.
A release build without them fails; an editable install does not (the hub then reads node_modules).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
UI = ROOT / "src" / "gpufleet" / "hub" / "ui"


def _manifest() -> dict[str, tuple[str, ...]]:
    spec = importlib.util.spec_from_file_location("_gpufleet_vendored", UI / "vendored.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return dict(mod.FILES)


def copy_vendored() -> list[str]:
    """node_modules/<package>/<file> -> src/gpufleet/hub/ui/vendor/<package>/<basename>; returns
    the packages still missing. Without node_modules (building from the sdist) the copies the
    sdist carries are used."""
    missing = []
    for package, files in _manifest().items():
        for rel in files:
            src = ROOT / "node_modules" / package / rel
            dest = UI / "vendor" / package / Path(rel).name
            if src.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            elif not dest.is_file():
                missing.append(package)
    return sorted(set(missing))


def require_vendored() -> None:
    """A wheel or sdist without the libraries would be a hub without charts or /docs: stop."""
    missing = copy_vendored()
    if missing:
        raise SystemExit(f"gpufleet build: the web UI's libraries ({', '.join(missing)}) are not in "
                         f"{ROOT / 'node_modules'}: run `npm ci` there first (package-lock.json pins them)")


class BuildPy(build_py):
    def finalize_options(self) -> None:
        copy_vendored()  # before package data is listed; metadata steps get here too, so no error yet
        super().finalize_options()

    def run(self) -> None:
        # An editable install (a checkout before `npm ci`) may go without: the hub then reads node_modules.
        if not getattr(self, "editable_mode", False):
            require_vendored()
        super().run()


class Sdist(sdist):
    def run(self) -> None:
        require_vendored()
        super().run()


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
