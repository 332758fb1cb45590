"""Who is asking: `Authorization: Bearer <token>` to a Principal, or 401/403 as the spec says.

No token, a malformed one, or an unknown or revoked one: 401. A known token outside its role
or scope: 403. The token is looked up by its SHA-256 (what the database stores), so no secret
is ever compared in Python: what is looked up is the SHA-256 of what was sent, so the timing of
the lookup can tell an attacker nothing about a stored token. Every refusal is counted by reason.
Failed authentication (401) is limited per client address (kiosk.collector.ratelimit): past the
limit, 429 with Retry-After before any token is looked up.
"""

from __future__ import annotations

from aiohttp import web

from kiosk.collector.errors import ApiError
from kiosk.collector.metrics import Metrics
from kiosk.collector.ratelimit import FailureLimiter
from kiosk.collector.storage.base import Principal, Storage
from kiosk.collector.tokens import looks_like_token, region_covers, token_hash

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kiosk-collector"'}
# Refusals that mean "who are you?" (a 401): these count against the client's address. A 403 is
# a known token asking outside its role or scope, which no guessing improves.
_AUTHENTICATION_FAILURES = frozenset({"missing", "malformed", "unknown"})


class AuthGate:
    def __init__(
        self, storage: Storage, metrics: Metrics, limiter: FailureLimiter | None = None
    ) -> None:
        self._storage = storage
        self._metrics = metrics
        self._limiter = limiter

    def note_failure(self, request: web.Request, reason: str) -> None:
        self._metrics.auth_failures.labels(reason).inc()
        if self._limiter is not None and reason in _AUTHENTICATION_FAILURES:
            self._limiter.failed(request.remote)

    def refuse_if_limited(self, request: web.Request) -> None:
        """429 with Retry-After when the client's address failed authentication too often."""
        if self._limiter is None:
            return
        wait = self._limiter.retry_after(request.remote)
        if wait is not None:
            self._metrics.auth_failures.labels("rate_limited").inc()
            raise ApiError(
                429,
                "too_many_requests",
                f"too many failed authentications from this address; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    def _unauthorized(self, request: web.Request, reason: str, detail: str) -> ApiError:
        self.note_failure(request, reason)
        return ApiError(401, "unauthorized", detail, headers=_CHALLENGE)

    def forbidden(self, request: web.Request, reason: str, detail: str) -> ApiError:
        self.note_failure(request, reason)
        return ApiError(403, "forbidden", detail)

    async def principal(self, request: web.Request, *roles: str) -> Principal:
        """The token's owner when its role is one of `roles`; ApiError 401/403/429 otherwise."""
        self.refuse_if_limited(request)
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
