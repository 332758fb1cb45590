"""The dashboard's pages with data: the non-compliant units of the inspector's region, a unit's
page, its CSV, and closing or reopening it.

Every figure comes from the inspectors' API code (kiosk.collector.inspectors): the same
functions the `/api/v1/noncompliant`, `/api/v1/units/...` and `.../status` handlers call, with
the same scope checks and the same audit records, given the signed-in person instead of a
Bearer token. Their answers are the API's JSON documents; this module only turns them into
what the templates show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from kiosk.collector import csv_export, dashboard_data, inspectors
from kiosk.collector.dashboard_chart import HOUR_S, build_chart, chart_hours, hour_counts
from kiosk.collector.dashboard_frame import (
    Viewer,
    now_of,
    page_url,
    redirect,
    render,
    require_csrf,
    require_viewer,
)
from kiosk.collector.keys import STORAGE_KEY
from kiosk.findings import DEFAULT_WINDOW_S, SEVERITY, Rule
from kiosk.wire import format_rfc3339, parse_rfc3339

MAX_NOTE_CHARS = inspectors.MAX_NOTE_CHARS
WINDOW_PRESETS = {"24h": 24 * 3600, "7d": 7 * 86400}
_INPUT_FORMAT = "%Y-%m-%dT%H:%M"


# -- the window ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """`[since, until)` as asked (inputs are UTC), with what the form shows and passes on."""

    since: float
    until: float
    preset: str | None  # "24h", "7d", or None for an explicit window
    problem: str | None = None  # a message key when what was asked could not be used

    @property
    def since_input(self) -> str:
        return _input_value(self.since)

    @property
    def until_input(self) -> str:
        return _input_value(self.until)

    @property
    def since_param(self) -> str:
        return "" if self.preset else format_rfc3339(self.since)

    @property
    def until_param(self) -> str:
        return "" if self.preset else format_rfc3339(self.until)

    def query(self) -> dict[str, str]:
        if self.preset:
            return {} if self.preset == "24h" else {"range": self.preset}
        return {"since": self.since_param, "until": self.until_param}


def _input_value(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).strftime(_INPUT_FORMAT)


def _parse_moment(text: str) -> float:
    """An RFC 3339 time, or a `datetime-local` value (YYYY-MM-DDTHH:MM[:SS]) taken as UTC."""
    text = text.strip()
    try:
        return parse_rfc3339(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text)  # ValueError when it is neither
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def window_of(query: dict[str, str] | Any, now: float) -> Window:
    """The window asked for in a query string; the last 24 hours when none (or a bad one)."""
    since_text = (query.get("since") or "").strip()
    until_text = (query.get("until") or "").strip()
    preset = query.get("range") or "24h"
    if not since_text and not until_text:
        span = WINDOW_PRESETS.get(preset, DEFAULT_WINDOW_S)
        return Window(now - span, now, preset if preset in WINDOW_PRESETS else "24h")
    try:
        until = _parse_moment(until_text) if until_text else now
        since = _parse_moment(since_text) if since_text else until - DEFAULT_WINDOW_S
    except (ValueError, OverflowError):
        return Window(now - DEFAULT_WINDOW_S, now, "24h", "window_invalid")
    if since >= until:
        return Window(now - DEFAULT_WINDOW_S, now, "24h", "window_reversed")
    if until - since > inspectors.MAX_WINDOW_S:
        return Window(now - DEFAULT_WINDOW_S, now, "24h", "window_too_long")
    return Window(since, until, None)


# -- what the templates show -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FindingView:
    rule: str
    kind: str
    kiosk_id: str
    count: int
    first: float
    last: float
    sample_entry_ids: list[str]

    @property
    def severity(self) -> int:
        try:
            return SEVERITY[Rule(self.rule)]
        except ValueError:
            return len(SEVERITY)


@dataclass(frozen=True, slots=True)
class KioskView:
    kiosk_id: str
    last_heartbeat: float | None
    sensors: list[tuple[str, str]]
    backlog: int | None
    trust_age_s: float | None
    clock_offset_s: float | None
    policy_version: str | None


@dataclass(frozen=True, slots=True)
class CountView:
    decision: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class HistoryView:
    status: str
    set_by: str
    set_at: float
    note: str


@dataclass(frozen=True, slots=True)
class UnitView:
    venue_id: str
    name: str
    region: str
    status: str
    status_set_by: str | None
    status_set_at: float | None
    findings: list[FindingView]
    url: str = ""
    venue_type: str = ""
    kiosks: list[KioskView] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)  # total, allow, deny
    counts: list[CountView] = field(default_factory=list)  # by decision and reason
    history: list[HistoryView] = field(default_factory=list)

    @property
    def severity(self) -> int:
        return min((f.severity for f in self.findings), default=len(SEVERITY))


def _moment(value: str | None) -> float | None:
    return None if value is None else parse_rfc3339(value)


def _finding_view(doc: dict[str, Any]) -> FindingView:
    return FindingView(
        rule=doc["rule"],
        kind=doc["kind"],
        kiosk_id=doc["kiosk_id"],
        count=doc["count"],
        first=parse_rfc3339(doc["first"]),
        last=parse_rfc3339(doc["last"]),
        sample_entry_ids=list(doc["sample_entry_ids"]),
    )


def _unit_view(doc: dict[str, Any], url: str = "") -> UnitView:
    """A unit of the API's answers (`UnitDoc`, or `UnitDetailDoc` with kiosks, entry counts
    and status history) as the templates show it."""
    counts = doc.get("entry_counts")
    return UnitView(
        venue_id=doc["venue_id"],
        name=doc["name"],
        region=doc["region"],
        status=doc["status"],
        status_set_by=doc["status_set_by"],
        status_set_at=_moment(doc["status_set_at"]),
        findings=[_finding_view(f) for f in doc["findings"]],
        url=url,
        venue_type=doc["venue_type"],
        kiosks=[_kiosk_view(k) for k in doc.get("kiosks", [])],
        totals={k: counts[k] for k in ("total", "allow", "deny")} if counts else {},
        counts=_count_views(counts) if counts else [],
        history=[
            HistoryView(h["status"], h["by"], parse_rfc3339(h["at"]), h["note"])
            for h in reversed(doc.get("status_history", []))  # the latest first
        ],
    )


def _kiosk_view(doc: dict[str, Any]) -> KioskView:
    reported: dict[str, Any] = doc.get("reported") or {}
    sensors = reported.get("sensors") or {}
    return KioskView(
        kiosk_id=doc["kiosk_id"],
        last_heartbeat=_moment(doc["last_heartbeat_at"]),
        sensors=[(str(name), str(state)) for name, state in sorted(sensors.items())],
        backlog=reported.get("backlog"),
        trust_age_s=reported.get("trust_age_s"),
        clock_offset_s=doc.get("clock_offset_s"),
        policy_version=reported.get("policy_version"),
    )


def _count_views(counts: dict[str, Any]) -> list[CountView]:
    views = [CountView(c["decision"], c["reason"], c["count"]) for c in counts["by_reason"]]
    return sorted(views, key=lambda c: (c.decision != "allow", -c.count, c.reason))


# -- pages ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DistrictOption:
    value: str
    label: str


async def units_page(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    now = now_of(request)
    window = window_of(request.query, now)
    scope = viewer.region
    district = request.query.get("district", "").strip()
    answer = await inspectors.noncompliant_answer(
        request,
        viewer.principal,
        region=district or scope,
        since=window.since,
        until=window.until,
        now=now,
    )
    units = [
        _unit_view(doc, page_url(request, "unit", window.query(), venue_id=doc["venue_id"]))
        for doc in answer["units"]
    ]
    regions = await dashboard_data.regions_within(request.config_dict[STORAGE_KEY], scope)
    districts = [DistrictOption("", scope)]
    districts += [DistrictOption(r, r) for r in regions if r != scope]
    filters = {"district": district} if district else {}
    presets = [
        {
            "key": key,
            "url": page_url(request, "units", {**filters, **({"range": code} if code != "24h"
                                                            else {})}),
            "current": window.preset == code,
        }
        for code, key in (("24h", "last_24h"), ("7d", "last_7d"))
    ]
    return render(
        request,
        "units.html",
        viewer=viewer,
        window=window,
        units=units,
        districts=districts,
        district=district,
        presets=presets,
    )


async def _unit_answer(request: web.Request, viewer: Viewer, window: Window) -> dict[str, Any]:
    return await inspectors.unit_answer(
        request,
        viewer.principal,
        request.match_info["venue_id"],
        since=window.since,
        until=window.until,
        now=now_of(request),
    )


async def unit_page(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    return await _render_unit(request, viewer, window_of(request.query, now_of(request)))


async def _render_unit(
    request: web.Request,
    viewer: Viewer,
    window: Window,
    *,
    form_error: str | None = None,
    note: str = "",
    status: int = 200,
) -> web.Response:
    unit = _unit_view(await _unit_answer(request, viewer, window))
    hours = chart_hours(window.until)
    counts = await dashboard_data.hourly_decisions(
        request.config_dict[STORAGE_KEY], unit.venue_id, hours[0], hours[-1] + HOUR_S
    )
    changed = request.query.get("changed")
    return render(
        request,
        "unit.html",
        status=status,
        viewer=viewer,
        unit=unit,
        window=window,
        chart=build_chart(hour_counts(window.until, counts)),
        back_url=page_url(request, "units", window.query()),
        csv_url=page_url(request, "unit_csv", window.query(), venue_id=unit.venue_id),
        status_url=page_url(request, "unit_status", venue_id=unit.venue_id),
        changed=changed if changed in ("open", "closed") else None,
        form_error=form_error,
        note=note,
    )


async def unit_csv(request: web.Request) -> web.StreamResponse:
    """The API's CSV of the unit (`GET /api/v1/units/<id>` with `Accept: text/csv`), as a
    download."""
    viewer = await require_viewer(request)
    window = window_of(request.query, now_of(request))
    answer = await _unit_answer(request, viewer, window)
    stamp = datetime.fromtimestamp(window.until, tz=UTC).strftime("%Y%m%dT%H%MZ")
    safe_id = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_"
                      for c in answer["venue_id"])
    return web.Response(
        text=csv_export.unit_csv(answer),
        content_type=csv_export.CSV_TYPE,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="unit-{safe_id}-{stamp}.csv"'},
    )


async def set_unit_status(request: web.Request) -> web.Response:
    viewer, form = await require_csrf(request)
    venue_id = request.match_info["venue_id"]
    window = window_of(form, now_of(request))
    status = form.get("status", "")
    note = form.get("note", "").strip()
    if status not in ("open", "closed"):
        raise web.HTTPBadRequest(reason="status must be open or closed")
    problem = None
    if not note:
        problem = "error_note_empty"
    elif len(note) > MAX_NOTE_CHARS:
        problem = "error_note_long"
    if problem:
        return await _render_unit(
            request, viewer, window, form_error=problem, note=note[:MAX_NOTE_CHARS], status=400
        )
    await inspectors.order_status(
        request, viewer.principal, venue_id, status=status, note=note, now=now_of(request)
    )
    return redirect(page_url(request, "unit", {**window.query(), "changed": status},
                             venue_id=venue_id))
