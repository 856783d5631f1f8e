"""Request bodies in /openapi.json: the generation routes read raw JSON (their own errors, their own limits), so
FastAPI cannot see their models; this puts each family's pydantic body model in the document.

Owns `install_openapi(app, bodies)`: path -> body model, schemas under `components/schemas` (the name pydantic
gives them; the first model to define a name keeps it). The document is what /docs shows and what the fuzzing tests
generate requests from. Invariant: the document stays valid OpenAPI 3.1 (every `$ref` resolves).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

REF = "#/components/schemas/{model}"


def install_openapi(app: FastAPI, bodies: Mapping[str, type[BaseModel]]) -> None:
    """Make `app.openapi()` describe the JSON body of every POST route in `bodies`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schemas: dict[str, Any] = spec.setdefault("components", {}).setdefault("schemas", {})
        for path, model in bodies.items():
            operation = spec.get("paths", {}).get(path, {}).get("post")
            if operation is None:
                continue
            schema = _namespaced(model, schemas)
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas.setdefault(model.__name__, schema)
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
            }
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _namespaced(model: type[BaseModel], taken: Mapping[str, Any]) -> dict[str, Any]:
    """The model's schema, its definitions renamed `<Model>_<Name>` where another family already uses the name for
    a different schema (e.g. a `TextPart` on two APIs)."""
    schema = model.model_json_schema(ref_template=REF)
    clashes = [n for n, d in schema.get("$defs", {}).items() if n in taken and taken[n] != d]
    if not clashes:
        return schema
    text = json.dumps(schema)
    for name in clashes:
        text = text.replace(f'"{REF.format(model=name)}"', f'"{REF.format(model=f"{model.__name__}_{name}")}"')
    renamed: dict[str, Any] = json.loads(text)
    defs = renamed.get("$defs", {})
    renamed["$defs"] = {(f"{model.__name__}_{n}" if n in clashes else n): d for n, d in defs.items()}
    return renamed
