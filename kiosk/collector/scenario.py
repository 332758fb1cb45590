"""Seeding a collector with a scenario: venues, kiosks, policies, entries and heartbeats at chosen
times, as a city's kiosks would have sent them. The findings fixtures, the dashboard's tests and
the demo all use it.

A scenario is plain data (`Scenario`, loaded from JSON or built in Python) written compactly:
entries and heartbeats name kiosks, logs, subjects and other entries by short labels, and may
repeat (`repeat`, `every_s`). `expand()` turns it into the exact sync-api documents with valid
ids, seqs and hash chains, in the order a collector would receive them; `seed()` plays them into
a storage through its ingest methods with the collector's clock set to each receive time.

Conventions of the compact form (tests/fixtures/findings/README.md says the same for readers of
the fixtures):
* times are RFC 3339 strings or Unix seconds;
* an entry's `id` is a label; its UUID is a deterministic version 7 from the label and `ts`, so
  the findings' `sample_entry_ids` can be mapped back (`Expanded.label_of`);
* `subject` labels become 64-hex pseudonyms (SHA-256 of the label); the default `""` gives each
  entry a person of its own, `null` none; `log` labels become UUIDs;
* seqs are assigned per kiosk and log in `ts` order; `"sent": false` keeps an entry out of the
  collector (a gap), `"chain": "broken"` writes a wrong `chain` that the rest of the log follows
  (the log was altered at that entry);
* an entry is received at `received_at` (default: its `ts`); a heartbeat's `ts` is its receive
  time minus `behind_s` (its clock skew), and its `last_seq` defaults to the highest seq of its
  log written by then; `policy_version`s default to the version published at that time.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from kiosk.collector.batch import BatchRejected, prepare_batch
from kiosk.collector.kiosk_config import KioskConfigService, builtin_max_trust_age_hours
from kiosk.collector.storage.base import (
    Actor,
    HeartbeatRecord,
    PolicyPublication,
    Role,
    Storage,
    Venue,
)
from kiosk.collector.tokens import new_token, token_hash
from kiosk.findings import (
    DEFAULT_WINDOW_S,
    SILENT_AFTER_S,
    EntryFacts,
    HeartbeatFacts,
    KioskFacts,
    Window,
)
from kiosk.policies import load_policy, policy_to_doc
from kiosk.wire import (
    MAX_BATCH_ENTRIES,
    Heartbeat,
    chain_link,
    format_rfc3339,
    parse_rfc3339,
)


def _moment(value: Any) -> Any:
    return parse_rfc3339(value) if isinstance(value, str) else value


Moment = Annotated[float, BeforeValidator(_moment)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VenueSpec(_Spec):
    venue_id: str
    name: str = ""
    region: str
    type: str = "general"


class KioskSpec(_Spec):
    kiosk_id: str
    venue_id: str
    provisioned_at: Moment


class InspectorSpec(_Spec):
    name: str
    region: str


class PolicySpec(_Spec):
    """A policy published for a venue type; `changes` alter the built-in policy of the type."""

    venue_type: str = "general"
    policy_version: str
    published_at: Moment
    changes: dict[str, Any] = Field(default_factory=dict)


class EntrySpec(_Spec):
    id: str
    kiosk: str
    ts: Moment
    repeat: Annotated[int, Field(ge=1)] = 1
    every_s: float = 60.0
    received_at: Moment | None = None
    log: str = "main"
    decision: Literal["allow", "deny"] = "allow"
    subject: str | None = ""  # "": a person of its own (the entry's label); None: no subject
    code_format: Literal["vhc1", "dcc", "unknown", "none"] = "vhc1"
    code_status: Literal["green", "yellow", "red"] | None = "green"
    temperature_c: float | None = 36.6
    temperatures: list[float] | None = None  # cycled over the repeats
    mask: Literal["on", "off", "unchecked"] = "on"
    reasons: list[str] | None = None
    override: bool | str = False  # true, or the label of the deny it overrides
    policy_version: str | None = None
    clock_offset_ms: int | None = 0
    sent: bool = True
    chain: Literal["ok", "broken"] = "ok"


class HeartbeatSpec(_Spec):
    kiosk: str
    received_at: Moment
    repeat: Annotated[int, Field(ge=1)] = 1
    every_s: float = 60.0
    behind_s: float = 0.0
    log: str = "main"
    last_seq: int | None = None
    backlog: int = 0
    policy_version: str | None = None
    thermometer: Literal["ok", "fault"] = "ok"
    camera: Literal["ok", "fault"] = "ok"
    trust_age_s: float | None = 600.0


class WindowSpec(_Spec):
    since: Moment
    until: Moment


class Scenario(_Spec):
    description: str = ""
    now: Moment
    window: WindowSpec | None = None
    region: str = ""  # the region asked for; "" is the inspector's own
    silent_after_s: float = SILENT_AFTER_S
    venues: list[VenueSpec]
    kiosks: list[KioskSpec]
    inspectors: list[InspectorSpec] = Field(default_factory=list)
    policies: list[PolicySpec] = Field(default_factory=list)
    entries: list[EntrySpec] = Field(default_factory=list)
    heartbeats: list[HeartbeatSpec] = Field(default_factory=list)
    expected: dict[str, Any] | None = None

    @property
    def since(self) -> float:
        return self.window.since if self.window else self.now - DEFAULT_WINDOW_S

    @property
    def until(self) -> float:
        return self.window.until if self.window else self.now


def load_scenario(path: Path) -> Scenario:
    return Scenario.model_validate(json.loads(path.read_text(encoding="utf-8")))


# -- expansion into sync-api documents -------------------------------------------------------


def subject_of(label: str) -> str:
    return hashlib.sha256(label.encode("utf-8")).hexdigest()


def _uuid_from(digest: bytes, unix_ms: int | None) -> str:
    value = int.from_bytes(digest[:16], "big")
    if unix_ms is not None:  # version 7: time-ordered, as kiosks make them
        value = (unix_ms & ((1 << 48) - 1)) << 80 | (value & ((1 << 80) - 1))
        value = value & ~(0xF << 76) | 0x7 << 76
    else:
        value = value & ~(0xF << 76) | 0x4 << 76
    value = value & ~(0x3 << 62) | 0x2 << 62
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def entry_uuid(label: str, ts: float) -> str:
    return _uuid_from(hashlib.sha256(b"entry:" + label.encode()).digest(), round(ts * 1000))


def log_uuid(kiosk_id: str, label: str) -> str:
    return _uuid_from(hashlib.sha256(f"log:{kiosk_id}:{label}".encode()).digest(), None)


@dataclass(frozen=True)
class Step:
    """One thing the collector receives at `at` (its clock then)."""

    at: float
    kind: Literal["venue", "kiosk", "inspector", "policy", "entries", "heartbeat"]
    body: dict[str, Any]


@dataclass
class Expanded:
    steps: list[Step]
    label_of: dict[str, str] = field(default_factory=dict)  # entry UUID -> label


_STEP_ORDER = {"venue": 0, "kiosk": 1, "inspector": 2, "policy": 3, "entries": 4, "heartbeat": 5}


class _Policies:
    def __init__(self, scenario: Scenario) -> None:
        self.published: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for spec in sorted(scenario.policies, key=lambda p: p.published_at):
            self.published[spec.venue_type].append((spec.published_at, spec.policy_version))

    def version_at(self, venue_type: str, t: float) -> str:
        version = load_policy(venue_type).version
        for published_at, published in self.published.get(venue_type, []):
            if published_at <= t:
                version = published
        return version


def _entry_series(spec: EntrySpec) -> Iterator[tuple[str, float, float | None]]:
    for n in range(spec.repeat):
        label = spec.id if spec.repeat == 1 else f"{spec.id}.{n + 1}"
        temperature = spec.temperature_c
        if spec.temperatures:
            temperature = spec.temperatures[n % len(spec.temperatures)]
        yield label, spec.ts + n * spec.every_s, temperature


def _entry_body(
    spec: EntrySpec,
    label: str,
    ts: float,
    temperature: float | None,
    kiosk: KioskSpec,
    version: str,
    deny_ids: dict[str, str],
) -> dict[str, Any]:
    fmt = spec.code_format
    verdict = {"vhc1": "valid", "dcc": "valid", "unknown": "unknown_format", "none": "none"}[fmt]
    readable = fmt in ("vhc1", "dcc")
    has_subject = readable and spec.subject is not None
    override = None
    if spec.override:
        target = deny_ids.get(spec.override) if isinstance(spec.override, str) else None
        override = {
            "by": "attendant-1",
            "note": "let in by staff",
            "entry_id": target or entry_uuid(f"{label}:overridden", ts - 1),
        }
    reasons = spec.reasons
    if reasons is None:
        reasons = ["fever"] if spec.decision == "deny" or override else []
    return {
        "id": entry_uuid(label, ts),
        "log_id": log_uuid(kiosk.kiosk_id, spec.log),
        "seq": 0,
        "kiosk_id": kiosk.kiosk_id,
        "venue_id": kiosk.venue_id,
        "ts": format_rfc3339(ts),
        "clock_offset_ms": spec.clock_offset_ms,
        "code_format": fmt,
        "code_verdict": verdict,
        "code_status": spec.code_status if readable else None,
        "subject": subject_of(spec.subject or label) if has_subject else None,
        "subject_key_version": 1 if has_subject else None,
        "temperature_c": temperature,
        "mask": spec.mask,
        "decision": spec.decision,
        "reasons": reasons,
        "override": override,
        "policy_version": spec.policy_version or version,
    }


def _chain_logs(
    written: dict[tuple[str, str], list[tuple[float, int, dict[str, Any], EntrySpec]]],
) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Give each log's entries their seq and chain; returns (seq, ts) per log for heartbeats."""
    seqs: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for log_key, rows in written.items():
        rows.sort(key=lambda row: (row[0], row[1]))
        previous = "0" * 64
        for seq, (_ts, _order, body, spec) in enumerate(rows, start=1):
            body["seq"] = seq
            chain = chain_link(previous, body)
            if spec.chain == "broken":
                chain = hashlib.sha256(b"altered:" + chain.encode()).hexdigest()
            body["chain"] = chain
            previous = chain
        seqs[log_key] = [(seq, row[0]) for seq, row in enumerate(rows, start=1)]
    return seqs


def expand(scenario: Scenario) -> Expanded:
    """The scenario as the documents a collector receives, in receive order."""
    kiosks = {k.kiosk_id: k for k in scenario.kiosks}
    venue_type = {v.venue_id: v.type for v in scenario.venues}
    policies = _Policies(scenario)
    steps: list[Step] = []
    expanded = Expanded(steps)
    for venue in scenario.venues:
        steps.append(
            Step(min(k.provisioned_at for k in scenario.kiosks), "venue", venue.model_dump())
        )
    for kiosk in scenario.kiosks:
        steps.append(Step(kiosk.provisioned_at, "kiosk", kiosk.model_dump()))
    for inspector in scenario.inspectors:
        steps.append(
            Step(steps[0].at if steps else scenario.now, "inspector", inspector.model_dump())
        )
    for published in scenario.policies:
        doc = policy_to_doc(load_policy(published.venue_type)) | published.changes
        doc |= {"venue_type": published.venue_type, "policy_version": published.policy_version}
        steps.append(Step(published.published_at, "policy", doc))

    written: dict[tuple[str, str], list[tuple[float, int, dict[str, Any], EntrySpec]]]
    written = defaultdict(list)
    deny_ids: dict[str, str] = {}
    order = 0
    for spec in scenario.entries:
        kiosk = kiosks[spec.kiosk]
        for label, ts, temperature in _entry_series(spec):
            version = policies.version_at(venue_type[kiosk.venue_id], ts)
            body = _entry_body(spec, label, ts, temperature, kiosk, version, deny_ids)
            expanded.label_of[body["id"]] = label
            if spec.decision == "deny":
                deny_ids[label] = body["id"]
            written[(kiosk.kiosk_id, spec.log)].append((ts, order, body, spec))
            order += 1
    log_seqs = _chain_logs(written)

    batches: dict[tuple[float, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for rows in written.values():
        for ts, _order, body, spec in rows:
            if spec.sent:
                received = spec.received_at if spec.received_at is not None else ts
                batches[(received, body["kiosk_id"])].append((body["seq"], body))
    for (received, kiosk_id), items in batches.items():
        entries = [
            body for _seq, body in sorted(items, key=lambda item: (item[1]["log_id"], item[0]))
        ]
        steps.append(Step(received, "entries", {"kiosk_id": kiosk_id, "entries": entries}))

    for beat in scenario.heartbeats:
        kiosk = kiosks[beat.kiosk]
        for n in range(beat.repeat):
            received = beat.received_at + n * beat.every_s
            ts = received - beat.behind_s
            written_by_then = [
                s for s, t in log_seqs.get((kiosk.kiosk_id, beat.log), []) if t <= ts
            ]
            beat_body: dict[str, Any] = {
                "kiosk_id": kiosk.kiosk_id,
                "ts": format_rfc3339(ts),
                "log_id": log_uuid(kiosk.kiosk_id, beat.log),
                "last_seq": beat.last_seq
                if beat.last_seq is not None
                else max(written_by_then, default=0),
                "backlog": beat.backlog,
                "policy_version": beat.policy_version
                or policies.version_at(venue_type[kiosk.venue_id], received),
                "sensors": {"camera": beat.camera, "thermometer": beat.thermometer},
            }
            if beat.trust_age_s is not None:
                beat_body["trust_age_s"] = beat.trust_age_s
            steps.append(Step(received, "heartbeat", beat_body))
    steps.sort(key=lambda step: (step.at, _STEP_ORDER[step.kind]))
    return expanded


# -- the same scenario for the pure reference evaluator ---------------------------------------


def reference_facts(
    scenario: Scenario, expanded: Expanded
) -> tuple[list[KioskFacts], list[EntryFacts], list[HeartbeatFacts], Window]:
    """What the collector holds at `now` after `seed()`, as plain facts for `findings.evaluate`."""
    venue_type = {v.venue_id: v.type for v in scenario.venues}
    policies = _Policies(scenario)
    mask_now = {
        venue.venue_id: bool(_policy_doc(scenario, venue.type, scenario.now)["mask_required"])
        for venue in scenario.venues
    }
    kiosks = [
        KioskFacts(k.kiosk_id, k.venue_id, k.provisioned_at, mask_now[k.venue_id])
        for k in scenario.kiosks
    ]
    broken = {
        label
        for spec in scenario.entries
        if spec.chain == "broken"
        for label, _ts, _t in _entry_series(spec)
    }
    entries, heartbeats = [], []
    for step in expanded.steps:
        if step.at > scenario.now:
            continue
        if step.kind == "entries":
            for body in step.body["entries"]:
                entries.append(
                    EntryFacts(
                        id=body["id"],
                        kiosk_id=body["kiosk_id"],
                        venue_id=body["venue_id"],
                        ts=parse_rfc3339(body["ts"]),
                        log_id=body["log_id"],
                        seq=body["seq"],
                        decision=body["decision"],
                        subject=body["subject"],
                        code_format=body["code_format"],
                        temperature_c=body["temperature_c"],
                        mask=body["mask"],
                        override=body["override"] is not None,
                        chain_broken=expanded.label_of[body["id"]] in broken,
                    )
                )
        elif step.kind == "heartbeat":
            body = step.body
            venue = next(k.venue_id for k in scenario.kiosks if k.kiosk_id == body["kiosk_id"])
            heartbeats.append(
                HeartbeatFacts(
                    kiosk_id=body["kiosk_id"],
                    received_at=step.at,
                    ts=parse_rfc3339(body["ts"]),
                    log_id=body["log_id"],
                    last_seq=body["last_seq"],
                    policy_version=body["policy_version"],
                    published_version=policies.version_at(venue_type[venue], step.at),
                    thermometer=body["sensors"]["thermometer"],
                    trust_age_s=body.get("trust_age_s"),
                    max_trust_age_hours=float(
                        _policy_doc(scenario, venue_type[venue], step.at)["max_trust_age_hours"]
                    ),
                )
            )
    window = Window(scenario.since, scenario.until, scenario.now, scenario.silent_after_s)
    return kiosks, entries, heartbeats, window


def _policy_doc(scenario: Scenario, venue_type: str, t: float) -> dict[str, Any]:
    builtin = load_policy(venue_type)
    base = policy_to_doc(builtin) | {"max_trust_age_hours": builtin.max_trust_age_hours}
    doc = base
    for spec in sorted(scenario.policies, key=lambda p: p.published_at):
        if spec.venue_type == venue_type and spec.published_at <= t:
            doc = base | spec.changes  # each publication is a whole policy
    return doc


# -- seeding a collector ---------------------------------------------------------------------

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


# -- a ready-made scenario for the demo and the dashboard's tests -----------------------------

MISBEHAVING_VENUE = "daowai-0007"
CLEAN_VENUE = "nangang-0001"


def misbehaving_city(now: float, *, hours: float = 3.0) -> Scenario:
    """Two venues in two districts of harbin, a kiosk each, for the `hours` before `now`:
    `daowai-0007` misbehaves (its thermometer is stuck at 36.6 °C and an attendant lets in a
    visitor denied for not wearing a mask), `nangang-0001` is clean. Inspectors:
    `inspector-daowai`, `inspector-nangang` and `inspector-xiangfang` (whose district has
    neither). Seed it with `seed()`; `Seeded.tokens` has their tokens."""
    start = now - hours * 3600
    every = 300.0
    visits = max(20, int(hours * 3600 // every))
    return Scenario.model_validate(
        {
            "description": "A demo city: a unit that does not enforce the measures, one that does.",
            "now": now,
            "venues": [
                {
                    "venue_id": MISBEHAVING_VENUE,
                    "name": "Daowai Noodle House",
                    "region": "harbin/daowai",
                    "type": "general",
                },
                {
                    "venue_id": CLEAN_VENUE,
                    "name": "Nangang Library",
                    "region": "harbin/nangang",
                    "type": "general",
                },
            ],
            "kiosks": [
                {
                    "kiosk_id": f"k-{MISBEHAVING_VENUE}-a",
                    "venue_id": MISBEHAVING_VENUE,
                    "provisioned_at": start - 60,
                },
                {
                    "kiosk_id": f"k-{CLEAN_VENUE}-a",
                    "venue_id": CLEAN_VENUE,
                    "provisioned_at": start - 60,
                },
            ],
            "inspectors": [
                {"name": "inspector-daowai", "region": "harbin/daowai"},
                {"name": "inspector-nangang", "region": "harbin/nangang"},
                {"name": "inspector-xiangfang", "region": "harbin/xiangfang"},
            ],
            "entries": [
                {
                    "id": "stuck",
                    "kiosk": f"k-{MISBEHAVING_VENUE}-a",
                    "ts": start + 30,
                    "repeat": visits,
                    "every_s": every,
                    "temperature_c": 36.6,
                },
                {
                    "id": "no-mask",
                    "kiosk": f"k-{MISBEHAVING_VENUE}-a",
                    "ts": start + 1830,
                    "decision": "deny",
                    "temperature_c": 36.6,
                    "mask": "off",
                    "reasons": ["mask_off"],
                },
                {
                    "id": "let-in",
                    "kiosk": f"k-{MISBEHAVING_VENUE}-a",
                    "ts": start + 1860,
                    "override": "no-mask",
                    "temperature_c": 36.6,
                    "mask": "off",
                    "reasons": ["mask_off"],
                },
                {
                    "id": "visit",
                    "kiosk": f"k-{CLEAN_VENUE}-a",
                    "ts": start + 45,
                    "repeat": visits,
                    "every_s": every,
                    "temperatures": [36.3, 36.6, 36.9, 36.5],
                },
                {
                    "id": "cold",
                    "kiosk": f"k-{CLEAN_VENUE}-a",
                    "ts": start + 1545,
                    "decision": "deny",
                    "temperature_c": 37.9,
                },
            ],
            "heartbeats": [
                {
                    "kiosk": f"k-{venue}-a",
                    "received_at": start,
                    "repeat": int(hours * 60) + 1,
                    "every_s": 60.0,
                }
                for venue in (MISBEHAVING_VENUE, CLEAN_VENUE)
            ],
        }
    )
