"""The admins' endpoints: publish a policy per venue type, the trust list and the revocation
list, and read the audit log. Every change is audited in the transaction that makes it."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from kiosk.codes import parse_revocation_list, parse_trust_list
from kiosk.collector.bodies import read_json
from kiosk.collector.errors import ApiError
from kiosk.collector.keys import AUTH_KEY, CLOCK_KEY, CONFIG_KEY, STORAGE_KEY
from kiosk.collector.kiosk_config import builtin_max_trust_age_hours
from kiosk.collector.operations import Operation, Reply
from kiosk.collector.storage.base import Actor, PolicyPublication
from kiosk.errors import KioskError
from kiosk.policies import policy_from_doc, policy_to_doc
from kiosk.wire import MAX_BODY_BYTES, PolicyDoc, PolicyPublish, format_rfc3339, parse_rfc3339

_VENUE_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
AUDIT_PAGE_MAX = 1000


class PublishedPolicy(BaseModel):
    venue_type: str
    policy_version: str
    policy: PolicyDoc
    max_trust_age_hours: float


class Jwk(BaseModel):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    kid: Annotated[str, Field(min_length=1)]
    x: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$", description="32 bytes, base64url")]
    iss: Annotated[str, Field(min_length=1, max_length=64)]


class TrustListDoc(BaseModel):
    """A JWKS of Ed25519 keys, each with the issuer it speaks for (health-code.md)."""

    keys: list[Jwk]


class RevocationListDoc(BaseModel):
    """Revoked holders as hex SHA-256 of `iss:sub` (health-code.md)."""

    updated: Annotated[int, Field(ge=0, description="Unix seconds")]
    revoked: list[Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]]


class ListAnswer(BaseModel):
    name: Literal["trust_list", "revocation_list"]
    items: int = Field(description="keys in the trust list, or revoked holders")


class AuditRecordDoc(BaseModel):
    id: int
    at: str
    actor: str
    role: str
    action: str
    target: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    records: list[AuditRecordDoc]
    next_after: int | None = Field(description="pass as `after` for the next page; null: done")


async def _admin(request: web.Request) -> Actor:
    principal = await request.app[AUTH_KEY].principal(request, "admin")
    return Actor(principal.name, principal.role)


async def put_policy(request: web.Request) -> web.Response:
    actor = await _admin(request)
    venue_type = request.match_info["venue_type"]
    if not _VENUE_TYPE.match(venue_type):
        raise ApiError(
            400, "bad_request", f"venue type {venue_type!r}: lowercase letters, digits and _"
        )
    app = request.app
    body = await read_json(
        request, limit=MAX_BODY_BYTES, within_s=app[CONFIG_KEY].server.body_timeout
    )
    try:
        published = PolicyPublish.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "policy"
        raise ApiError(400, "bad_request", f"{where}: {error['msg']}") from None
    max_trust_age_hours = builtin_max_trust_age_hours(venue_type)
    try:
        policy = policy_from_doc(published, published.policy_version, max_trust_age_hours)
    except KioskError as exc:
        raise ApiError(400, "bad_request", str(exc).replace("\n", " ")) from None
    document = policy_to_doc(policy)
    await app[STORAGE_KEY].publish_policy(
        PolicyPublication(
            venue_type,
            policy.version,
            document,
            max_trust_age_hours,
            published_at=app[CLOCK_KEY](),
            published_by=actor.name,
        ),
        actor=actor,
    )
    return web.json_response(
        {
            "venue_type": venue_type,
            "policy_version": policy.version,
            "policy": document,
            "max_trust_age_hours": max_trust_age_hours,
        }
    )


async def _put_list(request: web.Request, name: Literal["trust_list", "revocation_list"]) -> Any:
    actor = await _admin(request)
    app = request.app
    config = app[CONFIG_KEY]
    body = await read_json(
        request, limit=config.limits.max_list_bytes, within_s=config.server.body_timeout
    )
    try:
        if name == "trust_list":
            trust = parse_trust_list(body, source="trust list")
            document, items = trust.to_jwks(), len(trust)
            summary: dict[str, Any] = {"keys": [key.kid for key in trust]}
        else:
            revocation = parse_revocation_list(body, source="revocation list")
            document, items = revocation.to_json(), len(revocation.revoked)
            summary = {"updated": revocation.updated, "revoked": items}
    except KioskError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    await app[STORAGE_KEY].put_document(
        name, document, summary, actor=actor, now=app[CLOCK_KEY]()
    )
    return web.json_response({"name": name, "items": items})


async def put_trust_list(request: web.Request) -> web.Response:
    response: web.Response = await _put_list(request, "trust_list")
    return response


async def put_revocation_list(request: web.Request) -> web.Response:
    response: web.Response = await _put_list(request, "revocation_list")
    return response


def _time_param(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ApiError(
            400, "bad_request", f"{name}={text!r}: not an RFC 3339 time such as "
            "2022-03-05T17:06:40Z"
        ) from None


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, "bad_request", f"{name}={text!r}: a whole number {low}-{high}")
    return int(text)


async def get_audit(request: web.Request) -> web.Response:
    await _admin(request)
    since = _time_param(request, "since", 0.0)
    until = _time_param(request, "until", request.app[CLOCK_KEY]() + 1.0)
    after = _int_param(request, "after", 0, 0, 2**62)
    limit = _int_param(request, "limit", 100, 1, AUDIT_PAGE_MAX)
    records = await request.app[STORAGE_KEY].audit_records(
        since=since, until=until, after_id=after, limit=limit
    )
    return web.json_response(
        {
            "records": [
                {
                    "id": r.audit_id,
                    "at": format_rfc3339(r.at),
                    "actor": r.actor,
                    "role": r.role,
                    "action": r.action,
                    "target": r.target,
                    "detail": r.detail,
                }
                for r in records
            ],
            "next_after": records[-1].audit_id if len(records) == limit else None,
        }
    )


_ADMIN_ERRORS = (400, 401, 403, 408, 413, 503)

OPERATIONS = [
    Operation(
        "PUT",
        "/api/v1/policy/{venue_type}",
        put_policy,
        "putPolicy",
        "Publish the entry policy of a venue type",
        roles=("admin",),
        request=PolicyPublish,
        replies={200: Reply("Published; kiosks of that type get it with their configuration",
                            PublishedPolicy)},
        errors=_ADMIN_ERRORS,
        parameters=(
            {
                "name": "venue_type",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": _VENUE_TYPE.pattern},
            },
        ),
    ),
    Operation(
        "PUT",
        "/api/v1/trust-list",
        put_trust_list,
        "putTrustList",
        "Replace the trust list (a JWKS)",
        roles=("admin",),
        request=TrustListDoc,
        replies={200: Reply("Replaced", ListAnswer)},
        errors=_ADMIN_ERRORS,
    ),
    Operation(
        "PUT",
        "/api/v1/revocation-list",
        put_revocation_list,
        "putRevocationList",
        "Replace the revocation list",
        roles=("admin",),
        request=RevocationListDoc,
        replies={200: Reply("Replaced", ListAnswer)},
        errors=_ADMIN_ERRORS,
    ),
    Operation(
        "GET",
        "/api/v1/audit",
        get_audit,
        "getAudit",
        "Read the audit log: every admin change and every read of entry-level data",
        roles=("admin",),
        replies={200: Reply("Records in id order", AuditPage)},
        errors=(400, 401, 403, 503),
        parameters=tuple(
            {"name": name, "in": "query", "required": False, "schema": schema,
             "description": text}
            for name, schema, text in (
                ("since", {"type": "string", "format": "date-time"}, "from this time (RFC 3339)"),
                ("until", {"type": "string", "format": "date-time"}, "before this time"),
                ("after", {"type": "integer", "minimum": 0}, "records after this id"),
                ("limit", {"type": "integer", "minimum": 1, "maximum": AUDIT_PAGE_MAX},
                 "at most this many (default 100)"),
            )
        ),
    ),
]
