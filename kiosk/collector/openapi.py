"""The OpenAPI 3.1 document of the collector, built from the routed operations and the pydantic
models they name (JSON Schema 2020-12, which OpenAPI 3.1 uses as is). It holds no token, key or
other secret: only shapes."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from kiosk import __version__
from kiosk.collector.errors import ERROR_CODES
from kiosk.collector.operations import Operation

REF = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The body of every 4xx and 5xx answer.",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "enum": sorted(ERROR_CODES)},
        "detail": {"type": "string", "description": "what is wrong, for a person"},
        "index": {
            "type": "integer",
            "minimum": 0,
            "description": "POST /api/v1/entries, 400: the position of the first bad entry",
        },
    },
}


def _models(operations: Iterable[Operation]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for op in operations:
        candidates = [op.request, *(reply.schema for reply in op.replies.values())]
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found[f"{candidate.__module__}.{candidate.__qualname__}"] = candidate
    return [found[name] for name in sorted(found)]


def _schema_of(
    value: type[BaseModel] | dict[str, Any] | None, refs: dict[type[BaseModel], str]
) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    return {"$ref": refs[value]}


def _error_reply(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def build_document(operations: Iterable[Operation]) -> dict[str, Any]:
    ops = list(operations)
    models = _models(ops)
    keys, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=REF
    )
    refs = {model: keys[(model, "validation")]["$ref"] for model in models}
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "security": [{"bearer": []}] if op.roles else [],
            "responses": {},
        }
        if op.description:
            item["description"] = op.description
        if op.roles:
            item["x-roles"] = list(op.roles)
            item["description"] = (
                item.get("description", "") + f" Roles: {', '.join(op.roles)}."
            ).strip()
        if op.parameters:
            item["parameters"] = [dict(p) for p in op.parameters]
        request_schema = _schema_of(op.request, refs)
        if request_schema is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": request_schema}},
            }
        for status, reply in sorted(op.replies.items()):
            answer: dict[str, Any] = {"description": reply.description}
            schema = _schema_of(reply.schema, refs)
            if schema is not None:
                answer["content"] = {reply.media_type: {"schema": schema}}
            if reply.headers:
                answer["headers"] = {
                    name: {"description": text, "schema": {"type": "string"}}
                    for name, text in reply.headers.items()
                }
            item["responses"][str(status)] = answer
        # Any operation that takes a token may meet the limit on failed authentication.
        limited = {429} if op.roles else set()
        for status in sorted({*op.errors, *limited, 404, 405, 500}):
            item["responses"].setdefault(str(status), _error_reply(status))
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kiosk collector",
            "version": __version__,
            "description": (
                "Entries, heartbeats and configuration of health-code kiosks, and the "
                "inspectors' and admins' endpoints (sync-api.md, version 1). Every 4xx and 5xx "
                'answer is {"error", "detail"} (+ "index" where said).'
            ),
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "32 random bytes in base64url (43 characters)",
                }
            },
        },
    }
