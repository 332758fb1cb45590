"""A scenario expanded into the exact sync-api documents a collector receives (ids, seqs and hash
chains made as a kiosk's log makes them), in receive order; and the same scenario as plain
facts for the pure reference evaluator, kiosk.findings.evaluate."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from kiosk.collector.scenario.spec import EntrySpec, KioskSpec, Scenario
from kiosk.findings import EntryFacts, HeartbeatFacts, KioskFacts, Window
from kiosk.policies import load_policy, policy_to_doc
from kiosk.wire import chain_link, format_rfc3339, parse_rfc3339


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
    # The collector judges a link when it holds the predecessor (seq 1 follows the genesis).
    held = {
        (body["log_id"], body["seq"])
        for step in expanded.steps
        if step.kind == "entries" and step.at <= scenario.now
        for body in step.body["entries"]
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
                        chain_broken=expanded.label_of[body["id"]] in broken
                        and (body["seq"] == 1 or (body["log_id"], body["seq"] - 1) in held),
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
