"""A city's collector database for bench/query.py, written fast: the rows the storage's ingest
would write (entries with their flags and links, hourly rollups, counts by reason, log runs,
heartbeats judged on arrival, the latest heartbeat per kiosk, excess code uses), generated in
Python and bulk-inserted straight into the migrated schema (executemany on SQLite, COPY on
PostgreSQL) instead of through HTTP, which would take hours at 10 M entries on two cores.

The city: `venues` venues in 20 districts of `harbin`, one kiosk each and a second at every
fifth; each venue sees `PER_VENUE_DAY` entries a day, so a history of N entries spans
N / (venues × PER_VENUE_DAY) days before `NOW`; heartbeats every minute for the last 25 hours.
About 6% of the venues misbehave, each in one way that one rule is about (PROFILES).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kiosk.collector.storage import base
from kiosk.findings import PLAUSIBLE_MAX_C, PLAUSIBLE_MIN_C, excess_uses
from kiosk.wire import parse_rfc3339

NOW = parse_rfc3339("2022-03-05T12:30:00Z")  # half past: the window's ends cut hours
DAY_S = 86400.0
HOUR_S = 3600
PER_VENUE_DAY = 100
HEARTBEATS_FOR_S = 25 * 3600
DISTRICTS = 20
PROFILES = {
    1: "override",
    2: "code_reuse",
    3: "unchecked",
    4: "stuck",
    5: "implausible",
    6: "thermometer_fault",
    7: "silent",
    8: "stale_trust",
    9: "policy_drift",
    10: "clock_skew",
    11: "log_gap",
    12: "broken_chain",
}
MISBEHAVING_EVERY = 200  # venue v misbehaves as PROFILES[v % 200]

ENTRY_COLUMNS = (
    "id", "ts", "kiosk_id", "venue_id", "log_id", "seq", "received_at", "decision",
    "has_override", "flags", "subject", "temperature_c", "mask", "code_format", "code_verdict",
    "code_status", "policy_version", "link", "chain", "body",
)  # fmt: skip
HOUR_COLUMNS = (
    "kiosk_id", "hour", "venue_id", "entries", "allows", "denies", "overrides", "no_code",
    "no_temperature", "mask_unchecked", "unchecked", "unchecked_with_mask", "readings",
    "readings_sum_dc", "readings_sumsq_dc", "implausible",
)  # fmt: skip
REASON_COLUMNS = ("kiosk_id", "hour", "decision", "reason", "entries")
LOG_COLUMNS = (
    "log_id", "kiosk_id", "venue_id", "first_received_at", "last_received_at", "max_seq", "held",
    "runs",
)  # fmt: skip
RUN_COLUMNS = ("log_id", "first_seq", "last_seq", "last_chain")
HEARTBEAT_COLUMNS = (
    "kiosk_id", "venue_id", "received_at", "ts", "offset_s", "log_id", "last_seq", "backlog",
    "policy_version", "published_policy_version", "max_trust_age_hours", "camera",
    "thermometer", "trust_age_s", "set_aside", "storage_used_ratio", "software", "flags",
    "gap_s", "drift_since", "body",
)  # fmt: skip
STATE_COLUMNS = (
    "kiosk_id", "venue_id", "first_received_at", "last_received_at", "last_ts", "last_offset_s",
    "log_id", "last_seq", "backlog", "policy_version", "drift_since", "heartbeats", "body",
)  # fmt: skip
REUSE_COLUMNS = ("entry_id", "kiosk_id", "venue_id", "ts")
CHAIN = "5" * 64


def profile(venue: int) -> str:
    return PROFILES.get(venue % MISBEHAVING_EVERY, "clean")


def venue_id(venue: int) -> str:
    return f"v{venue:05d}"


def kiosks_of(venue: int) -> list[str]:
    return [f"k{venue:05d}a"] + ([f"k{venue:05d}b"] if venue % 5 == 0 else [])


def region_of(venue: int) -> str:
    return f"harbin/d{venue % DISTRICTS:02d}"


def _uuid(high: int, low: int) -> str:
    """A version 7 UUID text: `high` as the 48-bit time, `low` as the rest."""
    time_part = f"{high & (2**48 - 1):012x}"
    rand_a = f"{low >> 64 & 0xFFF:03x}"
    rand_b = f"{0x8000 | low >> 48 & 0x3FFF:04x}{low & (2**48 - 1):012x}"
    text = f"{time_part}7{rand_a}{rand_b}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def log_uuid(kiosk_number: int, phase: int) -> str:
    return _uuid(kiosk_number, phase << 60 | 1)


@dataclass
class Tables:
    """Rows for every table but entries (entries are streamed in chunks)."""

    hours: list[tuple[Any, ...]] = field(default_factory=list)
    reasons: list[tuple[Any, ...]] = field(default_factory=list)
    logs: list[tuple[Any, ...]] = field(default_factory=list)
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    reuse: list[tuple[Any, ...]] = field(default_factory=list)
    heartbeats: list[tuple[Any, ...]] = field(default_factory=list)
    states: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class Phase:
    """Entries of every kiosk in `[start, end)`, `per_kiosk_day` a day, in log `phase`."""

    start: float
    end: float
    phase: int


def _body(r: dict[str, Any]) -> str:
    t = "null" if r["temperature_c"] is None else f"{r['temperature_c']:g}"
    subject = "null" if r["subject"] is None else f'"{r["subject"]}"'
    reasons = ",".join(f'"{x}"' for x in r["reasons"])
    override = (
        'null' if not r["has_override"] else
        '{"by":"attendant-1","entry_id":"00000000-0000-7000-8000-000000000000","note":"staff"}'
    )  # fmt: skip
    return (
        f'{{"clock_offset_ms":-120,"code_format":"{r["code_format"]}","code_status":"green",'
        f'"code_verdict":"valid","decision":"{r["decision"]}","id":"{r["id"]}",'
        f'"kiosk_id":"{r["kiosk_id"]}","log_id":"{r["log_id"]}","mask":"{r["mask"]}",'
        f'"override":{override},"policy_version":"default-1","reasons":[{reasons}],'
        f'"seq":{r["seq"]},"subject":{subject},"subject_key_version":1,'
        f'"temperature_c":{t},"ts":"2022-03-05T00:00:00.000Z","venue_id":"{r["venue_id"]}"}}'
    )


def _visits(
    rng: random.Random, prof: str, start: float, end: float, n: int
) -> list[tuple[float, str]]:
    """(ts, kind) of one kiosk's decisions in [start, end), in ts order."""
    step = (end - start) / max(1, n)
    visits = [(start + (i + rng.random()) * step, "visit") for i in range(n)]
    if prof == "override":  # every hundredth visit denied for a fever, then let in by staff
        for i in range(50, n, 100):
            t = visits[i][0]
            visits[i] = (t, "denied")
            visits.append((t + 30.0, "override"))
    if prof == "code_reuse":
        first_day = math.ceil(start / DAY_S)
        for day in range(first_day, math.ceil(end / DAY_S)):
            at = day * DAY_S + 10 * HOUR_S  # 10:00 every day: one code, 5 times in 8 minutes
            if start <= at and at + 480 < end:
                visits += [(at + 120.0 * k, "reuse") for k in range(5)]
    visits.sort()
    return visits


@dataclass
class KioskLog:
    kiosk: str
    number: int
    venue: int
    log_id: str
    seqs_ts: list[tuple[int, float]] = field(default_factory=list)  # (seq, ts) of what was written


def kiosk_entries(
    kiosk: str, number: int, venue: int, phase: Phase, n: int, tables: Tables
) -> tuple[Iterator[tuple[Any, ...]], KioskLog]:
    """The entry rows of one kiosk in `phase` (lazy), adding its rollups, log and excess uses to
    `tables`."""
    prof = profile(venue)
    rng = random.Random(number * 7919 + phase.phase)
    log = KioskLog(kiosk, number, venue, log_uuid(number, phase.phase))
    return _entry_rows(kiosk, number, venue, prof, rng, phase, n, log, tables), log


def _entry_rows(
    kiosk: str,
    number: int,
    venue: int,
    prof: str,
    rng: random.Random,
    phase: Phase,
    n: int,
    log: KioskLog,
    tables: Tables,
) -> Iterator[tuple[Any, ...]]:
    hours: dict[int, list[int]] = defaultdict(lambda: [0] * 13)
    reasons: dict[tuple[int, str, str], int] = defaultdict(int)
    held: list[int] = []
    reuse: list[tuple[float, str]] = []
    vid = venue_id(venue)
    for seq, (ts, kind) in enumerate(_visits(rng, prof, phase.start, phase.end, n), start=1):
        log.seqs_ts.append((seq, ts))
        if prof == "log_gap" and seq % 50 == 25:
            continue  # written at the kiosk, set aside, never received
        decision, why, flags, override = "allow", (), 0, False
        temperature: float | None = round(36.1 + 0.1 * rng.randrange(11), 1)
        subject: str | None = f"{number:016x}{phase.phase:08x}{seq:040x}"
        if kind == "denied":
            decision, why, temperature = "deny", ("fever",), 37.8
        elif kind == "override":
            decision, why, flags, override, temperature = "allow", ("fever",), 1, True, 37.8
        elif kind == "reuse":
            subject = f"{number:016x}{int(ts // DAY_S):048x}"
        elif rng.random() < 0.02:
            decision, why, temperature = "deny", ("fever",), 37.6
        if prof == "stuck":
            temperature = 36.6
        elif prof == "implausible" and seq % 3 == 0:
            decision, why, temperature = "deny", ("temperature_implausible",), 33.0
        elif prof == "unchecked" and seq % 50 == 0 and decision == "allow":
            temperature, flags = None, flags | base.ENTRY_NO_TEMPERATURE
        link = "ok"
        if prof == "broken_chain" and seq % 100 == 50:
            link, flags = "broken", flags | base.ENTRY_BROKEN_CHAIN
        entry_id = _uuid(int(ts * 1000), number << 40 | seq)
        if kind == "reuse":
            reuse.append((ts, entry_id))
        row = {
            "id": entry_id, "ts": ts, "kiosk_id": kiosk, "venue_id": vid, "log_id": log.log_id,
            "seq": seq, "received_at": ts + 2.0, "decision": decision, "has_override": override,
            "flags": flags, "subject": subject, "temperature_c": temperature, "mask": "on",
            "code_format": "vhc1", "code_verdict": "valid", "code_status": "green",
            "policy_version": "default-1", "link": link, "chain": CHAIN, "reasons": why,
        }  # fmt: skip
        row["body"] = _body(row)
        held.append(seq)
        hour = int(ts // HOUR_S) * HOUR_S
        _roll(hours[hour], decision, flags, temperature)
        for reason in why:
            reasons[(hour, decision, reason)] += 1
        yield tuple(row[c] for c in ENTRY_COLUMNS)
    vid = venue_id(venue)
    for hour, sums in hours.items():
        tables.hours.append((kiosk, hour, vid, *sums))
    for (hour, decision, reason), count in reasons.items():
        tables.reasons.append((kiosk, hour, decision, reason, count))
    for ts, entry_id in excess_uses(reuse):
        tables.reuse.append((entry_id, kiosk, vid, ts))
    runs = _runs(held)
    tables.runs += [(log.log_id, a, b, CHAIN) for a, b in runs]
    if held:
        tables.logs.append(
            (log.log_id, kiosk, vid, phase.start, phase.end, max(held), len(held), len(runs))
        )


def _roll(sums: list[int], decision: str, flags: int, temperature: float | None) -> None:
    sums[0] += 1
    sums[1 if decision == "allow" else 2] += 1
    if flags & base.ENTRY_OVERRIDE:
        sums[3] += 1
    if flags & base.ENTRY_NO_TEMPERATURE:
        sums[5] += 1
        sums[7] += 1
        sums[8] += 1
    if temperature is not None:
        tenths = round(temperature * 10)
        sums[9] += 1
        sums[10] += tenths
        sums[11] += tenths * tenths
        if temperature < PLAUSIBLE_MIN_C or temperature > PLAUSIBLE_MAX_C:
            sums[12] += 1


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def heartbeats(log: KioskLog, every_s: float, tables: Tables) -> None:
    """One kiosk's heartbeats over the last 25 hours, judged as the storage judges them."""
    prof = profile(log.venue)
    vid = venue_id(log.venue)
    start = NOW - HEARTBEATS_FOR_S + (log.number % 60)
    previous: float | None = None
    drift_since: float | None = None
    written = log.seqs_ts
    index = 0
    count = 0
    body = (
        '{"backlog":0,"camera":"ok","last_seq":0,"policy_version":"default-1",'
        '"software":"kiosk 0.1.0"}'
    )
    received = start
    last: tuple[Any, ...] | None = None
    first_received: float | None = None
    while received < NOW:
        if prof == "silent" and NOW - 10 * 3600 <= received < NOW - 8 * 3600:
            received += every_s
            continue
        while index < len(written) and written[index][1] <= received:
            index += 1
        last_seq = written[index - 1][0] if index else 0
        ts = received - 300.0 if prof == "clock_skew" else received - 0.2
        thermometer = "fault" if prof == "thermometer_fault" and received > NOW - 6 * 3600 else "ok"
        trust_age = 200_000.0 if prof == "stale_trust" else 900.0
        version = "default-0" if prof == "policy_drift" else "default-1"
        flags = 0
        if thermometer == "fault":
            flags |= base.HEARTBEAT_THERMOMETER_FAULT
        if trust_age > 48 * 3600:
            flags |= base.HEARTBEAT_STALE_TRUST
        if abs(received - ts) > 120:
            flags |= base.HEARTBEAT_CLOCK_SKEW
        if version != "default-1":
            flags |= base.HEARTBEAT_POLICY_MISMATCH
            drift_since = received if drift_since is None else drift_since
            if received - drift_since > 3600:
                flags |= base.HEARTBEAT_POLICY_DRIFT
        gap = None if previous is None else received - previous
        if gap is not None and gap > 900:
            flags |= base.HEARTBEAT_AFTER_SILENCE
        last = (
            log.kiosk, vid, received, ts, received - ts, log.log_id, last_seq, 0, version,
            "default-1", 48.0, "ok", thermometer, trust_age, 0, 0.01, "kiosk 0.1.0", flags, gap,
            drift_since, body,
        )  # fmt: skip
        tables.heartbeats.append(last)
        first_received = received if first_received is None else first_received
        previous = received
        count += 1
        received += every_s
    if last is not None and first_received is not None:
        tables.states.append(
            (log.kiosk, vid, first_received, last[2], last[3], last[4], log.log_id, last[6], 0,
             last[8], drift_since, count, body)
        )  # fmt: skip
