"""The kiosk's local web app: the full-screen door page, its live event stream, and the small
local API sensors and attendants post to.

The engine calls `ScreenHub.show(state)`; the hub pushes the state at once to every page connected
to `/events` (Server-Sent Events, no polling) and keeps it for pages that connect later. Transient
states (pass, stop, amber, not recorded) fall back to idle after `hold` seconds, on the page and in
the hub alike. Nothing shown or served here carries personal data: no name, no code, no subject.

Authentication: on a loopback address sensor POSTs need nothing (only this machine can reach it,
and a JSON content type keeps other web pages' forms out); off loopback every POST and the status
need `Authorization: Bearer <device_token>`. Overrides and the decision list always need the
attendant's PIN or token in `X-Attendant-Secret`, with a lockout after repeated wrong guesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from kiosk.door.config import LocalApiSection, is_loopback_host
from kiosk.door.sensors import HttpMask, HttpThermometer
from kiosk.door.store import StoreError
from kiosk.model import Mask, Reason

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")

ScreenKind = Literal["pass", "stop", "amber", "idle", "out_of_service", "not_recorded", "closed"]
SCREEN_KINDS: tuple[ScreenKind, ...] = (
    "pass",
    "stop",
    "amber",
    "idle",
    "out_of_service",
    "not_recorded",
    "closed",
)
HOLD_SECONDS = 3.0
KEEPALIVE_SECONDS = 15.0
MAX_BODY_BYTES = 16 * 1024
NOTE_MAX = 200
RECENT_DECISIONS = 30
LOCKOUT_FAILURES = 5
LOCKOUT_SECONDS = 60.0

# Readings outside this are not a temperature at all (a unit mix-up, a broken probe); inside it,
# an implausible body temperature still reaches the engine, which asks to measure again.
READING_LIMITS_C = (-50.0, 100.0)

_ATTENDANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_ENTRY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

# zh first: the door's visitors read Chinese first, English second.
REASON_TEXT: Mapping[Reason, tuple[str, str]] = {
    Reason.VENUE_CLOSED: ("场所整改中暂停开放", "Venue closed for rectification"),
    Reason.TRUST_STALE: ("核验数据已过期", "Verification data out of date"),
    Reason.CODE_MISSING: ("未出示健康码", "No health code shown"),
    Reason.CODE_UNKNOWN_FORMAT: ("无法识别的二维码", "Not a recognised health code"),
    Reason.CODE_MALFORMED: ("健康码无法读取", "Health code cannot be read"),
    Reason.CODE_UNKNOWN_KEY: ("健康码签发方未知", "Health code issuer not recognised"),
    Reason.CODE_BAD_SIGNATURE: ("健康码签名无效", "Health code signature invalid"),
    Reason.CODE_NOT_YET_VALID: ("健康码尚未生效", "Health code not yet valid"),
    Reason.CODE_EXPIRED: ("健康码已过期", "Health code expired"),
    Reason.CODE_REVOKED: ("健康码已被撤销", "Health code revoked"),
    Reason.STATUS_YELLOW: ("健康码为黄码", "Yellow health code"),
    Reason.STATUS_RED: ("健康码为红码", "Red health code"),
    Reason.TEST_MISSING: ("无核酸检测结果", "No test result"),
    Reason.TEST_TOO_OLD: ("核酸检测结果已过期", "Test result too old"),
    Reason.TRAVEL_RISK: ("近期有风险地区旅居史", "Recent travel to a risk area"),
    Reason.FEVER: ("体温过高", "Temperature too high"),
    Reason.TEMPERATURE_MISSING: ("未测量体温", "Temperature not measured"),
    Reason.TEMPERATURE_IMPLAUSIBLE: ("体温读数异常", "Temperature reading not plausible"),
    Reason.MASK_OFF: ("未佩戴口罩", "No mask worn"),
    Reason.MASK_UNCHECKED: ("未检查口罩", "Mask not checked"),
}
OTHER_REASON = ("其他原因", "Other reason")

# Devices named in an out-of-service state's message (comma-separated).
FAULT_TEXT: Mapping[str, tuple[str, str]] = {
    "camera": ("摄像头故障", "Camera fault"),
    "thermometer": ("测温设备故障", "Thermometer fault"),
    "mask": ("口罩检测故障", "Mask detector fault"),
}
OTHER_FAULT = ("设备故障", "Device fault")

STATE_TITLE: Mapping[str, tuple[str, str]] = {
    "idle": ("请出示健康码", "Show your code"),
    "pass": ("通过", "PASS"),
    "stop": ("禁止通行", "STOP"),
    "amber": ("请稍候", "Please wait"),
    "out_of_service": ("暂停服务", "Out of service"),
    "not_recorded": ("未能记录，请联系工作人员", "Not recorded — please call staff"),
    "closed": ("场所整改中暂停开放", "Venue closed for rectification"),
}

# Amber titles by the engine's message key; a message without a title here is shown as given.
MESSAGE_TITLE: Mapping[str, tuple[str, str]] = {
    "measure_again": ("请重新测温", "Measure again"),
    "cannot_verify": ("暂时无法核验", "Cannot verify now"),
}


@dataclass(frozen=True, slots=True)
class ScreenState:
    """What the door screen shows. `reasons` are kiosk.model.Reason values; `at` is Unix time
    (the page compares it with its own clock to report how long the update took). A decision
    carries `frame_at`, the monotonic clock reading at which the camera delivered the frame its
    code was read in: a reader of /events on the same machine measures the whole delay from
    camera to screen with it (bench/door.py). It says nothing about the visitor."""

    state: ScreenKind
    reasons: Sequence[str] = ()
    temperature_c: float | None = None
    message: str | None = None
    at: float = field(default_factory=time.time)
    frame_at: float | None = None

    def __post_init__(self) -> None:
        if self.state not in SCREEN_KINDS:
            raise ValueError(f"unknown screen state {self.state!r}")
        # A caller's list must not change what was already shown; keep an immutable copy.
        object.__setattr__(self, "reasons", tuple(self.reasons))


def _reason_lines(state: ScreenState) -> list[dict[str, str]]:
    if state.state == "out_of_service":
        # Which device failed helps the attendant; it says nothing about a visitor.
        devices = [m for m in (state.message or "").split(",") if m]
        return [
            {"code": device, "zh": zh, "en": en}
            for device in devices
            for zh, en in [FAULT_TEXT.get(device, OTHER_FAULT)]
        ]
    # For these states the title says everything; internal reasons (a store failure) would
    # only confuse a visitor.
    if state.state in ("not_recorded", "closed", "idle", "pass"):
        return []
    lines = []
    for code in state.reasons:
        try:
            zh, en = REASON_TEXT[Reason(code)]
        except ValueError:
            zh, en = OTHER_REASON
        lines.append({"code": code, "zh": zh, "en": en})
    return lines


def screen_payload(
    state: ScreenState, hold: float | None = HOLD_SECONDS, rest: ScreenState | None = None
) -> dict[str, Any]:
    """The JSON an event carries: the state as the engine gave it plus the words to show.
    `hold` (seconds, None: stays) is how long the page shows it before falling back to `rest`,
    the door's resting state, which the payload carries along (without a rest of its own)."""
    zh, en = STATE_TITLE[state.state]
    if state.state == "amber" and state.message is not None and state.message in MESSAGE_TITLE:
        zh, en = MESSAGE_TITLE[state.message]
    temperature = state.temperature_c
    if temperature is not None and not math.isfinite(temperature):
        temperature = None
    payload: dict[str, Any] = {
        "state": state.state,
        "reasons": list(state.reasons),
        "temperature_c": temperature,
        "message": state.message,
        "at": state.at,
        "title": {"zh": zh, "en": en},
        "lines": _reason_lines(state),
        "hold_ms": None if hold is None else max(0, round(hold * 1000)),
        "frame_at": state.frame_at,
    }
    if hold is not None and rest is not None:
        payload["rest"] = screen_payload(rest, None)
    return payload


def same_look(a: ScreenState, b: ScreenState) -> bool:
    """Whether two states show the same thing (their time aside)."""
    return (a.state, tuple(a.reasons), a.temperature_c, a.message) == (
        b.state,
        tuple(b.reasons),
        b.temperature_c,
        b.message,
    )


class ScreenHub:
    """Fans screen states out to every connected page and remembers what is shown.

    Two layers: the door's *resting* state (idle; or out of service, venue closed, cannot verify
    now, not recorded: conditions of the door, set by the app with `set_resting`) and *transient*
    states about one visitor (`show`: pass, stop, measure again...), which last `hold` seconds
    and then give way to the resting state, on the page and in the hub alike.
    """

    def __init__(self, *, hold: float = HOLD_SECONDS, clock: Callable[[], float] = time.time):
        self.hold = hold
        self._clock = clock
        self._resting = ScreenState("idle", at=clock())
        self._transient: ScreenState | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._decisions: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        self._closed = False
        self.last_decision_at: float | None = None
        self.shown = 0

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    @property
    def resting(self) -> ScreenState:
        return self._resting

    def _live_transient(self) -> ScreenState | None:
        state = self._transient
        if state is not None and self._clock() - state.at < self.hold:
            return state
        return None

    @property
    def last(self) -> ScreenState:
        """The state a page connecting now should show."""
        return self._live_transient() or self._resting

    def show(self, state: ScreenState) -> None:
        """Show a visitor's state for `hold` seconds, pushed to every connected page now. Never
        blocks and never raises for a slow page: each page's queue keeps only the newest states
        (older ones are moot)."""
        self._transient = state
        self.shown += 1
        self._push(screen_payload(state, self.hold, self._resting))

    def set_resting(self, state: ScreenState) -> None:
        """What the door shows between visitors. A change is pushed at once; a visitor's state
        on screen stays for the rest of its time and then gives way to the new one."""
        if same_look(state, self._resting):
            return
        self._resting = state
        self._push(self.current_payload())

    def current_payload(self) -> dict[str, Any]:
        transient = self._live_transient()
        if transient is None:
            return screen_payload(self._resting, None)
        remaining = self.hold - (self._clock() - transient.at)
        return screen_payload(transient, remaining, self._resting)

    def _push(self, payload: dict[str, Any]) -> None:
        for queue in self._subscribers:
            _offer(queue, payload)

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(8)
        if self._closed:
            queue.put_nowait(None)
        else:
            self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        """End every open stream (the app is shutting down); later subscribers end at once."""
        self._closed = True
        for queue in self._subscribers:
            _offer(queue, None)

    def note_decision(self, entry: Mapping[str, Any]) -> None:
        """Remember a committed entry for the attendant view, without any personal data.
        Wire it as an engine observer: `engine.add_observer(lambda e: hub.note_decision(e.entry))`.
        """
        override = entry.get("override")
        self._decisions.appendleft(
            {
                "entry_id": entry.get("id"),
                "seq": entry.get("seq"),
                "ts": entry.get("ts"),
                "decision": entry.get("decision"),
                "reasons": list(entry.get("reasons") or ()),
                "temperature_c": entry.get("temperature_c"),
                "mask": entry.get("mask"),
                "override_of": override.get("entry_id") if isinstance(override, Mapping) else None,
            }
        )
        self.last_decision_at = self._clock()

    def recent_decisions(self) -> list[dict[str, Any]]:
        overridden = {d["override_of"] for d in self._decisions if d["override_of"]}
        return [{**d, "overridden": d["entry_id"] in overridden} for d in self._decisions]


def _offer(queue: asyncio.Queue[dict[str, Any] | None], item: dict[str, Any] | None) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


OverrideCallback = Callable[[str, str, str], Awaitable[Mapping[str, Any]]]
"""`await override(entry_id, attendant, note)` writes the override entry and returns it; raises
LookupError when `entry_id` is not a deny of this kiosk's log (answered 404) and a
kiosk.door.store.StoreError when the entry could not be committed (answered 503)."""

StatusCallback = Callable[[], Awaitable[Mapping[str, Any]]]
"""`await status()` -> the engine's part of GET /api/status (sensors, backlog, last decision)."""


@dataclass(slots=True)
class _Local:
    hub: ScreenHub
    api: LocalApiSection
    thermometer: HttpThermometer | None
    mask: HttpMask | None
    override: OverrideCallback | None
    status: StatusCallback | None
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=LOCKOUT_FAILURES))


LOCAL_KEY = web.AppKey("kiosk_local", _Local)
HUB_KEY = web.AppKey("kiosk_screen_hub", ScreenHub)


class ApiError(Exception):
    """An error answered as `{"error": code, "detail": text}` with the given status."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def _error_response(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    # One error shape for the whole API, including aiohttp's own 404/405/413 answers.
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.status, exc.code, exc.detail)
    except web.HTTPException as exc:
        if exc.status_code < 400:
            raise
        code = (exc.reason or "error").lower().replace(" ", "_")
        return _error_response(exc.status_code, code, exc.reason or "error")


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _check_host(request: web.Request, local: _Local) -> None:
    # A web page on another site could resolve its own name to 127.0.0.1 (DNS rebinding) and
    # then call this API as if it were local; on loopback only loopback names are accepted.
    if not local.api.loopback:
        return
    if not is_loopback_host(_host_name(request.host or "")):
        raise ApiError(403, "forbidden_host", "this API answers only to a loopback Host name")


def _check_device_token(request: web.Request, local: _Local) -> None:
    if local.api.loopback:
        return
    token = local.api.device_token
    if token is None:  # the config refuses this; a hand-built section must not open the door
        raise ApiError(503, "not_configured", "local_api.device_token is not set")
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), token.get_secret_value().encode()
    ):
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <local_api.device_token>")


def _check_attendant(request: web.Request, local: _Local) -> None:
    accepted = [
        secret.get_secret_value()
        for secret in (local.api.attendant_pin, local.api.attendant_token)
        if secret is not None
    ]
    if not accepted:
        raise ApiError(
            403,
            "overrides_disabled",
            "no local_api.attendant_pin or attendant_token is configured",
        )
    now = time.monotonic()
    failures = local.failures
    if len(failures) == LOCKOUT_FAILURES and now - failures[0] < LOCKOUT_SECONDS:
        raise ApiError(429, "locked", "too many wrong attendant secrets; wait a minute")
    given = request.headers.get("X-Attendant-Secret", "").encode()
    # Compare against every secret, not stopping early, so timing does not tell which matched.
    matched = False
    for secret in accepted:
        matched |= hmac.compare_digest(given, secret.encode())
    if not matched:
        failures.append(now)
        raise ApiError(401, "unauthorized", "wrong or missing X-Attendant-Secret")
    failures.clear()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _json_object(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    # Requiring a JSON content type makes a browser preflight any cross-site POST, which this
    # app never approves: another page open on the kiosk cannot post readings.
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
    try:
        text = await request.text()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "too_large", f"body over {MAX_BODY_BYTES} bytes") from None
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "unknown_member", f"unknown member(s): {', '.join(unknown)}")
    return body


async def door_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "door.html", headers={"Cache-Control": "no-cache"})


async def attendant_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "attendant.html", headers={"Cache-Control": "no-cache"})


def _sse(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = hub.subscribe()
    try:
        await response.write(b"retry: 1000\n\n" + _sse(hub.current_payload()))
        while True:
            try:
                payload = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                # Also how a page that went away is noticed: the write fails.
                await response.write(b": keepalive\n\n")
                continue
            if payload is None:
                break
            await response.write(_sse(payload))
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        hub.unsubscribe(queue)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


async def post_thermometer(request: web.Request) -> web.Response:
    local = request.app[LOCAL_KEY]
    _check_host(request, local)
    _check_device_token(request, local)
    body = await _json_object(request, frozenset({"celsius"}))
    celsius = body.get("celsius")
    if isinstance(celsius, bool) or not isinstance(celsius, int | float):
        raise ApiError(400, "invalid_reading", "celsius must be a number, e.g. 36.6")
    low, high = READING_LIMITS_C
    if not math.isfinite(celsius) or not low <= celsius <= high:
        raise ApiError(400, "invalid_reading", f"celsius must be between {low} and {high}")
    if local.thermometer is None:
        raise ApiError(409, "not_accepted", "thermometer.source is not http")
    reading = local.thermometer.submit(float(celsius))
    return web.json_response({"celsius": reading.celsius}, status=202)


async def post_mask(request: web.Request) -> web.Response:
    local = request.app[LOCAL_KEY]
    _check_host(request, local)
    _check_device_token(request, local)
    body = await _json_object(request, frozenset({"mask"}))
    value = body.get("mask")
    if value not in ("on", "off"):
        raise ApiError(400, "invalid_mask", 'mask must be "on" or "off"')
    if local.mask is None:
        raise ApiError(409, "not_accepted", "mask.source is neither http nor attendant")
    reading = local.mask.submit(Mask(value))
    return web.json_response({"mask": reading.mask.value}, status=202)


async def post_override(request: web.Request) -> web.Response:
    local = request.app[LOCAL_KEY]
    _check_host(request, local)
    _check_device_token(request, local)
    _check_attendant(request, local)
    body = await _json_object(request, frozenset({"attendant", "note", "entry_id"}))
    attendant, note, entry_id = body.get("attendant"), body.get("note", ""), body.get("entry_id")
    if not isinstance(attendant, str) or not _ATTENDANT_ID.match(attendant):
        raise ApiError(400, "invalid_attendant", "attendant: 1–64 letters, digits, . _ : @ -")
    if not isinstance(note, str) or len(note) > NOTE_MAX:
        raise ApiError(400, "invalid_note", f"note: text of at most {NOTE_MAX} characters")
    if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
        raise ApiError(400, "invalid_entry_id", "entry_id: the id of the denied entry")
    if local.override is None:
        raise ApiError(503, "not_available", "overrides are not wired in this process")
    try:
        entry = await local.override(entry_id, attendant, note)
    except LookupError:
        raise ApiError(404, "unknown_deny", f"{entry_id} is not a deny of this kiosk") from None
    except StoreError as exc:
        raise ApiError(503, "not_recorded", f"the override could not be recorded ({exc})") from None
    log.info("override of %s by %s", entry_id, attendant)
    # Only what the attendant needs to see; the entry's subject pseudonym stays in the log.
    return web.json_response(
        {"entry": {key: entry.get(key) for key in ("id", "seq", "ts", "decision", "override")}},
        status=201,
    )


async def get_status(request: web.Request) -> web.Response:
    local = request.app[LOCAL_KEY]
    _check_host(request, local)
    _check_device_token(request, local)
    status: dict[str, Any] = {
        "screen": local.hub.last.state,
        "screen_clients": local.hub.clients,
        "last_decision_at": local.hub.last_decision_at,
    }
    if local.status is not None:
        status.update(await local.status())
    return web.json_response(status)


async def get_decisions(request: web.Request) -> web.Response:
    local = request.app[LOCAL_KEY]
    _check_host(request, local)
    _check_device_token(request, local)
    _check_attendant(request, local)
    # The door's warnings ride along: the attendant's page shows them above the decisions.
    warnings = (await local.status()).get("warnings", []) if local.status is not None else []
    return web.json_response({"decisions": local.hub.recent_decisions(), "warnings": warnings})


def build_local_app(
    hub: ScreenHub,
    api: LocalApiSection,
    *,
    thermometer: object | None = None,
    mask: object | None = None,
    override: OverrideCallback | None = None,
    status: StatusCallback | None = None,
) -> web.Application:
    """The door's local app. Pass whatever thermometer and mask were built: POSTed readings are
    accepted only when they are the HTTP kind (an AttendantMask is one)."""
    if not api.loopback and api.device_token is None:
        raise ValueError("local_api.device_token is required off loopback")
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_json_errors])
    app[HUB_KEY] = hub
    app[LOCAL_KEY] = _Local(
        hub=hub,
        api=api,
        thermometer=thermometer if isinstance(thermometer, HttpThermometer) else None,
        mask=mask if isinstance(mask, HttpMask) else None,
        override=override,
        status=status,
    )
    app.router.add_get("/", door_page)
    app.router.add_get("/attendant", attendant_page)
    app.router.add_get("/events", events)
    app.router.add_post("/api/thermometer", post_thermometer)
    app.router.add_post("/api/mask", post_mask)
    app.router.add_post("/api/override", post_override)
    app.router.add_get("/api/status", get_status)
    app.router.add_get("/api/decisions", get_decisions)
    app.router.add_static("/static/", STATIC_DIR)

    async def end_streams(app: web.Application) -> None:
        # Open event streams would otherwise hold a graceful shutdown for its whole timeout.
        app[HUB_KEY].close()

    app.on_shutdown.append(end_streams)
    return app
