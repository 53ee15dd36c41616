"""YAML that remembers where things were written, so config errors can name file and line.

Mappings load as `LineDict`: a dict that also knows the line of the mapping and of each key.
Everything else (lists, scalars) loads as PyYAML's safe loader makes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """A problem in a config file, located: `path:line: message`."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.path, "line": self.line, "message": self.message, "text": str(self)}


class LineDict(dict):  # type: ignore[type-arg]
    """A YAML mapping with the 1-based line of itself (`line`) and of each key (`lines`)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    out = LineDict()
    out.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)  # type: ignore[arg-type]


def load_text(text: str, path: str) -> Any:
    """Parse YAML; a syntax error becomes a ConfigError with the line it points at."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(path, line, f"YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, 0, f"YAML error: {e}") from None


def load_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(str(path), 0, f"cannot read: {e.strerror or e}") from None
    return load_text(text, str(path))


def line_of(obj: Any, key: Any = None, default: int = 0) -> int:
    if isinstance(obj, LineDict):
        return obj.line_of(key) if key is not None else obj.line
    return default
