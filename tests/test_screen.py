"""The door's local web app over real HTTP: the pushed screen states and the local API's rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from kiosk.door.conditions import DoorConditions
from kiosk.door.config import LocalApiSection
from kiosk.door.screen import ScreenHub, ScreenState, build_local_app, screen_payload
from kiosk.door.sensors import HttpMask, HttpThermometer
from kiosk.door.store import NotRecorded
from kiosk.model import Mask

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
TOKEN = "device-token-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def next_event(response: ClientResponse) -> dict[str, Any]:
    """The next `data:` event of a Server-Sent Events stream."""
    while True:
        line = await asyncio.wait_for(response.content.readline(), 5)
        assert line, "the stream ended"
        if line.startswith(b"data: "):
            return dict(json.loads(line[6:]))


def test_a_payload_has_both_languages_and_plain_words() -> None:
    stop = screen_payload(ScreenState("stop", reasons=["fever", "mask_off"], temperature_c=38.2))
    assert stop["title"] == {"zh": "禁止通行", "en": "STOP"}
    assert [line["en"] for line in stop["lines"]] == ["Temperature too high", "No mask worn"]
    assert all(line["zh"] for line in stop["lines"])
    assert stop["temperature_c"] == 38.2 and stop["hold_ms"] == 3000
    amber = screen_payload(ScreenState("amber", message="cannot_verify"))
    assert amber["title"]["en"] == "Cannot verify now"
    broken = screen_payload(ScreenState("out_of_service", message="camera"), None)
    assert broken["hold_ms"] is None
    assert broken["lines"] == [{"code": "camera", "zh": "摄像头故障", "en": "Camera fault"}]


def test_the_door_conditions_choose_the_resting_state() -> None:
    conditions = DoorConditions()
    assert conditions.resting().state == "idle"
    conditions.trust_fresh = False
    assert (conditions.resting().state, conditions.resting().message) == ("amber", "cannot_verify")
    conditions.store_failure = "disk_full"
    assert conditions.resting().state == "not_recorded"
    conditions.set_fault("camera", "no frame for 5 s")
    resting = conditions.resting()
    assert (resting.state, resting.message) == ("out_of_service", "camera")
    conditions.venue_closed = True
    assert conditions.resting().state == "closed"
    conditions.venue_closed = False
    conditions.set_fault("camera", None)
    assert conditions.resting().state == "not_recorded"


def test_a_visitor_state_gives_way_to_the_resting_state_after_the_hold() -> None:
    clock = Clock()
    hub = ScreenHub(hold=3.0, clock=clock)
    hub.show(ScreenState("pass", temperature_c=36.5, at=clock.now))
    clock.now += 1.0
    payload = hub.current_payload()
    assert (payload["state"], payload["hold_ms"]) == ("pass", 2000)
    assert payload["rest"]["state"] == "idle"
    hub.set_resting(ScreenState("out_of_service", message="camera"))
    assert hub.last.state == "pass"  # the visitor still sees their PASS
    clock.now += 2.0
    assert hub.last.state == "out_of_service"
    assert hub.current_payload()["hold_ms"] is None


@pytest.fixture
def parts() -> tuple[ScreenHub, HttpThermometer, HttpMask]:
    return ScreenHub(hold=0.3), HttpThermometer(offset_c=0.2), HttpMask()


def app_for(
    parts: tuple[ScreenHub, HttpThermometer, HttpMask],
    api: LocalApiSection | None = None,
    override: Callable[[str, str, str], Awaitable[Mapping[str, Any]]] | None = None,
) -> web.Application:
    hub, thermometer, mask = parts
    return build_local_app(
        hub, api or LocalApiSection(), thermometer=thermometer, mask=mask, override=override
    )


async def test_states_are_pushed_to_the_page_as_they_happen(
    aiohttp_client: ClientFactory, parts: tuple[ScreenHub, HttpThermometer, HttpMask]
) -> None:
    hub = parts[0]
    client = await aiohttp_client(app_for(parts))
    page = await client.get("/")
    assert page.status == 200 and "请出示健康码" in await page.text()
    attendant = await client.get("/attendant")
    assert attendant.status == 200 and "Attendant" in await attendant.text()
    async with client.get("/events") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert (await next_event(stream))["state"] == "idle"
        hub.show(ScreenState("stop", reasons=["status_red"]))
        event = await next_event(stream)
        assert (event["state"], event["lines"][0]["en"]) == ("stop", "Red health code")
        hub.set_resting(ScreenState("closed"))
        event = await next_event(stream)
        assert event["state"] == "stop" and event["rest"]["state"] == "closed"
        assert 0 < event["hold_ms"] <= 300
        hub.close()
        while await stream.content.readline():
            pass  # the server ends the stream on close


async def test_readings_and_mask_states_reach_their_sensors(
    aiohttp_client: ClientFactory, parts: tuple[ScreenHub, HttpThermometer, HttpMask]
) -> None:
    _, thermometer, mask = parts
    client = await aiohttp_client(app_for(parts))
    answer = await client.post("/api/thermometer", json={"celsius": 36.4})
    assert answer.status == 202 and (await answer.json())["celsius"] == pytest.approx(36.6)
    assert thermometer.queue.get_nowait().celsius == pytest.approx(36.6)
    assert (await client.post("/api/mask", json={"mask": "off"})).status == 202
    assert mask.queue.get_nowait().mask is Mask.OFF
    for body in ({"celsius": "hot"}, {"celsius": True}, {"celsius": 1e9}, {"mask": "maybe"}):
        path = "/api/mask" if "mask" in body else "/api/thermometer"
        bad = await client.post(path, json=body)
        assert bad.status == 400
        assert set(await bad.json()) == {"error", "detail"}
    nan = await client.post(
        "/api/thermometer", data='{"celsius": NaN}', headers={"Content-Type": "application/json"}
    )
    assert nan.status == 400
    form = await client.post("/api/thermometer", data={"celsius": "36.5"})
    assert form.status == 415  # a web page's form cannot post readings
    assert thermometer.queue.empty() and mask.queue.empty()


async def test_a_foreign_host_name_is_refused_on_loopback(
    aiohttp_client: ClientFactory, parts: tuple[ScreenHub, HttpThermometer, HttpMask]
) -> None:
    client = await aiohttp_client(app_for(parts))
    answer = await client.post(
        "/api/thermometer", json={"celsius": 36.5}, headers={"Host": "evil.example:8380"}
    )
    assert answer.status == 403


async def test_off_loopback_every_post_needs_the_device_token(
    aiohttp_client: ClientFactory, parts: tuple[ScreenHub, HttpThermometer, HttpMask]
) -> None:
    api = LocalApiSection(host="0.0.0.0", device_token=TOKEN)  # type: ignore[arg-type]
    client = await aiohttp_client(app_for(parts, api))
    assert (await client.post("/api/thermometer", json={"celsius": 36.5})).status == 401
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert (await client.post("/api/mask", json={"mask": "on"}, headers=wrong)).status == 401
    assert (await client.get("/api/status")).status == 401
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert (
        await client.post("/api/thermometer", json={"celsius": 36.5}, headers=right)
    ).status == 202
    with pytest.raises(ValueError, match="device_token"):
        build_local_app(ScreenHub(), LocalApiSection.model_construct(host="0.0.0.0"))


async def test_overrides_need_the_attendant_secret_and_lock_out_guessers(
    aiohttp_client: ClientFactory, parts: tuple[ScreenHub, HttpThermometer, HttpMask]
) -> None:
    calls: list[tuple[str, str, str]] = []
    deny_id = "018f6a5e-3c1d-7c1e-9a57-2f1d3b1c9e10"

    async def override(entry_id: str, attendant: str, note: str) -> Mapping[str, Any]:
        calls.append((entry_id, attendant, note))
        if entry_id != deny_id:
            raise LookupError(entry_id)
        if note == "fail":
            raise NotRecorded("disk_full")
        return {"id": "new", "seq": 9, "ts": "t", "decision": "allow", "subject": "hidden"}

    api = LocalApiSection(attendant_pin="4711")  # type: ignore[arg-type]
    client = await aiohttp_client(app_for(parts, api, override))
    body = {"attendant": "att-7", "note": "re-measured", "entry_id": deny_id}
    pin = {"X-Attendant-Secret": "4711"}
    answer = await client.post("/api/override", json=body, headers=pin)
    assert answer.status == 201
    assert "subject" not in (await answer.json())["entry"]
    unknown = {**body, "entry_id": "018f6a5e-3c1d-7c1e-9a57-000000000000"}
    assert (await client.post("/api/override", json=unknown, headers=pin)).status == 404
    failing = {**body, "note": "fail"}
    assert (await client.post("/api/override", json=failing, headers=pin)).status == 503
    long_note = {**body, "note": "x" * 201}
    assert (await client.post("/api/override", json=long_note, headers=pin)).status == 400
    for _ in range(5):
        guess = {"X-Attendant-Secret": "0000"}
        assert (await client.post("/api/override", json=body, headers=guess)).status == 401
    assert (await client.post("/api/override", json=body, headers=pin)).status == 429
    assert len(calls) == 3


async def test_the_recent_decisions_carry_no_personal_data(
    aiohttp_client: ClientFactory, parts: tuple[ScreenHub, HttpThermometer, HttpMask]
) -> None:
    hub = parts[0]
    hub.note_decision(
        {
            "id": "e1",
            "seq": 1,
            "ts": "t",
            "decision": "deny",
            "reasons": ["fever"],
            "temperature_c": 38.0,
            "mask": "on",
            "override": None,
            "subject": "ab" * 32,
        }
    )
    api = LocalApiSection(attendant_token="attendant-token-0123456789")  # type: ignore[arg-type]
    client = await aiohttp_client(app_for(parts, api))
    assert (await client.get("/api/decisions")).status == 401
    answer = await client.get(
        "/api/decisions", headers={"X-Attendant-Secret": "attendant-token-0123456789"}
    )
    [decision] = (await answer.json())["decisions"]
    assert decision["entry_id"] == "e1" and "ab" * 32 not in json.dumps(decision)
