"""The inspectors' endpoints (sync-api.md, Inspectors): non-compliant units of a region, one unit
with its evidence, and ordering a unit closed for rectification or letting it reopen.

Only inspector tokens, within their region by whole path segments (403 outside). Windows are
half-open, `[since, until)`, 24 hours up to now by default and at most `MAX_WINDOW_S` long.
Every answer that carries entry-level data (sample entry ids, entry counts) is audited, as is
every status change (in the transaction that makes it). Findings served are counted by rule
for Prometheus. `Accept: text/csv` gets CSV (kiosk.collector.csv_export).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from prometheus_client import Counter
from pydantic import BaseModel, Field, ValidationError

from kiosk.collector.bodies import read_json
from kiosk.collector.csv_export import CSV_TYPE, noncompliant_csv, unit_csv, wants_csv
from kiosk.collector.errors import ApiError
from kiosk.collector.findings import FindingsQuery, UnitFindings, findings_by_venue
from kiosk.collector.findings.units import (
    StatusChange,
    UnitDetail,
    UnitHeader,
    set_unit_status,
    unit_detail,
    unit_headers,
)
from kiosk.collector.keys import AUTH_KEY, CLOCK_KEY, CONFIG_KEY, METRICS_KEY, STORAGE_KEY
from kiosk.collector.operations import Operation, Reply
from kiosk.collector.storage.base import Actor, NotFound, Principal
from kiosk.collector.tokens import region_problem
from kiosk.findings import DEFAULT_WINDOW_S, Finding, Kind, Rule
from kiosk.wire import format_rfc3339, parse_rfc3339

MAX_WINDOW_S = 31 * 24 * 3600
MAX_NOTE_CHARS = 500
MAX_STATUS_BODY_BYTES = 8192
FINDINGS_COUNTER_KEY = web.AppKey("findings_counter", Counter)


def register(app: web.Application) -> list[Operation]:
    """Set up what the endpoints need on `app` (before it starts); their operations."""
    app[FINDINGS_COUNTER_KEY] = Counter(
        "kiosk_collector_findings",
        "Findings served to inspectors, by rule",
        ["rule"],
        registry=app[METRICS_KEY].registry,
    )
    for rule in Rule:
        app[FINDINGS_COUNTER_KEY].labels(rule.value)
    return OPERATIONS


# -- request parts ---------------------------------------------------------------------------


async def _inspector(request: web.Request) -> Principal:
    principal = await request.app[AUTH_KEY].principal(request, "inspector")
    if principal.region is None:
        raise request.app[AUTH_KEY].forbidden(request, "scope", "this inspector has no region")
    return principal


def _time(request: web.Request, name: str) -> float | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ApiError(
            400,
            "bad_request",
            f"{name}={text!r}: not an RFC 3339 time such as 2022-03-05T17:06:40Z",
        ) from None


def _window(request: web.Request) -> tuple[float, float, float]:
    """(since, until, now): the last 24 hours by default; either end may be given alone."""
    now = request.app[CLOCK_KEY]()
    since, until = _time(request, "since"), _time(request, "until")
    if until is None:
        until = now if since is None or since < now else since + DEFAULT_WINDOW_S
    if since is None:
        since = until - DEFAULT_WINDOW_S
    if not since < until:
        raise ApiError(400, "bad_request", "since must be before until")
    if until - since > MAX_WINDOW_S:
        raise ApiError(
            400, "bad_request", f"the window may be at most {MAX_WINDOW_S // 86400} days"
        )
    return since, until, now


def _query(
    request: web.Request, since: float, until: float, now: float, **parts: Any
) -> FindingsQuery:
    return FindingsQuery(
        since=since,
        until=until,
        now=now,
        silent_after_s=request.app[CONFIG_KEY].findings.silent_after,
        **parts,
    )


# -- answers -------------------------------------------------------------------------------


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule.value,
        "kind": finding.kind.value,
        "kiosk_id": finding.kiosk_id,
        "count": finding.count,
        "first": format_rfc3339(finding.first),
        "last": format_rfc3339(finding.last),
        "sample_entry_ids": list(finding.sample_entry_ids),
    }


def _when(at: float | None) -> str | None:
    return None if at is None else format_rfc3339(at)


def _unit_json(header: UnitHeader, findings: list[Finding]) -> dict[str, Any]:
    return {
        "venue_id": header.venue_id,
        "name": header.name,
        "region": header.region,
        "venue_type": header.venue_type,
        "status": header.status,
        "status_set_by": header.set_by,
        "status_set_at": _when(header.set_at),
        "status_note": header.note,
        "findings": [finding_json(f) for f in findings],
    }


def _history_json(history: list[StatusChange]) -> list[dict[str, Any]]:
    return [
        {"status": c.status, "note": c.note, "by": c.set_by, "at": format_rfc3339(c.set_at)}
        for c in history
    ]


def _reply(request: web.Request, answer: dict[str, Any], as_csv: Any) -> web.Response:
    if wants_csv(request.headers.get("Accept")):
        return web.Response(text=as_csv(answer), content_type=CSV_TYPE, charset="utf-8")
    return web.json_response(answer)


def _count(request: web.Request, findings: list[Finding]) -> None:
    counter = request.app[FINDINGS_COUNTER_KEY]
    for finding in findings:
        counter.labels(finding.rule.value).inc()


def _samples(units: list[UnitFindings]) -> int:
    return sum(len(f.sample_entry_ids) for unit in units for f in unit.findings)


# -- handlers ------------------------------------------------------------------------------


async def noncompliant_answer(
    request: web.Request,
    principal: Principal,
    *,
    region: str,
    since: float,
    until: float,
    now: float,
) -> dict[str, Any]:
    """The answer of `GET /api/v1/noncompliant` for `principal` (ApiError 400/403 for a bad
    region or one outside its scope); audited and counted. The dashboard shows the same."""
    app = request.app
    problem = region_problem(region)
    if problem is not None:
        raise ApiError(400, "bad_request", f"region={region!r}: {problem}")
    app[AUTH_KEY].require_region(request, principal, region)
    storage = app[STORAGE_KEY]
    units = await findings_by_venue(storage, _query(request, since, until, now, region=region))
    window = {"since": format_rfc3339(since), "until": format_rfc3339(until)}
    answer: dict[str, Any] = {
        "region": region,
        "window": window,
        "units": [_unit_json(u.header, u.findings) for u in units if u.header is not None],
    }
    await storage.audit(
        Actor(principal.name, principal.role),
        "read_noncompliant",
        region,
        {
            **window,
            "units": [unit.venue_id for unit in units],
            "sample_entry_ids": _samples(units),
        },
        now=now,
    )
    _count(request, [f for unit in units for f in unit.findings])
    return answer


async def _venue_in_scope(request: web.Request, principal: Principal, venue_id: str) -> UnitHeader:
    headers = await unit_headers(request.app[STORAGE_KEY], [venue_id])
    header = headers.get(venue_id)
    if header is None:
        raise ApiError(404, "not_found", f"no unit {venue_id!r}")
    request.app[AUTH_KEY].require_region(request, principal, header.region)
    return header


async def unit_answer(
    request: web.Request,
    principal: Principal,
    venue_id: str,
    *,
    since: float,
    until: float,
    now: float,
) -> dict[str, Any]:
    """The answer of `GET /api/v1/units/<venue_id>` (ApiError 404, or 403 outside the
    principal's region); audited and counted."""
    header = await _venue_in_scope(request, principal, venue_id)
    query = _query(request, since, until, now, venue_id=header.venue_id)
    storage = request.app[STORAGE_KEY]
    detail = await unit_detail(storage, query)
    if detail is None:
        raise ApiError(404, "not_found", f"no unit {header.venue_id!r}")
    units = await findings_by_venue(storage, query)
    findings = units[0].findings if units else []
    answer = _detail_json(detail, findings, since, until)
    await storage.audit(
        Actor(principal.name, principal.role),
        "read_unit",
        header.venue_id,
        {
            **answer["window"],
            "entries_counted": detail.counts.total,
            "sample_entry_ids": _samples(units),
        },
        now=now,
    )
    _count(request, findings)
    return answer


async def order_status(
    request: web.Request,
    principal: Principal,
    venue_id: str,
    *,
    status: str,
    note: str,
    now: float,
) -> dict[str, Any]:
    """Close the unit for rectification or let it reopen (ApiError 404/403; 400 for a status
    other than open/closed or a note over MAX_NOTE_CHARS); the answer of
    `POST /api/v1/units/<venue_id>/status`."""
    if status not in ("open", "closed"):
        raise ApiError(400, "bad_request", "status: must be open or closed")
    if len(note) > MAX_NOTE_CHARS:
        raise ApiError(400, "bad_request", f"note: at most {MAX_NOTE_CHARS} characters")
    header = await _venue_in_scope(request, principal, venue_id)
    try:
        history = await set_unit_status(
            request.app[STORAGE_KEY],
            header.venue_id,
            status,
            note,
            actor=Actor(principal.name, principal.role),
            now=now,
        )
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return {"venue_id": header.venue_id, "status": status, "history": _history_json(history)}


def _detail_json(
    detail: UnitDetail, findings: list[Finding], since: float, until: float
) -> dict[str, Any]:
    counts = detail.counts
    answer = _unit_json(detail.header, findings)
    answer["window"] = {"since": format_rfc3339(since), "until": format_rfc3339(until)}
    answer["kiosks"] = [
        {
            "kiosk_id": k.kiosk_id,
            "provisioned_at": format_rfc3339(k.provisioned_at),
            "last_heartbeat_at": _when(k.last_received_at),
            "clock_offset_s": k.clock_offset_s,
            "reported": k.heartbeat,
        }
        for k in detail.kiosks
    ]
    answer["entry_counts"] = {
        "total": counts.total,
        "allow": counts.allow,
        "deny": counts.deny,
        "by_reason": [
            {"decision": decision, "reason": reason, "count": n}
            for (decision, reason), n in sorted(counts.by_reason.items())
        ],
    }
    answer["status_history"] = _history_json(detail.history)
    return answer


async def get_noncompliant(request: web.Request) -> web.Response:
    principal = await _inspector(request)
    assert principal.region is not None
    region = request.query.get("region", principal.region)
    since, until, now = _window(request)
    answer = await noncompliant_answer(
        request, principal, region=region, since=since, until=until, now=now
    )
    return _reply(request, answer, noncompliant_csv)


async def get_unit(request: web.Request) -> web.Response:
    principal = await _inspector(request)
    venue_id = request.match_info["venue_id"]
    await _venue_in_scope(request, principal, venue_id)  # 404/403 before a bad window's 400
    since, until, now = _window(request)
    answer = await unit_answer(request, principal, venue_id, since=since, until=until, now=now)
    return _reply(request, answer, unit_csv)


class StatusOrder(BaseModel):
    status: Literal["closed", "open"] = Field(
        description="closed: closed for rectification; open: may reopen"
    )
    note: Annotated[str, Field(max_length=MAX_NOTE_CHARS, description="why, for the record")]


async def post_status(request: web.Request) -> web.Response:
    app = request.app
    principal = await _inspector(request)
    venue_id = request.match_info["venue_id"]
    await _venue_in_scope(request, principal, venue_id)
    body = await read_json(
        request, limit=MAX_STATUS_BODY_BYTES, within_s=app[CONFIG_KEY].server.body_timeout
    )
    try:
        order = StatusOrder.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise ApiError(400, "bad_request", f"{where}: {error['msg']}") from None
    answer = await order_status(
        request, principal, venue_id, status=order.status, note=order.note, now=app[CLOCK_KEY]()
    )
    return web.json_response(answer)


# -- the OpenAPI description -----------------------------------------------------------------


class FindingDoc(BaseModel):
    rule: Rule = Field(description="the findings rule, in order of severity")
    kind: Kind = Field(description="which condition of the rule held")
    kiosk_id: str
    count: int = Field(description="offending entries, heartbeats, stretches or missing seqs")
    first: str = Field(description="earliest evidence (entry ts, or heartbeat receive time)")
    last: str = Field(description="latest evidence")
    sample_entry_ids: list[str] = Field(description="up to 5 offending entries, earliest first")


class UnitDoc(BaseModel):
    venue_id: str
    name: str
    region: str
    venue_type: str
    status: Literal["open", "closed"]
    status_set_by: str | None
    status_set_at: str | None
    status_note: str | None
    findings: list[FindingDoc]


class WindowDoc(BaseModel):
    since: str
    until: str


class NoncompliantDoc(BaseModel):
    region: str
    window: WindowDoc
    units: list[UnitDoc] = Field(description="most severe first")


class StatusChangeDoc(BaseModel):
    status: Literal["open", "closed"]
    note: str
    by: str
    at: str


class KioskDoc(BaseModel):
    kiosk_id: str
    provisioned_at: str
    last_heartbeat_at: str | None
    clock_offset_s: float | None = Field(description="collector minus kiosk, latest heartbeat")
    reported: dict[str, Any] | None = Field(description="the latest heartbeat as sent")


class ReasonCountDoc(BaseModel):
    decision: Literal["allow", "deny"]
    reason: str
    count: int


class EntryCountsDoc(BaseModel):
    total: int
    allow: int
    deny: int
    by_reason: list[ReasonCountDoc]


class UnitDetailDoc(UnitDoc):
    window: WindowDoc
    kiosks: list[KioskDoc]
    entry_counts: EntryCountsDoc
    status_history: list[StatusChangeDoc]


class StatusAnswerDoc(BaseModel):
    venue_id: str
    status: Literal["open", "closed"]
    history: list[StatusChangeDoc] = Field(description="every change, oldest first")


def _time_parameter(name: str, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string", "format": "date-time"},
        "description": text,
    }


_WINDOW = (
    _time_parameter("since", "start of the window (default: 24 hours before until)"),
    _time_parameter("until", "end of the window, excluded (default: now)"),
)
_VENUE = {"name": "venue_id", "in": "path", "required": True, "schema": {"type": "string"}}

OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/noncompliant",
        get_noncompliant,
        "getNoncompliant",
        "Units of a region with at least one finding in the window, most severe first",
        roles=("inspector",),
        replies={
            200: Reply("Units and their findings (CSV with Accept: text/csv)", NoncompliantDoc)
        },
        errors=(400, 401, 403, 503),
        parameters=(
            *_WINDOW,
            {
                "name": "region",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "a region within the inspector's (default: the inspector's own)",
            },
        ),
        description=(
            "Findings rules as sync-api.md's table; exact semantics in kiosk/findings.py. "
            "The window is [since, until), at most 31 days. Audited."
        ),
    ),
    Operation(
        "GET",
        "/api/v1/units/{venue_id}",
        get_unit,
        "getUnit",
        "One unit: its kiosks, entry counts by decision and reason, findings, status history",
        roles=("inspector",),
        replies={200: Reply("The unit (CSV with Accept: text/csv)", UnitDetailDoc)},
        errors=(400, 401, 403, 404, 503),
        parameters=(_VENUE, *_WINDOW),
        description="Audited.",
    ),
    Operation(
        "POST",
        "/api/v1/units/{venue_id}/status",
        post_status,
        "postUnitStatus",
        "Order a unit closed for rectification, or let it reopen",
        roles=("inspector",),
        request=StatusOrder,
        replies={200: Reply("The unit's status history", StatusAnswerDoc)},
        errors=(400, 401, 403, 404, 408, 413, 503),
        parameters=(_VENUE,),
        description=(
            "The unit's kiosks get `unit_status` in their configuration (a new ETag) and their "
            "door screens say the venue is closed. Audited."
        ),
    ),
]
