"""Run `gpufleet ARGS...` as on an agent-only install: every library outside the agent's own
dependencies (the `hub`, `top` and `test` extras and whatever else this venv holds) is made
unimportable, and each attempt of gpufleet's code to import one is written to the file named by
$BLOCKED_LOG (a library probing for an optional module, as msgspec does for typing_extensions, is not).

Usage: python agent_only.py ARGS...   (exit status and output as gpufleet's)
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata as md
import os
import re
import sys


def agent_closure() -> set[str]:
    """Names of the distributions `pip install gpufleet` brings: its requirements without extras,
    and theirs, recursively (environment markers evaluated as pip would)."""
    from packaging.requirements import Requirement

    todo, seen = ["gpufleet"], set()
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    return seen


def blocked_modules() -> set[str]:
    keep = agent_closure()
    out = set()
    for module, dists in md.packages_distributions().items():
        if module == "gpufleet" or module.startswith("_distutils"):
            continue
        if not any(re.sub(r"[-_.]+", "-", d).lower() in keep for d in dists):
            out.add(module)
    return out - {"pip", "setuptools", "pkg_resources"}


class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str], log: str) -> None:
        self.names, self.log = names, log

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        top = fullname.partition(".")[0]
        if top in self.names:
            importer = _importer()
            if importer.startswith("gpufleet"):  # a library probing for an optional module is fine
                with open(self.log, "a") as f:
                    f.write(f"{importer} imports {fullname}\n")
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked: not an agent dependency)",
                                      name=fullname)
        return None


def _importer() -> str:
    """The module whose import statement reached this finder."""
    f = sys._getframe(2)
    while f is not None and (f.f_code.co_filename.startswith("<frozen") or f.f_globals.get("__name__") == __name__):
        f = f.f_back
    return str(f.f_globals.get("__name__", "?")) if f is not None else "?"


if __name__ == "__main__":
    names = blocked_modules()
    # Computed with `packaging` (not an agent dependency): forget it and everything else it loaded.
    for m in [m for m in sys.modules if m.partition(".")[0] in names]:
        del sys.modules[m]
    sys.meta_path.insert(0, Blocker(names, os.environ.get("BLOCKED_LOG", os.devnull)))
    from gpufleet.cli import main

    main(sys.argv[1:])
