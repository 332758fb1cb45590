"""A route and its OpenAPI description in one value, so the document cannot miss a route.

Each API module lists its `Operation`s; `app.add_operations` routes them and keeps them for
`openapi.build_document`. A test checks every route of the app is described.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Reply:
    """One documented answer: a description, and a pydantic model or a JSON Schema (or None)."""

    description: str
    schema: type[BaseModel] | dict[str, Any] | None = None
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # aiohttp form: /api/v1/policy/{venue_type}
    handler: Handler
    operation_id: str
    summary: str
    roles: tuple[str, ...] = ()  # () means no token is needed
    request: type[BaseModel] | dict[str, Any] | None = None
    replies: dict[int, Reply] = field(default_factory=dict)
    errors: tuple[int, ...] = ()  # statuses answered with the error shape
    parameters: tuple[dict[str, Any], ...] = ()  # OpenAPI parameter objects (query, header)
    description: str = ""
