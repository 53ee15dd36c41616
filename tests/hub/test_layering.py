"""The hub stands alone: nothing under gpufleet/hub imports the agent, collectors or backends.

Read from the source (ast), so an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gpufleet

PACKAGE = Path(gpufleet.__file__).resolve().parent
FORBIDDEN = ("gpufleet.agent", "gpufleet.collectors", "gpufleet.backends", "gpufleet.up")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _nodes(tree: ast.AST, typing_only: bool) -> list[ast.AST]:
    """Every node, or (typing_only=False) every node outside `if TYPE_CHECKING:` blocks."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if not typing_only and isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def imports_of(path: Path, *, typing_only: bool = True) -> list[str]:
    """Absolute names of every module `path` imports, relative imports resolved; with
    typing_only=False, leaving out those only type checkers see (`if TYPE_CHECKING:`)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in _nodes(ast.parse(path.read_text(), str(path)), typing_only):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                names = [f"{prefix}.{node.module}"] if node.module else [f"{prefix}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            out.extend(names)
    return out


def test_imports_of_resolves_relative_imports(tmp_path: Path) -> None:
    assert "gpufleet.hub.service" in imports_of(PACKAGE / "hub" / "run.py")
    assert "gpufleet.errors" in imports_of(PACKAGE / "hub" / "run.py")
    assert "gpufleet.agent.service" in imports_of(PACKAGE / "up.py")  # the composition root may


def test_hub_imports_no_agent_collector_or_backend_code() -> None:
    bad = []
    for path in sorted((PACKAGE / "hub").rglob("*.py")):
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not bad, "\n".join(bad)
