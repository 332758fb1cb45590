"""Who is asking: `Authorization: Bearer <token>` to a Principal, or 401/403 as the spec says.

No token, a malformed one, or an unknown or revoked one: 401. A known token outside its role
or scope: 403. The token is looked up by its SHA-256 (what the database stores), so no secret
is ever compared in Python. Every refusal is counted by reason; `note_failure` is also where a
per-address limit on failed attempts belongs.
"""

from __future__ import annotations

from aiohttp import web

from kiosk.collector.errors import ApiError
from kiosk.collector.metrics import Metrics
from kiosk.collector.storage.base import Principal, Storage
from kiosk.collector.tokens import looks_like_token, region_covers, token_hash

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kiosk-collector"'}


class AuthGate:
    def __init__(self, storage: Storage, metrics: Metrics) -> None:
        self._storage = storage
        self._metrics = metrics

    def note_failure(self, request: web.Request, reason: str) -> None:
        # Rate limiting of failures per client address (request.remote) hooks in here.
        self._metrics.auth_failures.labels(reason).inc()

    def _unauthorized(self, request: web.Request, reason: str, detail: str) -> ApiError:
        self.note_failure(request, reason)
        return ApiError(401, "unauthorized", detail, headers=_CHALLENGE)

    def forbidden(self, request: web.Request, reason: str, detail: str) -> ApiError:
        self.note_failure(request, reason)
        return ApiError(403, "forbidden", detail)

    async def principal(self, request: web.Request, *roles: str) -> Principal:
        """The token's owner when its role is one of `roles`; ApiError 401/403 otherwise."""
        header = request.headers.get("Authorization")
        if not header:
            raise self._unauthorized(
                request, "missing", "send Authorization: Bearer <token>"
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not looks_like_token(token):
            raise self._unauthorized(
                request, "malformed", "the Authorization header is not Bearer <43-char token>"
            )
        principal = await self._storage.principal_by_token(token_hash(token))
        if principal is None:
            raise self._unauthorized(request, "unknown", "unknown or revoked token")
        if principal.role not in roles:
            raise self.forbidden(
                request,
                "role",
                f"a {principal.role} token may not do this; it needs a {' or '.join(roles)} token",
            )
        return principal

    def require_region(self, request: web.Request, principal: Principal, region: str) -> None:
        """403 unless `principal` (an inspector) sees `region`; admins see everything."""
        if principal.role == "admin":
            return
        scope = principal.region
        if scope is None or not region_covers(scope, region):
            raise self.forbidden(
                request, "scope", f"region {region!r} is outside this token's region {scope!r}"
            )
