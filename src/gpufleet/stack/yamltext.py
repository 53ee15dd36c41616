"""YAML files with a comment header: what wrote them and how to change them (yaml.safe_dump drops comments)."""

from __future__ import annotations

from typing import Any

import yaml


def yaml_file(doc: Any, *comment: str) -> str:
    head = "".join(f"# {line}\n" if line else "#\n" for line in comment)
    return head + yaml.safe_dump(doc, sort_keys=False, width=1000, allow_unicode=True, default_flow_style=False)
