"""Hand-made bad input to the collector's HTTP API (issue 8, "Bad input"), on SQLite and
PostgreSQL: bodies over the limits, JSON nested far too deep, NaN and Infinity, unicode and control
characters in ids and texts, SQL metacharacters in every query and path parameter the OpenAPI
document names. Each gets a 4xx in the one error shape and stores nothing. Timestamps far in the
past or future are accepted, and a heartbeat's shows up as `clock_skew`."""

from __future__ import annotations

import io
import json
import urllib.parse
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from collector_helpers import T0, Collector, LogWriter, heartbeat
from test_fuzz_support import record_figures

from kiosk.collector.bodies import MAX_JSON_DEPTH
from kiosk.collector.storage.base import HEARTBEAT_CLOCK_SKEW
from kiosk.wire import MAX_BODY_BYTES

JSON = {"Content-Type": "application/json"}
AROUND_T0 = (T0 - 1e8, T0 + 1e8)  # heartbeats are found by the collector's (fake) receive time


async def send(
    client: TestClient[Any, Any], method: str, path: str, body: str | bytes,
    headers: dict[str, str],
) -> tuple[int, Any]:
    data = body.encode() if isinstance(body, str) else body
    # A large body goes as a stream (aiohttp warns about big raw bytes).
    response = await client.request(
        method, path, data=io.BytesIO(data), headers={**headers, **JSON}
    )
    text = await response.text()
    return response.status, json.loads(text) if text else None


def assert_refused(answer: tuple[int, Any], *statuses: int) -> None:
    status, body = answer
    assert status in statuses, answer
    assert set(body) <= {"error", "detail", "index"} and body["detail"], body


async def stored(collector: Collector) -> tuple[int, int]:
    """Entries held, and heartbeats held for either kiosk."""
    beats = 0
    for kiosk_id in ("k-a", "k-b"):
        beats += len(
            await collector.storage.heartbeats_of_kiosk(
                kiosk_id, since=AROUND_T0[0], until=AROUND_T0[1], limit=10_000
            )
        )
    return await collector.storage.count_entries(), beats


def entries_body(*entries: dict[str, Any]) -> str:
    return json.dumps({"entries": list(entries)}, allow_nan=True)


def raw_member(entry: dict[str, Any], member: str, raw_json: str) -> str:
    """The batch of `entry` with `member`'s value written as `raw_json` verbatim (NaN, 1e999,
    escapes no Python value produces)."""
    marked = {**entry, member: "@@RAW@@"}
    return entries_body(marked).replace('"@@RAW@@"', raw_json)


# -- sizes and depth -------------------------------------------------------------------------


async def test_bodies_over_each_limit_are_413_and_store_nothing(collector: Collector) -> None:
    p = collector.provisioned
    limits = collector.config.limits
    admin = p.auth("root")
    padding = "x" * (MAX_BODY_BYTES + 10)
    entry = p.kiosk_a.entry()
    generation = await collector.storage.config_generation()
    cases: list[tuple[str, str, str, dict[str, str]]] = [
        ("POST", "/api/v1/entries", entries_body({**entry, "pad": padding}), p.auth("k-a")),
        ("POST", "/api/v1/heartbeat",
         json.dumps({**heartbeat(p.kiosk_a, T0), "pad": "x" * limits.max_heartbeat_bytes}),
         p.auth("k-a")),
        ("PUT", "/api/v1/policy/general", json.dumps({"pad": padding}), admin),
        ("PUT", "/api/v1/trust-list",
         json.dumps({"keys": [], "pad": "x" * limits.max_list_bytes}), admin),
        ("PUT", "/api/v1/revocation-list",
         json.dumps({"updated": 1, "revoked": [], "pad": "x" * limits.max_list_bytes}), admin),
    ]
    for method, path, body, headers in cases:
        assert_refused(await send(collector.client, method, path, body, headers), 413)
    # 1,001 entries is over the batch limit however small each is.
    many = [{"id": str(n)} for n in range(1001)]
    assert_refused(
        await send(collector.client, "POST", "/api/v1/entries", entries_body(*many),
                   p.auth("k-a")),
        413,
    )
    assert await stored(collector) == (0, 0)
    assert await collector.storage.config_generation() == generation  # nothing published


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 20_000])
async def test_json_nested_too_deep_is_400_on_every_body(
    collector: Collector, depth: int
) -> None:
    p = collector.provisioned
    nested = "[" * depth + "1" + "]" * depth
    kiosk, admin = p.auth("k-a"), p.auth("root")
    bodies = [
        ("POST", "/api/v1/entries", nested, kiosk),
        ("POST", "/api/v1/entries", raw_member(p.kiosk_a.entry(), "extra", nested), kiosk),
        ("POST", "/api/v1/heartbeat", nested, kiosk),
        ("POST", "/api/v1/heartbeat",
         json.dumps(heartbeat(p.kiosk_a, T0, sensors={"camera": "ok", "thermometer": "ok",
                                                       "door": "@@"})).replace('"@@"', nested),
         kiosk),
        ("PUT", "/api/v1/policy/general", nested, admin),
        ("PUT", "/api/v1/trust-list", json.dumps({"keys": "@@"}).replace('"@@"', nested), admin),
        ("PUT", "/api/v1/revocation-list", nested, admin),
    ]
    for method, path, body, headers in bodies:
        assert_refused(await send(collector.client, method, path, body, headers), 400)
    assert await stored(collector) == (0, 0)


async def test_json_nested_to_the_limit_is_still_read(collector: Collector) -> None:
    p = collector.provisioned
    deepest = "[" * (MAX_JSON_DEPTH - 3) + "1" + "]" * (MAX_JSON_DEPTH - 3)
    # {"entries": [{"extra": [[...]]}]}: three levels above the extra member.
    body = raw_member(p.kiosk_a.entry(), "extra", deepest)
    status, answer = await send(collector.client, "POST", "/api/v1/entries", body, p.auth("k-a"))
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})


# -- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "50.1", "-0.1", "36.65", "1e400"]
)
async def test_nan_infinity_and_out_of_range_temperatures_are_400(
    collector: Collector, raw: str
) -> None:
    p = collector.provisioned
    body = raw_member(p.kiosk_a.entry(), "temperature_c", raw)
    assert_refused(
        await send(collector.client, "POST", "/api/v1/entries", body, p.auth("k-a")), 400
    )
    beat = json.dumps({**heartbeat(p.kiosk_a, T0), "trust_age_s": "@@"}).replace('"@@"', raw)
    status, answer = await send(collector.client, "POST", "/api/v1/heartbeat", beat,
                                p.auth("k-a"))
    if raw in ("50.1", "36.65"):  # finite and not negative: a fine trust age
        assert status == 204
    else:
        assert_refused((status, answer), 400)
    assert (await stored(collector))[0] == 0


# -- unicode and control characters ------------------------------------------------------------

ODD_TEXTS = [
    "\\u0000",  # NUL: no PostgreSQL text can hold it
    "\\ud800",  # an unpaired surrogate
    "\\udc00x",
    "k-a\\n",  # a newline after a valid id
    "k-a\\r\\nX-Injected: 1",
    "\\u202ek-a",  # right-to-left override
    "k\\u200ba",  # zero-width space
    "\\uff4b-a",  # full-width k
    "\\u0661\\u0662",  # Arabic-Indic digits
    "\\ud83d\\ude00",  # an emoji (a valid pair)
    "\\u001b[31mk-a",  # a terminal escape
    "k-a" * 5000,  # very long
    "",
]


@pytest.mark.parametrize("member", ["id", "log_id", "kiosk_id", "venue_id"])
async def test_unicode_and_control_characters_in_entry_ids_are_refused(
    collector: Collector, member: str
) -> None:
    p = collector.provisioned
    for odd in ODD_TEXTS:
        body = raw_member(p.kiosk_a.entry(), member, f'"{odd}"')
        # kiosk_id / venue_id that still parse as ids of someone else would be 403.
        assert_refused(
            await send(collector.client, "POST", "/api/v1/entries", body, p.auth("k-a")),
            400, 403,
        )
    beat = heartbeat(p.kiosk_a, T0)
    for odd in ODD_TEXTS:
        text = json.dumps({**beat, "kiosk_id": "@@"}).replace('"@@"', f'"{odd}"')
        assert_refused(
            await send(collector.client, "POST", "/api/v1/heartbeat", text, p.auth("k-a")),
            400, 403,
        )
    assert await stored(collector) == (0, 0)


@pytest.mark.parametrize("member", ["policy_version", "override.by", "override.note", "extra"])
async def test_nul_and_lone_surrogates_in_free_texts_are_400_with_the_entry_index(
    collector: Collector, member: str
) -> None:
    p = collector.provisioned
    for odd in ("\\u0000", "a\\u0000b", "\\ud800", "x\\udfff"):
        good, bad = p.kiosk_a.entry(), p.kiosk_a.entry()
        if member.startswith("override."):
            override = {"by": "att-1", "note": "n", "entry_id": good["id"]}
            marked = {**bad, "override": {**override, member.split(".")[1]: "@@"}}
        else:
            marked = {**bad, member: "@@"}
        body = entries_body(good, marked).replace('"@@"', f'"{odd}"')
        status, answer = await send(collector.client, "POST", "/api/v1/entries", body,
                                    p.auth("k-a"))
        assert (status, answer["error"], answer.get("index")) == (400, "invalid_entry", 1)
    for field in ("policy_version", "software", "sensors"):
        beat = heartbeat(p.kiosk_a, T0)
        if field == "sensors":
            beat["sensors"] = {**beat["sensors"], "door": "@@"}
        else:
            beat[field] = "@@"
        for odd in ("\\u0000", "\\ud800"):
            text = json.dumps(beat).replace('"@@"', f'"{odd}"')
            assert_refused(
                await send(collector.client, "POST", "/api/v1/heartbeat", text, p.auth("k-a")),
                400,
            )
    assert await stored(collector) == (0, 0)


async def test_readable_unicode_in_free_texts_is_kept_as_sent(collector: Collector) -> None:
    p = collector.provisioned
    first = p.kiosk_a.entry()
    override = {"by": "值班员-1", "note": "体温复测 36.8 ℃ ✓ \u202e", "entry_id": first["id"]}
    second = p.kiosk_a.entry(override=override, policy_version="政策-1")
    status, _ = await send(collector.client, "POST", "/api/v1/entries",
                           entries_body(first, second), p.auth("k-a"))
    assert status == 200
    held = await collector.storage.entries_of_kiosk("k-a", since=0, until=1e12, limit=10)
    assert [entry.entry() for entry in held] == [first, second]


# -- SQL metacharacters ----------------------------------------------------------------------

SQL_TEXTS = [
    "' OR '1'='1",
    "'; DROP TABLE entries; --",
    '" OR ""="',
    "%",
    "_",
    "\\",
    "v-a' UNION SELECT token_hash FROM principals --",
    "1; SELECT pg_sleep(5)",
    "city/d1' OR region LIKE '%",
    "0x27",
    "\x00",
    "$1",
    "?",
]


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            found.append((method.upper(), path, operation))
    return found


def role_token(operation: dict[str, Any], collector: Collector) -> dict[str, str]:
    roles = operation.get("x-roles", [])
    name = {"admin": "root", "inspector": "insp-city", "kiosk": "k-a"}
    return collector.provisioned.auth(name[roles[0]]) if roles else {}


async def test_sql_metacharacters_in_every_parameter_change_nothing(
    collector: Collector,
) -> None:
    client = collector.client
    p = collector.provisioned
    await send(client, "POST", "/api/v1/entries", entries_body(*p.kiosk_a.entries(3)),
               p.auth("k-a"))
    before = await stored(collector)
    document = await (await client.get("/api/v1/openapi.json")).json()
    tried = 0
    for method, path, operation in operations(document):
        parameters = [q for q in operation.get("parameters", []) if q["in"] in ("query", "path")]
        headers = role_token(operation, collector)
        for parameter in parameters:
            for text in SQL_TEXTS:
                values = {q["name"]: "v-a" for q in parameters if q["in"] == "path"}
                query: dict[str, str] = {}
                if parameter["in"] == "path":
                    values[parameter["name"]] = text
                else:
                    query[parameter["name"]] = text
                url = path.format(**{k: urllib.parse.quote(v, safe="") for k, v in
                                     values.items()})
                if query:
                    url += "?" + urllib.parse.urlencode(query)
                body = "{}" if method in ("POST", "PUT") else None
                response = await client.request(method, url, data=body,
                                                headers={**headers, **JSON})
                tried += 1
                assert response.status < 500, (method, url, await response.text())
                if response.status >= 400:
                    answer = await response.json()
                    assert set(answer) <= {"error", "detail", "index"}, answer
    assert tried >= len(SQL_TEXTS) * 4
    assert await stored(collector) == before
    # The principals are intact: every token still works, and still only for its role.
    for name in ("k-a", "k-b"):
        ok = await client.get("/api/v1/kiosk/config", headers=p.auth(name))
        assert ok.status == 200
    record_figures("bad-input-sql", {"requests": tried, "payloads": len(SQL_TEXTS)},
                   database=collector.storage.dialect)


# -- timestamps ----------------------------------------------------------------------------------

FAR_TIMES = [
    "0001-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "1900-02-28T23:59:59.999999999+23:59",
    "2999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999Z",
    "9999-12-31T23:59:59-23:59",
]


async def test_far_past_and_future_timestamps_are_accepted_and_skew_is_a_finding(
    collector: Collector,
) -> None:
    p = collector.provisioned
    writer = LogWriter("k-a", "v-a")
    batch = [writer.entry(ts=ts) for ts in FAR_TIMES]
    status, answer = await send(collector.client, "POST", "/api/v1/entries",
                                entries_body(*batch), p.auth("k-a"))
    assert (status, answer) == (200, {"accepted": len(FAR_TIMES), "duplicates": 0})
    assert await collector.storage.count_entries() == len(FAR_TIMES)
    status, answer = await send(collector.client, "POST", "/api/v1/entries",
                                entries_body(*batch), p.auth("k-a"))
    assert (status, answer) == (200, {"accepted": 0, "duplicates": len(FAR_TIMES)})
    for index, ts in enumerate(FAR_TIMES):
        collector.clock.now = T0 + index * 60
        beat = heartbeat(writer, T0)
        beat["ts"] = ts
        status, _ = await send(collector.client, "POST", "/api/v1/heartbeat", json.dumps(beat),
                               p.auth("k-a"))
        assert status == 204, ts
    beats = await collector.storage.heartbeats_of_kiosk(
        "k-a", since=AROUND_T0[0], until=AROUND_T0[1], limit=100
    )
    assert len(beats) == len(FAR_TIMES)
    assert all(beat.flags & HEARTBEAT_CLOCK_SKEW for beat in beats)
    # ... and the inspectors see it as the unit's clock_skew finding.
    window = "since=2022-03-05T00:00:00Z&until=2022-03-06T00:00:00Z"
    response = await collector.client.get(f"/api/v1/noncompliant?{window}",
                                          headers=p.auth("insp-d1"))
    assert response.status == 200
    units = (await response.json())["units"]
    rules = {f["rule"]: f for unit in units for f in unit["findings"]}
    assert rules["clock_skew"]["count"] == len(FAR_TIMES)
