"""The collector's HTTP API against sync-api.md, over a real server on 127.0.0.1, on SQLite and
PostgreSQL: authentication and scope, ingest, heartbeats, configuration, admin endpoints."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from collector_helpers import T0, Collector, LogWriter, heartbeat

from kiosk.codes import RevocationList, TrustList
from kiosk.codes.issuing import new_issuer_key
from kiosk.collector.storage.base import (
    ENTRY_BROKEN_CHAIN,
    ENTRY_OVERRIDE,
    HEARTBEAT_CLOCK_SKEW,
    LINK_BROKEN,
    LINK_OK,
    LINK_UNVERIFIED,
)
from kiosk.wire import KioskConfigDoc

ERROR_KEYS = {"error", "detail"}


def assert_error(body: Any, code: str) -> None:
    assert isinstance(body, dict)
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"index"}
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]


async def post_entries(
    client: TestClient[Any, Any], headers: dict[str, str], entries: list[dict[str, Any]]
) -> tuple[int, Any]:
    response = await client.post("/api/v1/entries", json={"entries": entries}, headers=headers)
    return response.status, await response.json()


async def stored_ids(c: Collector, kiosk_id: str) -> list[str]:
    held = await c.storage.entries_of_kiosk(kiosk_id, since=0, until=4e9, limit=10_000)
    return [entry.id for entry in held]


# -- authentication, roles and scope -----------------------------------------------------------


ROUTES_NEEDING_A_TOKEN = [
    ("POST", "/api/v1/entries", "kiosk"),
    ("POST", "/api/v1/heartbeat", "kiosk"),
    ("GET", "/api/v1/kiosk/config", "kiosk"),
    ("PUT", "/api/v1/policy/general", "admin"),
    ("PUT", "/api/v1/trust-list", "admin"),
    ("PUT", "/api/v1/revocation-list", "admin"),
    ("GET", "/api/v1/audit", "admin"),
]


async def test_every_route_answers_401_without_a_valid_token(collector: Collector) -> None:
    client = collector.client
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "A" * 43},  # well formed, unknown
        {"Authorization": "Bearer not-a-token"},
    ]
    for method, path, _ in ROUTES_NEEDING_A_TOKEN:
        for headers in bad_headers:
            response = await client.request(method, path, headers=headers, json={})
            assert response.status == 401, (method, path, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert_error(await response.json(), "unauthorized")


async def test_a_known_token_outside_its_role_gets_403(collector: Collector) -> None:
    p = collector.provisioned
    for method, path, role in ROUTES_NEEDING_A_TOKEN:
        for name in ("k-a", "insp-d1", "insp-city", "root"):
            own_role = "kiosk" if name.startswith("k-") else (
                "admin" if name == "root" else "inspector"
            )
            if own_role == role:
                continue
            response = await collector.client.request(
                method, path, headers=p.auth(name), json={}
            )
            assert response.status == 403, (method, path, name)
            assert_error(await response.json(), "forbidden")


async def test_entries_of_another_kiosk_or_venue_are_403_and_nothing_is_stored(
    collector: Collector,
) -> None:
    p = collector.provisioned
    own = p.kiosk_a.entries(2)
    other_kiosk = LogWriter("k-b", "v-a").entry()
    other_venue = LogWriter("k-a", "v-b").entry()
    for intruder in (other_kiosk, other_venue):
        status, body = await post_entries(collector.client, p.auth("k-a"), [*own, intruder])
        assert status == 403
        assert_error(body, "forbidden")
    assert await stored_ids(collector, "k-a") == []
    # Nor may a kiosk report a heartbeat for another.
    response = await collector.client.post(
        "/api/v1/heartbeat", json=heartbeat(p.kiosk_b, T0), headers=p.auth("k-a")
    )
    assert response.status == 403


async def test_a_revoked_or_rotated_token_is_refused_at_once(collector: Collector) -> None:
    p = collector.provisioned
    config = await collector.client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))
    assert config.status == 200
    from kiosk.collector.storage.base import Actor
    from kiosk.collector.tokens import new_token, token_hash

    admin = Actor("cli:test", "admin")
    await collector.storage.set_token("k-a", None, actor=admin, now=T0)
    refused = await collector.client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))
    assert refused.status == 401
    fresh = new_token()
    await collector.storage.set_token("k-a", token_hash(fresh), actor=admin, now=T0)
    again = await collector.client.get(
        "/api/v1/kiosk/config", headers={"Authorization": f"Bearer {fresh}"}
    )
    assert again.status == 200


# -- ingest ------------------------------------------------------------------------------------


async def test_the_same_batch_three_times_is_stored_once(collector: Collector) -> None:
    p = collector.provisioned
    batch = p.kiosk_a.entries(5)
    answers = [await post_entries(collector.client, p.auth("k-a"), batch) for _ in range(3)]
    assert answers == [
        (200, {"accepted": 5, "duplicates": 0}),
        (200, {"accepted": 0, "duplicates": 5}),
        (200, {"accepted": 0, "duplicates": 5}),
    ]
    ids = await stored_ids(collector, "k-a")
    assert sorted(ids) == sorted(e["id"] for e in batch)
    # An overlapping batch: old ids are duplicates, new ones accepted.
    more = p.kiosk_a.entries(2)
    assert await post_entries(collector.client, p.auth("k-a"), batch[3:] + more) == (
        200,
        {"accepted": 2, "duplicates": 2},
    )


async def test_what_is_stored_is_what_was_sent(collector: Collector) -> None:
    p = collector.provisioned
    sent = p.kiosk_a.entries(3, temperature_c=37.0, extra_member={"vendor": "x"})
    assert (await post_entries(collector.client, p.auth("k-a"), sent))[0] == 200
    held = await collector.storage.entries_of_kiosk("k-a", since=0, until=4e9, limit=10)
    assert [entry.entry() for entry in held] == sent  # unknown members kept: the chain has them
    assert {entry.link for entry in held} == {LINK_OK}
    assert {entry.received_at for entry in held} == {collector.clock.now}


SPOILS: list[dict[str, Any]] = [
    {"seq": 0},
    {"temperature_c": 36.65},
    {"temperature_c": 51},
    {"mask": "maybe"},
    {"ts": "yesterday"},
    {"id": "not-a-uuid"},
    {"decision": None},
    {"reasons": ["Not A Code"]},
    {"override": {"by": "a", "note": "x" * 201, "entry_id": "00000000-0000-7000-8000-" + "0" * 12}},
    {"code_verdict": "great"},
]


async def test_one_bad_entry_rejects_its_batch_with_its_index(collector: Collector) -> None:
    p = collector.provisioned
    batch = p.kiosk_a.entries(5)
    for spoil in SPOILS:
        spoiled = [*batch[:3], {**batch[3], **spoil}, batch[4]]
        status, body = await post_entries(collector.client, p.auth("k-a"), spoiled)
        assert status == 400, spoil
        assert_error(body, "invalid_entry")
        assert body["index"] == 3
        assert await stored_ids(collector, "k-a") == []
    # The kiosk sends the others and sets the bad one aside.
    status, body = await post_entries(collector.client, p.auth("k-a"), batch[:3] + batch[4:])
    assert (status, body) == (200, {"accepted": 4, "duplicates": 0})


async def test_a_missing_member_or_a_non_object_is_an_invalid_entry(collector: Collector) -> None:
    p = collector.provisioned
    batch: list[Any] = p.kiosk_a.entries(3)
    without = dict(batch[1])
    del without["policy_version"]
    for bad in (without, "entry", None, [1]):
        status, body = await post_entries(collector.client, p.auth("k-a"), [batch[0], bad])
        assert status == 400 and body["index"] == 1


async def test_an_id_held_for_another_kiosk_is_400_with_its_index(collector: Collector) -> None:
    p = collector.provisioned
    theirs = p.kiosk_b.entry()
    assert (await post_entries(collector.client, p.auth("k-b"), [theirs]))[0] == 200
    mine = p.kiosk_a.entries(3)
    mine[2] = p.kiosk_a.entry(id=theirs["id"])
    status, body = await post_entries(collector.client, p.auth("k-a"), mine)
    assert status == 400
    assert_error(body, "invalid_entry")
    assert body["index"] == 2
    assert await stored_ids(collector, "k-a") == []


async def test_more_than_1000_entries_is_413(collector: Collector) -> None:
    p = collector.provisioned
    batch = p.kiosk_a.entries(1001)
    status, body = await post_entries(collector.client, p.auth("k-a"), batch)
    assert status == 413
    assert_error(body, "payload_too_large")
    assert (await post_entries(collector.client, p.auth("k-a"), batch[:1000]))[0] == 200


async def test_a_body_over_1_mib_is_413_declared_or_streamed(collector: Collector) -> None:
    p = collector.provisioned
    big = io.BytesIO(b'{"entries": [' + b" " * (1024 * 1024) + b"]}")
    response = await collector.client.post(
        "/api/v1/entries", data=big, headers={**p.auth("k-a"), "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert_error(await response.json(), "payload_too_large")

    async def chunks() -> Any:  # no Content-Length: chunked, counted as it arrives
        yield b'{"entries": ['
        for _ in range(40):
            yield b" " * 32768

    response = await collector.client.post("/api/v1/entries", data=chunks(), headers=p.auth("k-a"))
    assert response.status == 413
    assert_error(await response.json(), "payload_too_large")


async def test_a_body_that_is_not_json_is_400(collector: Collector) -> None:
    p = collector.provisioned
    for body in (b"{", b"NaN", b'{"entries": [NaN]}', b"\xff\xfe", b"[]", b'{"entries": 3}'):
        response = await collector.client.post(
            "/api/v1/entries", data=body, headers=p.auth("k-a")
        )
        assert response.status == 400, body
        assert_error(await response.json(), "bad_request")


async def test_broken_links_and_gaps_are_recorded_not_rejected(collector: Collector) -> None:
    p = collector.provisioned
    w = p.kiosk_a
    first = w.entries(3)
    w.entries(2)  # seq 4 and 5 never sent: a gap
    later = w.entries(3)
    later[1] = {**later[1], "temperature_c": 35.0}  # altered after chaining: a broken link
    client, auth = collector.client, p.auth("k-a")
    assert await post_entries(client, auth, first) == (200, {"accepted": 3, "duplicates": 0})
    assert await post_entries(client, auth, later) == (200, {"accepted": 3, "duplicates": 0})
    held = {
        e.seq: e
        for e in await collector.storage.entries_of_kiosk("k-a", since=0, until=4e9, limit=99)
    }
    assert [held[s].link for s in (1, 2, 3)] == [LINK_OK] * 3
    assert held[6].link == LINK_UNVERIFIED  # its predecessor (5) never arrived
    assert held[7].link == LINK_BROKEN and held[7].flags & ENTRY_BROKEN_CHAIN
    assert held[8].link == LINK_OK  # 8 follows the chain 7 carries; 7's body was altered
    summary = await collector.storage.log_summary(w.log_id)
    assert summary is not None
    assert summary.runs == ((1, 3), (6, 8)) and summary.max_seq == 8 and summary.held == 6


async def test_an_override_is_flagged(collector: Collector) -> None:
    p = collector.provisioned
    deny = p.kiosk_a.entry(decision="deny", reasons=["fever"], temperature_c=38.2)
    override = p.kiosk_a.entry(
        reasons=["fever"], temperature_c=38.2,
        override={"by": "att-1", "note": "known to staff", "entry_id": deny["id"]},
    )
    assert (await post_entries(collector.client, p.auth("k-a"), [deny, override]))[0] == 200
    held = await collector.storage.entries_of_kiosk("k-a", since=0, until=4e9, limit=9)
    assert [bool(e.flags & ENTRY_OVERRIDE) for e in held] == [False, True]


# -- heartbeats ----------------------------------------------------------------------------------


async def test_heartbeats_are_recorded_with_receive_time_and_offset(collector: Collector) -> None:
    p = collector.provisioned
    client, auth = collector.client, p.auth("k-a")
    collector.clock.now = T0 + 100
    sent = heartbeat(p.kiosk_a, T0 + 100 - 0.25, sensors={"camera": "ok", "thermometer": "ok",
                                                          "door": "ok"})
    response = await client.post("/api/v1/heartbeat", json=sent, headers=auth)
    assert response.status == 204
    collector.clock.now = T0 + 400
    skewed = heartbeat(p.kiosk_a, T0 + 400 - 300)
    assert (await client.post("/api/v1/heartbeat", json=skewed, headers=auth)).status == 204
    beats = await collector.storage.heartbeats_of_kiosk("k-a", since=0, until=4e9, limit=9)
    assert [b.received_at for b in beats] == [T0 + 100, T0 + 400]
    assert beats[0].offset_s == pytest.approx(0.25)
    assert beats[0].body["sensors"]["door"] == "ok"  # more sensor keys are allowed and kept
    assert beats[0].gap_s is None and beats[1].gap_s == pytest.approx(300)
    assert not beats[0].flags & HEARTBEAT_CLOCK_SKEW and beats[1].flags & HEARTBEAT_CLOCK_SKEW


async def test_an_invalid_heartbeat_is_400(collector: Collector) -> None:
    p = collector.provisioned
    for spoil in ({"sensors": {"camera": "ok"}}, {"last_seq": -1}, {"ts": "now"},
                  {"storage_used_ratio": 2}):
        body = {**heartbeat(p.kiosk_a, T0), **spoil}
        response = await collector.client.post("/api/v1/heartbeat", json=body,
                                               headers=p.auth("k-a"))
        assert response.status == 400
        assert_error(await response.json(), "bad_request")


# -- configuration -------------------------------------------------------------------------------


async def test_a_fresh_collector_serves_the_spec_defaults(collector: Collector) -> None:
    p = collector.provisioned
    response = await collector.client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))
    assert response.status == 200
    config = await response.json()
    key = config.pop("pseudonym_key")
    assert config == {
        "kiosk_id": "k-a",
        "venue_id": "v-a",
        "venue_type": "general",
        "policy_version": "default-1",
        "policy": {
            "max_temperature_c": 37.3,
            "accepted_status": ["green"],
            "mask_required": True,
            "max_test_age_hours": None,
            "deny_travel_risk": False,
        },
        "trust_list": {"keys": []},
        "revocation_list": {"updated": 0, "revoked": []},
        "max_trust_age_hours": 48,
        "unit_status": "open",
    }
    assert key["version"] == 1 and len(key["key"]) == 43
    KioskConfigDoc.model_validate({**config, "pseudonym_key": key})
    # The same key for every kiosk of the deployment; the hospital gets its own policy.
    other = await (
        await collector.client.get("/api/v1/kiosk/config", headers=p.auth("k-b"))
    ).json()
    assert other["pseudonym_key"] == key
    assert other["venue_type"] == "hospital" and other["policy"]["max_test_age_hours"] == 48


async def test_etag_and_304(collector: Collector) -> None:
    p = collector.provisioned
    client = collector.client
    first = await client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))
    etag = first.headers["ETag"]
    assert etag.startswith('"') and "no-cache" in first.headers["Cache-Control"]
    same = await client.get(
        "/api/v1/kiosk/config", headers={**p.auth("k-a"), "If-None-Match": etag}
    )
    assert same.status == 304 and same.headers["ETag"] == etag and await same.read() == b""
    weak = await client.get(
        "/api/v1/kiosk/config", headers={**p.auth("k-a"), "If-None-Match": f'"x", W/{etag}'}
    )
    assert weak.status == 304
    stale = await client.get(
        "/api/v1/kiosk/config", headers={**p.auth("k-a"), "If-None-Match": '"other"'}
    )
    assert stale.status == 200
    # Another kiosk's configuration has another ETag.
    theirs = await client.get("/api/v1/kiosk/config", headers=p.auth("k-b"))
    assert theirs.headers["ETag"] != etag
    # A publication changes the document and its ETag.
    policy = {"max_temperature_c": 37.5, "accepted_status": ["green", "yellow"],
              "mask_required": False, "policy_version": "2022-03-06.1"}
    put = await client.put("/api/v1/policy/general", json=policy, headers=p.auth("root"))
    assert put.status == 200
    changed = await client.get(
        "/api/v1/kiosk/config", headers={**p.auth("k-a"), "If-None-Match": etag}
    )
    assert changed.status == 200 and changed.headers["ETag"] != etag
    body = await changed.json()
    assert body["policy_version"] == "2022-03-06.1"
    assert body["policy"]["accepted_status"] == ["green", "yellow"]
    # The hospital's policy did not change, nor its ETag.
    still = await client.get(
        "/api/v1/kiosk/config",
        headers={**p.auth("k-b"), "If-None-Match": theirs.headers["ETag"]},
    )
    assert still.status == 304


# -- admin ---------------------------------------------------------------------------------------


async def test_admin_publishes_lists_and_every_change_is_audited(collector: Collector) -> None:
    p = collector.provisioned
    client, root = collector.client, p.auth("root")
    issuer = new_issuer_key(kid="k1", iss="hlj-health")
    trust = TrustList((issuer.trusted_key,)).to_jwks()
    revocation = RevocationList.of_holders([("hlj-health", "abc")], updated=1646500000).to_json()
    response = await client.put("/api/v1/trust-list", json=trust, headers=root)
    assert (response.status, await response.json()) == (200, {"name": "trust_list", "items": 1})
    response = await client.put("/api/v1/revocation-list", json=revocation, headers=root)
    assert response.status == 200
    config = await (await client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))).json()
    assert config["trust_list"] == trust
    assert config["revocation_list"] == revocation

    for path, bad in (
        ("/api/v1/trust-list", {"keys": [{"kty": "OKP", "kid": "x"}]}),
        ("/api/v1/revocation-list", {"updated": -1, "revoked": []}),
        ("/api/v1/policy/general", {"max_temperature_c": 37.3, "accepted_status": ["yellow"],
                                    "mask_required": True, "policy_version": "v"}),
        ("/api/v1/policy/general", {"max_temperature_c": 99, "accepted_status": ["green"],
                                    "mask_required": True, "policy_version": "v"}),
        ("/api/v1/policy/Not-A-Type", {}),
    ):
        response = await client.put(path, json=bad, headers=root)
        assert response.status == 400, path
        assert_error(await response.json(), "bad_request")

    audit = await (await client.get("/api/v1/audit?limit=1000", headers=root)).json()
    actions = [record["action"] for record in audit["records"]]
    assert actions[:7] == ["add_venue", "add_venue", "add_kiosk", "add_kiosk", "add_inspector",
                           "add_inspector", "add_admin"]
    assert actions[7:] == ["put_trust_list", "put_revocation_list"]
    assert audit["records"][7]["actor"] == "root" and audit["next_after"] is None
    assert audit["records"][7]["detail"] == {"keys": ["k1"]}
    page = await (await client.get("/api/v1/audit?limit=2&after=2", headers=root)).json()
    assert [r["id"] for r in page["records"]] == [3, 4] and page["next_after"] == 4
    response = await client.get("/api/v1/audit?since=yesterday", headers=root)
    assert response.status == 400


# -- operations ----------------------------------------------------------------------------------


async def test_health_and_metrics(collector: Collector) -> None:
    p = collector.provisioned
    health = await collector.client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["status"] == "ok"
    await post_entries(collector.client, p.auth("k-a"), p.kiosk_a.entries(4))
    empty = await post_entries(collector.client, p.auth("k-a"), [])
    assert empty == (200, {"accepted": 0, "duplicates": 0})
    await collector.client.get("/api/v1/kiosk/config")  # 401: counted
    text = await (await collector.client.get("/metrics")).text()
    assert "kiosk_collector_entries_ingested_total 4.0" in text
    assert 'kiosk_collector_auth_failures_total{reason="missing"} 1.0' in text
    assert "kiosk_collector_batch_seconds_bucket" in text
    assert "kiosk_collector_entry_duplicates_total 0.0" in text


async def test_every_answer_of_an_error_has_the_one_shape(collector: Collector) -> None:
    client = collector.client
    app = client.server.app
    assert app is not None
    seen = 0
    for resource in app.router.resources():
        if resource.canonical.startswith("/dashboard"):
            continue  # HTML pages for people, with HTML errors (test_dashboard.py)
        info = resource.get_info()
        path = info.get("path") or info["formatter"].format(venue_type="general", venue_id="v-a")
        methods = {route.method for route in resource}
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            response = await client.request(method, path, data=b"{")
            if method in methods:
                if response.status < 400:
                    continue  # the open endpoints (health, metrics, openapi)
            else:
                assert response.status == 405, (method, path)
                assert "Allow" in response.headers
            assert_error(await response.json(), _code(response.status))
            seen += 1
    assert seen > 20
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404
    assert_error(await response.json(), "not_found")


def _code(status: int) -> str:
    return {401: "unauthorized", 405: "method_not_allowed", 400: "bad_request"}[status]


async def test_the_openapi_document_validates_and_holds_no_secret(collector: Collector) -> None:
    from openapi_spec_validator import validate

    if collector.storage.dialect == "postgresql":
        pytest.skip("the document does not depend on the database (checked on SQLite)")
    p = collector.provisioned
    response = await collector.client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    validate(document)
    app = collector.client.server.app
    assert app is not None
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
        and not route.resource.canonical.startswith("/dashboard")  # pages, not API
    }
    described = {(m, path) for path, item in document["paths"].items() for m in item}
    assert routed == described
    for item in document["paths"].values():
        for operation in item.values():
            for status in operation["responses"]:
                if int(status) >= 400:
                    ref = operation["responses"][status]["content"]["application/json"]
                    assert ref["schema"] == {"$ref": "#/components/schemas/Error"}
    text = json.dumps(document)
    config = await (await collector.client.get("/api/v1/kiosk/config",
                                               headers=p.auth("k-a"))).json()
    for secret in [*p.tokens.values(), config["pseudonym_key"]["key"]]:
        assert secret not in text
    schemas = document["components"]["schemas"]
    assert {"Entry", "EntryBatch", "Heartbeat", "KioskConfigDoc", "Error"} <= set(schemas)
