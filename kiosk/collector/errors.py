"""The one error shape of the API, `{"error", "detail"}` (+ `index`), for every 4xx and 5xx.

Handlers raise `ApiError`; `error_middleware` turns it, aiohttp's own HTTP errors (404, 405, ...)
and any unexpected exception into that shape, so no answer leaves in another form.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kiosk.collector.storage.base import StorageError
from kiosk.wire import error_body

log = logging.getLogger(__name__)

# The `error` codes, with the status each goes with (the OpenAPI document lists them).
ERROR_CODES: dict[str, int] = {
    "bad_request": 400,
    "invalid_entry": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "too_many_requests": 429,
    "internal_error": 500,
    "storage_unavailable": 503,
}
_CODE_OF_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        close: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.close = close  # the request body may be unread: do not reuse the connection
        self.extra = extra


def error_response(
    status: int,
    error: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    return web.json_response(error_body(error, detail, **extra), status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _holds_nul(request: web.Request) -> bool:
    # aiohttp percent-decodes %00 into the path and the query; no PostgreSQL text can hold it, so
    # such a parameter would fail in the database as a 500. Refused here for every route at once.
    if "\x00" in request.path:
        return True
    return any("\x00" in name or "\x00" in value for name, value in request.query.items())


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if _holds_nul(request):
            raise ApiError(400, "bad_request", "a path or query parameter holds U+0000 (%00)")
        return await handler(request)
    except ApiError as exc:
        response = error_response(
            exc.status, exc.error, exc.detail, headers=exc.headers, **exc.extra
        )
        if exc.close:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODE_OF_STATUS.get(exc.status, "internal_error" if exc.status >= 500 else
                                   "bad_request")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        detail = _detail_of(exc, request)
        return error_response(exc.status, code, detail, headers=headers)
    except StorageError as exc:
        log.warning("storage error on %s %s: %s", request.method, request.path, exc)
        return error_response(
            503, "storage_unavailable", "the database cannot answer now; retry later"
        )
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the collector's log")


def _detail_of(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return f"no such endpoint: {request.path}"
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    return exc.reason
