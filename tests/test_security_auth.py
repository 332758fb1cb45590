"""Who may do what (issue 8, "Security"), on SQLite and PostgreSQL, with the roles and operations
taken from the collector's own OpenAPI document, so a new endpoint is covered when it is added:

- a kiosk cannot write for another kiosk or venue (entries, mixed batches, heartbeats);
- an inspector cannot read outside its region (by whole path segments) nor write anything: every
  write endpoint is 403, except ordering a unit of its own region closed, which is its role;
- a token outside its role gets 403, and nothing changes;
- failed authentication is limited per client address: 429 with Retry-After in the one error
  shape, before any token is looked up, another address unaffected, and memory bounded.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_helpers import CLI, T0, Collector, LogWriter, heartbeat
from test_fuzz_support import LiveCollector, record_figures

from kiosk.collector.config import CollectorConfig
from kiosk.collector.ratelimit import FailureLimiter, client_key
from kiosk.collector.tokens import new_token, token_hash

JSON = {"Content-Type": "application/json"}


async def document(collector: Collector) -> dict[str, Any]:
    response = await collector.client.get("/api/v1/openapi.json")
    answer: dict[str, Any] = await response.json()
    return answer


def writes(doc: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    return [
        (method.upper(), path, operation.get("x-roles", []))
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in ("post", "put", "patch", "delete")
    ]


def filled(path: str, venue_id: str = "v-a") -> str:
    return path.format(venue_type="general", venue_id=venue_id)


async def snapshot(collector: Collector) -> tuple[int, int, int]:
    storage = collector.storage
    beats = await storage.heartbeats_of_kiosk("k-a", since=T0 - 1e6, until=T0 + 1e6, limit=1000)
    return await storage.count_entries(), len(beats), await storage.config_generation()


def good_body(method: str, path: str, p: Any) -> Any:
    if path.endswith("/entries"):
        return {"entries": LogWriter("k-a", "v-a").entries(1)}
    if path.endswith("/heartbeat"):
        return heartbeat(p.kiosk_a, T0)
    if path.endswith("/status"):
        return {"status": "closed", "note": "security test"}
    if "/policy/" in path:
        return {"policy_version": "sec-1", "max_temperature_c": 37.3,
                "accepted_status": ["green"], "mask_required": True}
    if path.endswith("/trust-list"):
        return {"keys": []}
    if path.endswith("/revocation-list"):
        return {"updated": 1, "revoked": []}
    return {}


async def test_every_write_endpoint_refuses_every_role_but_its_own(collector: Collector) -> None:
    p = collector.provisioned
    doc = await document(collector)
    names = {"kiosk": "k-a", "inspector": "insp-d1", "admin": "root"}
    before = await snapshot(collector)
    refused = 0
    for method, path, roles in writes(doc):
        assert roles, f"{method} {path} takes no token"
        for role, name in names.items():
            if role in roles:
                continue
            response = await collector.client.request(
                method, filled(path), json=good_body(method, path, p), headers=p.auth(name)
            )
            assert response.status == 403, (method, path, role, await response.text())
            assert (await response.json())["error"] == "forbidden"
            refused += 1
    assert await snapshot(collector) == before
    inspector_writes = [path for _, path, roles in writes(doc) if "inspector" in roles]
    assert inspector_writes == ["/api/v1/units/{venue_id}/status"]  # its one write
    record_figures("security-roles", {"write_endpoints": len(writes(doc)),
                                      "refusals_checked": refused},
                   database=collector.storage.dialect)


async def test_an_inspector_orders_only_units_of_its_region_closed(collector: Collector) -> None:
    p = collector.provisioned
    body = {"status": "closed", "note": "outside my district"}
    for venue in ("v-b",):  # city/d10 is not below city/d1
        response = await collector.client.post(
            f"/api/v1/units/{venue}/status", json=body, headers=p.auth("insp-d1")
        )
        assert response.status == 403
    unit = await collector.client.get("/api/v1/units/v-b", headers=p.auth("insp-city"))
    assert (await unit.json())["status"] == "open"
    inside = await collector.client.post(
        "/api/v1/units/v-a/status", json={"status": "closed", "note": "mine"},
        headers=p.auth("insp-d1"),
    )
    assert inside.status == 200


async def test_an_inspector_reads_only_its_region_by_whole_segments(collector: Collector) -> None:
    p = collector.provisioned
    for writer in (p.kiosk_a, p.kiosk_b):  # a finding at each venue: an override entry
        deny = writer.entry(decision="deny", reasons=["temperature_high"])
        override = writer.entry(override={"by": "att", "note": "", "entry_id": deny["id"]})
        response = await collector.client.post(
            "/api/v1/entries", json={"entries": [deny, override]},
            headers=p.auth(writer.kiosk_id),
        )
        assert response.status == 200
    window = "since=2022-03-05T00:00:00Z&until=2022-03-06T00:00:00Z"
    client = collector.client

    async def status_of(path: str, name: str) -> tuple[int, Any]:
        response = await client.get(path, headers=p.auth(name))
        return response.status, await response.json()

    status, mine = await status_of(f"/api/v1/noncompliant?{window}", "insp-d1")
    assert status == 200 and [u["venue_id"] for u in mine["units"]] == ["v-a"]
    status, all_units = await status_of(f"/api/v1/noncompliant?{window}", "insp-city")
    assert status == 200 and sorted(u["venue_id"] for u in all_units["units"]) == ["v-a", "v-b"]
    for region in ("city/d10", "city", "city/d", "other", "city/d1/../d10"):
        status, answer = await status_of(f"/api/v1/noncompliant?{window}&region={region}",
                                         "insp-d1")
        assert status in (400, 403) and answer["error"] in ("forbidden", "bad_request"), region
    assert (await status_of(f"/api/v1/units/v-b?{window}", "insp-d1"))[0] == 403
    assert (await status_of(f"/api/v1/units/v-a?{window}", "insp-d1"))[0] == 200
    csv = await client.get(f"/api/v1/units/v-b?{window}",
                           headers={**p.auth("insp-d1"), "Accept": "text/csv"})
    assert csv.status == 403
    for name in ("k-a", "insp-d1"):
        assert (await status_of("/api/v1/audit", name))[0] == 403


async def test_a_kiosk_cannot_write_for_another_kiosk_or_venue(collector: Collector) -> None:
    p = collector.provisioned
    mine = LogWriter("k-a", "v-a")
    theirs = LogWriter("k-b", "v-b")
    wrong_venue = LogWriter("k-a", "v-b")
    wrong_kiosk = LogWriter("k-b", "v-a")
    before = await snapshot(collector)
    for batch in (
        theirs.entries(1),
        wrong_venue.entries(1),
        wrong_kiosk.entries(1),
        [*mine.entries(2), *theirs.entries(1)],  # one foreign entry refuses the whole batch
    ):
        response = await collector.client.post(
            "/api/v1/entries", json={"entries": batch}, headers=p.auth("k-a")
        )
        assert response.status == 403, await response.text()
    beat = heartbeat(theirs, T0)
    response = await collector.client.post("/api/v1/heartbeat", json=beat, headers=p.auth("k-a"))
    assert response.status == 403
    config = await collector.client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))
    assert (await config.json())["kiosk_id"] == "k-a"
    assert await snapshot(collector) == before


# -- failed authentication limited per address ------------------------------------------------

BURST = 5
REFILL_S = 5.0  # long: each test uses an address of its own, so none waits for a refill


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCollector]:
    folder: Path = tmp_path_factory.mktemp("limited")
    config = CollectorConfig.model_validate({
        "database": {"url": f"sqlite:///{folder}/collector.db"},
        "limits": {"auth_failure_burst": BURST, "auth_failure_refill": REFILL_S},
    })
    with LiveCollector(config) as server:
        yield server


def from_address(
    live: LiveCollector, address: str, method: str, path: str, headers: dict[str, str],
    body: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10,
                                            source_address=(address, 0))
    try:
        connection.request(method, path, body=body, headers={**JSON, **headers})
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data) if data else None
    finally:
        connection.close()


def test_failed_authentication_is_limited_per_client_address(limited: LiveCollector) -> None:
    guess = {"Authorization": f"Bearer {new_token()}"}
    valid = limited.auth("k-a")
    statuses = [
        from_address(limited, "127.0.0.7", "GET", "/api/v1/kiosk/config", guess)[0]
        for _ in range(BURST)
    ]
    assert statuses == [401] * BURST
    status, headers, body = from_address(limited, "127.0.0.7", "GET", "/api/v1/kiosk/config",
                                         guess)
    assert status == 429
    assert body["error"] == "too_many_requests" and set(body) == {"error", "detail"}
    assert 1 <= int(headers["Retry-After"]) <= REFILL_S
    # Every route that takes a token, even with a valid one: no lookup at all from there.
    assert from_address(limited, "127.0.0.7", "GET", "/api/v1/kiosk/config", valid)[0] == 429
    assert from_address(limited, "127.0.0.7", "POST", "/api/v1/entries", valid, b"{}")[0] == 429
    assert from_address(limited, "127.0.0.7", "GET", "/healthz", {})[0] == 200  # no token
    # Another address is not affected. (Refilling with time: the unit test below.)
    assert from_address(limited, "127.0.0.8", "GET", "/api/v1/kiosk/config", valid)[0] == 200
    metrics = limited.request("GET", "/metrics")[2].decode()
    assert 'kiosk_collector_auth_failures_total{reason="rate_limited"}' in metrics
    record_figures("security-rate-limit", {"burst": BURST, "refill_s": REFILL_S,
                                           "refused_after": BURST})


def test_a_known_token_asking_outside_its_role_does_not_count(limited: LiveCollector) -> None:
    inspector = limited.auth("insp-d1")
    for _ in range(BURST * 3):
        assert from_address(limited, "127.0.0.9", "GET", "/api/v1/kiosk/config",
                            inspector)[0] == 403
    assert from_address(limited, "127.0.0.9", "GET", "/api/v1/kiosk/config",
                        limited.auth("k-a"))[0] == 200


def test_failed_dashboard_sign_ins_count_against_the_address(limited: LiveCollector) -> None:
    statuses = []
    for _ in range(BURST + 1):
        connection = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=10,
                                                source_address=("127.0.0.10", 0))
        form = f"token={new_token()}&nonce=n1&next=/dashboard/"
        connection.request("POST", "/dashboard/sign-in", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "kiosk_sign_in=n1", "Origin": f"http://127.0.0.1:{limited.port}",
            "Sec-Fetch-Site": "same-origin",
        })
        statuses.append(connection.getresponse().status)
        connection.close()
    assert statuses == [401] * BURST + [429]


def test_the_limiter_keeps_bounded_memory_and_groups_ipv6_by_64() -> None:
    now = [0.0]
    limiter = FailureLimiter(burst=2, refill_s=10.0, max_addresses=500, clock=lambda: now[0])
    for index in range(5_000):
        limiter.failed(f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}")
    assert len(limiter) == 500
    same_64 = {client_key("2001:db8:1:2::1"), client_key("2001:db8:1:2:ffff::9")}
    assert same_64 == {"2001:db8:1:2::/64"}
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2"):  # two hosts of one /64 share a bucket
        limiter.failed(host)
    assert limiter.retry_after("2001:db8:1:2::3") == 10
    now[0] += 10.0
    assert limiter.retry_after("2001:db8:1:2::3") is None
    assert FailureLimiter(burst=0, refill_s=1.0).retry_after("x") is None  # off


async def test_revocation_and_rotation_take_effect_at_once(collector: Collector) -> None:
    """No cache between the token and its owner: the very next request after a revocation or a
    rotation (on the same kept-alive connection) sees it, on any collector process."""
    p = collector.provisioned
    client = collector.client
    assert (await client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))).status == 200
    await collector.storage.set_token("k-a", None, actor=CLI, now=T0)
    assert (await client.get("/api/v1/kiosk/config", headers=p.auth("k-a"))).status == 401
    batch = {"entries": LogWriter("k-a", "v-a").entries(1)}
    assert (await client.post("/api/v1/entries", json=batch, headers=p.auth("k-a"))).status == 401
    fresh = new_token()
    await collector.storage.set_token("insp-d1", token_hash(fresh), actor=CLI, now=T0)
    assert (await client.get("/api/v1/noncompliant", headers=p.auth("insp-d1"))).status == 401
    renewed = await client.get("/api/v1/noncompliant",
                               headers={"Authorization": f"Bearer {fresh}"})
    assert renewed.status == 200
    assert await collector.storage.count_entries() == 0
