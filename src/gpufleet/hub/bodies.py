"""The push body's full schema for OpenAPI (the docs and schemathesis reach push through it).

Push reads its body itself (each snapshot's bytes are kept as sent), so FastAPI cannot derive
the schema: it comes from the msgspec types the hub decodes with.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..snapshot import NodeSnapshot

REF = "#/components/schemas/{name}"


class PushRequest(msgspec.Struct):
    """Snapshots of the pushing node, oldest first (schema: docs/snapshot.md)."""

    snapshots: list[NodeSnapshot]


PUSH_OPENAPI = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": REF.format(name="PushRequest")}}}}}


def components() -> dict[str, Any]:
    """Schemas the push body refers to, for the OpenAPI document's components."""
    _, comps = msgspec.json.schema_components([PushRequest], ref_template=REF)
    return dict(comps)


def install(app: Any) -> None:
    """Add the push body's schemas to the app's OpenAPI document (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            doc.setdefault("components", {}).setdefault("schemas", {}).update(components())
            app.openapi_schema = doc
        schema: dict[str, Any] = app.openapi_schema
        return schema

    app.openapi = openapi
