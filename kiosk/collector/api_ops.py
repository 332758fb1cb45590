"""Operations endpoints without a token: health, metrics, the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from kiosk import __version__
from kiosk.collector.errors import error_response
from kiosk.collector.keys import METRICS_KEY, OPERATIONS_KEY, STORAGE_KEY
from kiosk.collector.openapi import build_document
from kiosk.collector.operations import Operation, Reply
from kiosk.collector.storage.base import StorageError


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    database: Literal["sqlite", "postgresql"]


async def get_healthz(request: web.Request) -> web.Response:
    storage = request.app[STORAGE_KEY]
    try:
        await storage.ping()
    except StorageError:
        return error_response(503, "storage_unavailable", "the database does not answer")
    return web.json_response(
        {"status": "ok", "version": __version__, "database": storage.dialect}
    )


async def get_metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def get_openapi(request: web.Request) -> web.Response:
    operations: list[Operation] = request.app[OPERATIONS_KEY]
    return web.json_response(build_document(operations))


OPERATIONS = [
    Operation(
        "GET",
        "/healthz",
        get_healthz,
        "getHealth",
        "Whether the collector and its database answer",
        replies={200: Reply("Healthy", Health)},
        errors=(503,),
    ),
    Operation(
        "GET",
        "/metrics",
        get_metrics,
        "getMetrics",
        "Prometheus metrics (keep behind the network boundary)",
        replies={
            200: Reply("Prometheus text format", {"type": "string"}, media_type="text/plain")
        },
    ),
    Operation(
        "GET",
        "/api/v1/openapi.json",
        get_openapi,
        "getOpenApi",
        "This document",
        replies={200: Reply("OpenAPI 3.1", {"type": "object"})},
    ),
]
