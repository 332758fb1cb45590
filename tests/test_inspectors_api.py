"""The inspectors' API over HTTP on SQLite and PostgreSQL: every findings scenario through a real
collector, region scope by whole path segments, windows, CSV, the audit log, Prometheus, the
unit page and rectification (closing a unit reaches its kiosks' configuration)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kiosk.collector.app import build_app, server_settings
from kiosk.collector.config import CollectorConfig
from kiosk.collector.keys import STORAGE_KEY
from kiosk.collector.scenario import (
    CLEAN_VENUE,
    MISBEHAVING_VENUE,
    SCENARIO_ADMIN,
    HttpSink,
    ManualClock,
    Scenario,
    Seeded,
    load_scenario,
    misbehaving_city,
    seed,
)
from kiosk.collector.storage.base import Storage
from kiosk.wire import parse_rfc3339
from tests.test_findings_fixtures import SCENARIOS, expected_units, normalised

FIXTURES = Path(__file__).parent / "fixtures" / "findings"


@dataclass
class Running:
    client: TestClient[Any, Any]
    clock: ManualClock
    storage: Storage


@pytest.fixture
async def running(database_url: str, aiohttp_client: Any) -> AsyncIterator[Running]:
    clock = ManualClock(0.0)
    config = CollectorConfig.model_validate({"database": {"url": database_url}})
    app = build_app(config, clock=clock)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(**server_settings(config))
    client = await aiohttp_client(server)
    yield Running(client, clock, app[STORAGE_KEY])


async def start(running: Running, name: str, *, over_http: bool = False) -> tuple[Scenario, Seeded]:
    scenario = load_scenario(FIXTURES / f"{name}.json")
    running.clock.now = scenario.now
    sink = HttpSink(running.client, running.clock) if over_http else None
    seeded = await seed(running.storage, scenario, http=sink)
    running.clock.now = scenario.now
    return scenario, seeded


def inspector(scenario: Scenario) -> str:
    return scenario.inspectors[0].name if scenario.inspectors else "inspector-harbin"


def window(scenario: Scenario) -> dict[str, str]:
    assert scenario.window is not None
    return {"since": _text(scenario.window.since), "until": _text(scenario.window.until)}


def _text(t: float) -> str:
    from kiosk.wire import format_rfc3339

    return format_rfc3339(t)


async def noncompliant(running: Running, seeded: Seeded, who: str, **query: str) -> tuple[int, Any]:
    response = await running.client.get(
        "/api/v1/noncompliant", params=query, headers=seeded.auth(who)
    )
    return response.status, await response.json()


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_every_scenario_over_http(path: Path, running: Running) -> None:
    scenario, seeded = await start(running, path.stem)
    status, answer = await noncompliant(running, seeded, inspector(scenario), **window(scenario))
    assert status == 200, answer
    assert normalised(answer["units"], seeded.label_of) == expected_units(scenario)


@pytest.mark.parametrize("name", ["code_reuse", "log_gap_missing", "policy_drift"])
async def test_scenarios_sent_through_the_ingest_api(name: str, running: Running) -> None:
    """The same answers when entries, heartbeats and policies arrive over HTTP."""
    scenario, seeded = await start(running, name, over_http=True)
    status, answer = await noncompliant(running, seeded, inspector(scenario), **window(scenario))
    assert status == 200, answer
    assert normalised(answer["units"], seeded.label_of) == expected_units(scenario)


async def test_region_scope_by_whole_segments(running: Running) -> None:
    scenario, seeded = await start(running, "region_scope")
    who = inspector(scenario)  # harbin/d1
    status, answer = await noncompliant(running, seeded, who, **window(scenario))
    assert [u["venue_id"] for u in answer["units"]] == ["v-d1", "v-d1x"]
    assert answer["region"] == "harbin/d1"
    status, answer = await noncompliant(
        running, seeded, who, region="harbin/d1/x", **window(scenario)
    )
    assert status == 200 and [u["venue_id"] for u in answer["units"]] == ["v-d1x"]
    for outside in ("harbin/d10", "harbin", "harbin/d"):
        status, answer = await noncompliant(running, seeded, who, region=outside)
        assert status == 403, outside
        assert answer["error"] == "forbidden"
    status, answer = await noncompliant(running, seeded, who, region="harbin//d1")
    assert status == 400
    response = await running.client.get(
        "/api/v1/units/v-d10", headers=seeded.auth(who), params=window(scenario)
    )
    assert response.status == 403
    response = await running.client.post(
        "/api/v1/units/v-d10/status",
        headers=seeded.auth(who),
        json={"status": "closed", "note": "x"},
    )
    assert response.status == 403


async def test_roles_and_tokens(running: Running) -> None:
    scenario, seeded = await start(running, "override_entries")
    for path in ("/api/v1/noncompliant", "/api/v1/units/v-override"):
        assert (await running.client.get(path)).status == 401
        bad = {"Authorization": "Bearer " + "A" * 43}
        assert (await running.client.get(path, headers=bad)).status == 401
        for other in ("k-ov-a", SCENARIO_ADMIN):
            response = await running.client.get(path, headers=seeded.auth(other))
            assert response.status == 403, (path, other)
    response = await running.client.get(
        "/api/v1/units/nowhere", headers=seeded.auth(inspector(scenario))
    )
    assert response.status == 404


async def test_windows_default_to_the_last_day_and_are_checked(running: Running) -> None:
    scenario, seeded = await start(running, "override_entries")
    who = inspector(scenario)
    # now is 12:00: the default window is the 24 hours before. Both kiosks were provisioned at
    # 08:00 and first heard at 09:55, so both are silent in it, besides the three overrides.
    status, answer = await noncompliant(running, seeded, who)
    assert status == 200
    assert answer["window"] == {
        "since": "2022-03-04T12:00:00.000Z",
        "until": "2022-03-05T12:00:00.000Z",
    }
    found = [[(f["rule"], f["count"]) for f in u["findings"]] for u in answer["units"]]
    assert found == [[("override_entries", 3), ("silent_kiosk", 1)], [("silent_kiosk", 1)]]
    assert answer["units"][0]["findings"][1]["first"] == "2022-03-05T08:00:00.000Z"
    # An override at 12:00 exactly is inside [11:00, 12:00:01).
    status, answer = await noncompliant(
        running, seeded, who, since="2022-03-05T11:00:00Z", until="2022-03-05T12:00:01Z"
    )
    assert answer["units"][0]["findings"][0]["count"] == 2
    for bad in (
        {"since": "yesterday"},
        {"since": "2022-03-05T12:00:00Z", "until": "2022-03-05T11:00:00Z"},
        {"since": "2022-01-01T00:00:00Z", "until": "2022-03-05T00:00:00Z"},
    ):
        status, answer = await noncompliant(running, seeded, who, **bad)
        assert status == 400, bad
        assert answer["error"] == "bad_request"


async def test_csv_answers(running: Running) -> None:
    scenario, seeded = await start(running, "ordering")
    headers = {**seeded.auth(inspector(scenario)), "Accept": "text/csv"}
    response = await running.client.get(
        "/api/v1/noncompliant", params=window(scenario), headers=headers
    )
    assert response.status == 200
    assert response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(r["venue_id"], r["rule"], r["count"]) for r in rows] == [
        ("v-c-two", "override_entries", "2"),
        ("v-b-mixed", "override_entries", "1"),
        ("v-b-mixed", "clock_skew", "4"),
        ("v-a-skew", "clock_skew", "24"),
    ]
    assert rows[0]["sample_entry_ids"].count(" ") == 1  # two ids, space separated
    response = await running.client.get(
        "/api/v1/units/v-b-mixed", params=window(scenario), headers=headers
    )
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    records = {r["record"] for r in rows}
    assert records == {"finding", "entries", "kiosk"}
    json_too = {**headers, "Accept": "text/csv;q=0.5, application/json"}
    response = await running.client.get(
        "/api/v1/noncompliant", params=window(scenario), headers=json_too
    )
    assert response.content_type == "application/json"


async def test_the_unit_page(running: Running) -> None:
    scenario, seeded = await start(running, "clean")
    who = inspector(scenario)
    # A window that starts and ends inside hours: counts mix rollups and the edges' entries.
    params = {"since": "2022-03-05T10:20:30Z", "until": "2022-03-05T11:45:10Z"}
    response = await running.client.get(
        "/api/v1/units/v-clean-a", params=params, headers=seeded.auth(who)
    )
    assert response.status == 200
    unit = await response.json()
    since, until = parse_rfc3339(params["since"]), parse_rfc3339(params["until"])
    sent = [
        body
        for step in seeded.expanded.steps
        if step.kind == "entries"
        for body in step.body["entries"]
        if body["venue_id"] == "v-clean-a" and since <= parse_rfc3339(body["ts"]) < until
    ]
    counts = unit["entry_counts"]
    assert counts["total"] == len(sent) > 0
    assert counts["allow"] == sum(1 for e in sent if e["decision"] == "allow")
    assert counts["deny"] == 1
    assert counts["by_reason"] == [{"decision": "deny", "reason": "fever", "count": 1}]
    assert [k["kiosk_id"] for k in unit["kiosks"]] == ["k-clean-a1", "k-clean-a2"]
    latest = unit["kiosks"][0]
    assert latest["last_heartbeat_at"] == "2022-03-05T11:55:00.000Z"
    assert latest["reported"]["sensors"] == {"camera": "ok", "thermometer": "ok"}
    assert unit["findings"] == [] and unit["status"] == "open" and unit["status_history"] == []


async def audit_actions(running: Running, seeded: Seeded) -> list[dict[str, Any]]:
    response = await running.client.get(
        "/api/v1/audit", params={"limit": "1000"}, headers=seeded.auth(SCENARIO_ADMIN)
    )
    assert response.status == 200
    return [
        r
        for r in (await response.json())["records"]
        if r["action"] in ("read_noncompliant", "read_unit", "set_unit_status")
    ]


async def test_reads_and_changes_are_audited_and_counted(running: Running) -> None:
    scenario, seeded = await start(running, "ordering")
    who = inspector(scenario)
    await noncompliant(running, seeded, who, **window(scenario))
    await running.client.get(
        "/api/v1/units/v-c-two", params=window(scenario), headers=seeded.auth(who)
    )
    records = await audit_actions(running, seeded)
    assert [(r["action"], r["actor"], r["target"]) for r in records] == [
        ("read_noncompliant", who, "harbin"),
        ("read_unit", who, "v-c-two"),
    ]
    assert records[0]["detail"]["units"] == ["v-c-two", "v-b-mixed", "v-a-skew"]
    assert records[0]["detail"]["sample_entry_ids"] == 3
    metrics = await (await running.client.get("/metrics")).text()
    assert 'kiosk_collector_findings_total{rule="override_entries"} 3.0' in metrics
    assert 'kiosk_collector_findings_total{rule="clock_skew"} 2.0' in metrics
    assert 'kiosk_collector_findings_total{rule="code_reuse"} 0.0' in metrics


async def kiosk_config(
    running: Running, seeded: Seeded, etag: str | None = None
) -> tuple[int, str, Any]:
    headers = seeded.auth("k-ov-a")
    if etag:
        headers["If-None-Match"] = etag
    response = await running.client.get("/api/v1/kiosk/config", headers=headers)
    body = await response.json() if response.status == 200 else None
    return response.status, response.headers["ETag"], body


async def test_rectification_reaches_the_kiosks(running: Running) -> None:
    scenario, seeded = await start(running, "override_entries")
    who = inspector(scenario)
    status, etag, config = await kiosk_config(running, seeded)
    assert status == 200 and config["unit_status"] == "open"
    assert (await kiosk_config(running, seeded, etag))[0] == 304

    running.clock.now += 60
    response = await running.client.post(
        "/api/v1/units/v-override/status",
        headers=seeded.auth(who),
        json={
            "status": "closed",
            "note": "Overrides of fever denials; rectify staff training.",
            "extra": 1,
        },
    )
    assert response.status == 200
    answer = await response.json()
    assert answer["status"] == "closed"
    assert answer["history"] == [
        {
            "status": "closed",
            "note": "Overrides of fever denials; rectify staff training.",
            "by": who,
            "at": "2022-03-05T12:01:00.000Z",
        }
    ]
    status, new_etag, config = await kiosk_config(running, seeded, etag)
    assert status == 200 and new_etag != etag and config["unit_status"] == "closed"

    _, listing = await noncompliant(running, seeded, who, **window(scenario))
    unit = listing["units"][0]
    assert (unit["status"], unit["status_set_by"], unit["status_set_at"]) == (
        "closed",
        who,
        "2022-03-05T12:01:00.000Z",
    )

    running.clock.now += 3600
    response = await running.client.post(
        "/api/v1/units/v-override/status",
        headers=seeded.auth(who),
        json={"status": "open", "note": ""},
    )
    history = (await response.json())["history"]
    assert [h["status"] for h in history] == ["closed", "open"]
    assert (await kiosk_config(running, seeded, new_etag))[2]["unit_status"] == "open"
    page = await (
        await running.client.get("/api/v1/units/v-override", headers=seeded.auth(who))
    ).json()
    assert [h["status"] for h in page["status_history"]] == ["closed", "open"]
    assert [r["action"] for r in await audit_actions(running, seeded)].count("set_unit_status") == 2

    for bad in (
        {"status": "shut", "note": "x"},
        {"status": "closed"},
        {"status": "closed", "note": "x" * 501},
        {"note": "x"},
    ):
        response = await running.client.post(
            "/api/v1/units/v-override/status", headers=seeded.auth(who), json=bad
        )
        assert response.status == 400, bad
        assert (await response.json())["error"] == "bad_request"
    response = await running.client.post(
        "/api/v1/units/nowhere/status",
        headers=seeded.auth(who),
        json={"status": "closed", "note": "x"},
    )
    assert response.status == 404


async def test_the_ready_made_misbehaving_city(running: Running) -> None:
    """The scenario the demo and the dashboard's tests seed: each district's inspector sees
    their own unit only, and only the misbehaving one has findings."""
    now = parse_rfc3339("2022-03-05T12:00:00Z")
    running.clock.now = now
    seeded = await seed(running.storage, misbehaving_city(now))
    seen = {}
    for who in ("inspector-daowai", "inspector-nangang", "inspector-xiangfang"):
        status, answer = await noncompliant(running, seeded, who)
        assert status == 200
        seen[who] = [
            (u["venue_id"], [(f["rule"], f["kind"]) for f in u["findings"]])
            for u in answer["units"]
        ]
    assert seen == {
        "inspector-daowai": [
            (MISBEHAVING_VENUE, [("override_entries", "override"), ("thermometer_fault", "stuck")])
        ],
        "inspector-nangang": [],
        "inspector-xiangfang": [],
    }
    response = await running.client.get(
        f"/api/v1/units/{CLEAN_VENUE}", headers=seeded.auth("inspector-nangang")
    )
    unit = await response.json()
    assert unit["findings"] == [] and unit["entry_counts"]["deny"] == 1
