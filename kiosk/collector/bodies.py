"""Request bodies read within bounds: size (413 before reading past the limit, from
Content-Length or while counting a streamed body) and time (408 for a body sent too slowly;
aiohttp has no read timeout of its own). JSON is strict: UTF-8, no NaN or Infinity."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from kiosk.collector.errors import ApiError


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"the body is over {limit} bytes; split it",
        close=True,
    )


async def read_body(request: web.Request, *, limit: int, within_s: float) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within_s):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"the body did not arrive within {within_s:g} s",
            close=True,
        ) from None
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "the body is not UTF-8") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"the body is not valid JSON: {exc}") from None


async def read_json(request: web.Request, *, limit: int, within_s: float) -> Any:
    return parse_json(await read_body(request, limit=limit, within_s=within_s))
