"""Seeding a collector with a scenario: provisioning through its storage, then entries,
heartbeats and policies each at its receive time, through the storage's ingest methods or over
the HTTP API with the collector's clock set first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kiosk.collector.batch import BatchRejected, prepare_batch
from kiosk.collector.kiosk_config import KioskConfigService, builtin_max_trust_age_hours
from kiosk.collector.scenario.expand import Expanded, expand
from kiosk.collector.scenario.spec import InspectorSpec, Scenario
from kiosk.collector.storage.base import (
    Actor,
    HeartbeatRecord,
    PolicyPublication,
    Role,
    Storage,
    Venue,
)
from kiosk.collector.tokens import new_token, token_hash
from kiosk.wire import MAX_BATCH_ENTRIES, Heartbeat, parse_rfc3339

SEED_ACTOR = Actor("cli:scenario", "admin")
SCENARIO_ADMIN = "scenario-admin"


class ManualClock:
    """A collector clock that the seeder (or a test) sets: pass it to `build_app(clock=...)`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class HttpPoster(Protocol):
    """An aiohttp ClientSession or pytest-aiohttp TestClient (`base_url` "" then)."""

    def post(self, url: str, **kwargs: Any) -> Any: ...

    def put(self, url: str, **kwargs: Any) -> Any: ...


@dataclass
class HttpSink:
    """Send entries, heartbeats and policies over the API, setting the collector's clock to
    each receive time first: the whole real ingest path."""

    client: HttpPoster
    clock: ManualClock
    base_url: str = ""


@dataclass
class Seeded:
    tokens: dict[str, str]  # kiosk ids, inspector names (and the admin's) -> bearer token
    expanded: Expanded

    @property
    def label_of(self) -> dict[str, str]:
        return self.expanded.label_of

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


class SeedError(RuntimeError):
    """The collector refused something the scenario sent (a scenario or collector bug)."""


async def seed(storage: Storage, scenario: Scenario, *, http: HttpSink | None = None) -> Seeded:
    """Provision the scenario's city in `storage` and deliver what its kiosks sent up to
    `scenario.now`, each at its receive time: through the storage's ingest methods, or over
    HTTP when `http` is given. Returns the tokens it made (inspectors need theirs)."""
    expanded = expand(scenario)
    inspectors = scenario.inspectors or [InspectorSpec(name="inspector-harbin", region="harbin")]
    tokens: dict[str, str] = {}
    venue_of = {k.kiosk_id: k.venue_id for k in scenario.kiosks}
    configs = KioskConfigService(storage)
    first = expanded.steps[0].at if expanded.steps else scenario.now
    people: list[tuple[str, Role, str | None]] = [
        (i.name, "inspector", i.region) for i in inspectors
    ]
    for name, role, region in [*people, (SCENARIO_ADMIN, "admin", None)]:
        tokens[name] = new_token()
        await storage.add_person(
            name,
            role,
            region,
            token_hash(tokens[name]),
            actor=SEED_ACTOR,
            now=first,
        )
    for step in expanded.steps:
        if step.at > scenario.now:
            break
        body = step.body
        if step.kind == "venue":
            await storage.add_venue(
                Venue(
                    body["venue_id"],
                    body["name"] or body["venue_id"],
                    body["region"],
                    body["type"],
                    step.at,
                ),
                actor=SEED_ACTOR,
            )
        elif step.kind == "kiosk":
            tokens[body["kiosk_id"]] = new_token()
            await storage.add_kiosk(
                body["kiosk_id"],
                body["venue_id"],
                token_hash(tokens[body["kiosk_id"]]),
                actor=SEED_ACTOR,
                now=step.at,
            )
        elif step.kind == "inspector":
            pass  # provisioned above, with the first step's time
        elif step.kind == "policy":
            await _publish(storage, body, step.at, http, tokens)
        elif step.kind == "entries":
            await _send_entries(storage, body, step.at, http, tokens)
        else:
            venue = await storage.venue(venue_of[body["kiosk_id"]])
            assert venue is not None
            await _send_heartbeat(
                storage,
                configs,
                venue.venue_type,
                body,
                step.at,
                http,
                tokens,
                scenario.silent_after_s,
            )
    if http is not None:
        http.clock.now = scenario.now
    return Seeded(tokens, expanded)


async def _post(http: HttpSink, method: str, path: str, token: str, body: Any) -> None:
    call = http.client.post if method == "POST" else http.client.put
    headers = {"Authorization": f"Bearer {token}"}
    async with call(http.base_url + path, json=body, headers=headers) as response:
        if response.status >= 300:
            raise SeedError(f"{method} {path}: {response.status} {await response.text()}")


async def _publish(
    storage: Storage,
    body: dict[str, Any],
    at: float,
    http: HttpSink | None,
    tokens: dict[str, str],
) -> None:
    venue_type = body["venue_type"]
    document = {key: value for key, value in body.items() if key != "venue_type"}
    if http is not None:
        http.clock.now = at
        await _post(http, "PUT", f"/api/v1/policy/{venue_type}", tokens[SCENARIO_ADMIN], document)
        return
    policy = {key: value for key, value in document.items() if key != "policy_version"}
    await storage.publish_policy(
        PolicyPublication(
            venue_type,
            body["policy_version"],
            policy,
            builtin_max_trust_age_hours(venue_type),
            at,
            SEED_ACTOR.name,
        ),
        actor=SEED_ACTOR,
    )


async def _send_entries(
    storage: Storage,
    body: dict[str, Any],
    at: float,
    http: HttpSink | None,
    tokens: dict[str, str],
) -> None:
    kiosk_id = body["kiosk_id"]
    entries = body["entries"]
    for start in range(0, len(entries), MAX_BATCH_ENTRIES):
        document = {"entries": entries[start : start + MAX_BATCH_ENTRIES]}
        if http is not None:
            http.clock.now = at
            await _post(http, "POST", "/api/v1/entries", tokens[kiosk_id], document)
            continue
        try:
            batch = prepare_batch(
                document, kiosk_id=kiosk_id, venue_id=entries[0]["venue_id"], received_at=at
            )
        except BatchRejected as exc:
            raise SeedError(f"entries of {kiosk_id}: {exc.detail}") from None
        await storage.ingest_entries(batch)


async def _send_heartbeat(
    storage: Storage,
    configs: KioskConfigService,
    venue_type: str,
    body: dict[str, Any],
    at: float,
    http: HttpSink | None,
    tokens: dict[str, str],
    silent_after_s: float,
) -> None:
    if http is not None:
        http.clock.now = at
        await _post(http, "POST", "/api/v1/heartbeat", tokens[body["kiosk_id"]], body)
        return
    beat = Heartbeat.model_validate(body)
    kiosk = await storage.kiosk(beat.kiosk_id)
    assert kiosk is not None
    policy = await configs.policy_in_force(venue_type)
    await storage.record_heartbeat(
        HeartbeatRecord(
            kiosk_id=beat.kiosk_id,
            venue_id=kiosk.venue_id,
            received_at=at,
            ts=parse_rfc3339(beat.ts),
            log_id=beat.log_id.lower(),
            last_seq=beat.last_seq,
            backlog=beat.backlog,
            policy_version=beat.policy_version,
            camera=beat.sensors.camera,
            thermometer=beat.sensors.thermometer,
            trust_age_s=None if beat.trust_age_s is None else float(beat.trust_age_s),
            set_aside=beat.set_aside,
            storage_used_ratio=None,
            software=beat.software,
            published_policy_version=policy.version,
            max_trust_age_hours=policy.max_trust_age_hours,
            silent_after_s=silent_after_s,
            body=beat.model_dump(mode="json"),
        )
    )
