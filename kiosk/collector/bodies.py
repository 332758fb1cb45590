"""Request bodies read within bounds: size (413 before reading past the limit, from
Content-Length or while counting a streamed body) and time (408 for a body sent too slowly;
aiohttp has no read timeout of its own). JSON is strict: UTF-8, no NaN or Infinity, no string
holding U+0000 or an unpaired surrogate (escapes JSON allows but no PostgreSQL text or jsonb can
store: refused here rather than failing in the database as a 503 a kiosk would retry forever),
and nested at most MAX_JSON_DEPTH deep: every document of the API is a few levels deep, and a
deeper one would only reach the recursion limits of the decoder, the RFC 8785 encoder or pydantic
as a 500."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

from kiosk.collector.errors import ApiError

MAX_JSON_DEPTH = 32
_CONTAINERS = (dict, list)
# Only these escapes make a NUL or a surrogate: decoded UTF-8 holds neither, and JSON refuses a
# raw control character in a string. A match only means the exact check below must run.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


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


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether a non-empty array or object sits more than `limit` levels deep. Level by level
    (no recursion), and only non-empty containers are followed: about 2 ms for a full batch."""
    level: list[Any] = [document]
    depth = 1
    while level:
        below: list[Any] = []
        for value in level:
            members = value.values() if type(value) is dict else value
            below += [item for item in members if item and type(item) in _CONTAINERS]
        if below and depth >= limit:
            return True
        level = below
        depth += 1
    return False


def _holds_unstorable_string(document: Any) -> bool:
    """Whether some member name or string holds U+0000 or an unpaired surrogate."""
    pending: list[Any] = [document]
    while pending:
        value = pending.pop()
        if type(value) is str:
            strings = [value]
        elif type(value) is dict:
            strings = list(value)
            pending += value.values()
        elif type(value) is list:
            strings = []
            pending += value
        else:
            continue
        for text in strings:
            if "\x00" in text:
                return True
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _unstorable(document: Any) -> ApiError:
    detail = (
        "holds U+0000 or an unpaired surrogate (\\u0000, \\ud800...), which no database text "
        "can store"
    )
    entries = document.get("entries") if type(document) is dict else None
    if type(entries) is list:  # name the entry, so a kiosk sets just that one aside
        for index, entry in enumerate(entries):
            if _holds_unstorable_string(entry):
                return ApiError(400, "invalid_entry", f"entry {index} {detail}", index=index)
    return ApiError(400, "bad_request", f"a string {detail}")


def _too_deep() -> ApiError:
    return ApiError(
        400, "bad_request", f"the body nests arrays and objects over {MAX_JSON_DEPTH} deep"
    )


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "the body is not UTF-8") from None
    try:
        document = json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
    if type(document) in (dict, list) and _deeper_than(document, MAX_JSON_DEPTH):
        raise _too_deep()
    if _SUSPECT_ESCAPE.search(text) and _holds_unstorable_string(document):
        raise _unstorable(document)
    return document


async def read_json(request: web.Request, *, limit: int, within_s: float) -> Any:
    return parse_json(await read_body(request, limit=limit, within_s=within_s))
