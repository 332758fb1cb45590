"""The findings rules of sync-api.md: what makes a unit non-compliant, in order of severity.

Pure definitions shared by the collector's queries, its API, the dashboard and the CLI: the rule
names, their order, their thresholds, how each is said in plain words, and a reference evaluator
over plain data (`evaluate`). The collector counts in the database (kiosk.collector.findings),
never by loading entries into Python; the reference evaluator states the same semantics in a few
lines so that tests can hold the SQL to it.

Exact semantics, where the spec leaves room (all times are Unix seconds, compared exactly):

* The window is half-open, `[since, until)`. Entries are placed by their `ts` (the kiosk's clock),
  heartbeats by the collector's receive time. "Now" is the collector's clock at the query; nothing
  after `min(until, now)` is assumed.
* Every finding is `{rule, kind, kiosk_id, count, first, last, sample_entry_ids}`. `kind` names
  which condition of the rule held (a rule with several conditions gives one finding per kind and
  kiosk). `sample_entry_ids` holds up to `SAMPLE_SIZE` ids of the offending entries, earliest
  first, for entry rules; it is empty for heartbeat rules.
* Entry rules (`count` = offending entries, `first`/`last` = their earliest and latest `ts`):
  - override_entries/override: entries with a non-null `override`.
  - code_reuse/reuse: allows of one subject at one venue, ordered by (`ts`, `id`); an allow is an
    excess use when at least 3 earlier allows of that subject at that venue lie less than 600 s
    before it (any 10 minutes means a half-open span `[t, t + 600)`: four allows at 0, 200, 400
    and 599.9 s are a finding, four at 0, 200, 400 and 600 s are not). Excess uses are reported at
    the kiosk that made them; the earlier allows may lie before the window.
  - unchecked_entries/unchecked: allows with `code_format` `none`, or `temperature_c` null, or
    `mask` `unchecked` while the policy published now for the venue's type requires a mask. An
    override that lets in someone without a code is both an override and an unchecked entry.
  - thermometer_fault/stuck: at least 20 readings (non-null `temperature_c`, any decision) at the
    kiosk in the window and their population standard deviation under 0.05 °C; `count` = readings.
  - thermometer_fault/implausible: more than 20% of those readings below 34.0 or above 42.5 °C
    (34.0 and 42.5 are plausible); `count` = the implausible readings.
  - log_gap/broken_chain: entries whose `chain` does not follow from the predecessor the
    collector holds (seq - 1 of the same log).
* Heartbeat rules (`count` = heartbeats received in the window that show the condition, `first`/
  `last` = their receive times). A heartbeat is judged when it arrives, against what is then in
  force (the published policy, `max_trust_age_hours`, `silent_after`); a later publication does
  not change how an earlier heartbeat reads:
  - thermometer_fault/reported_fault: `sensors.thermometer` is `fault`.
  - stale_trust/stale: `trust_age_s` over the `max_trust_age_hours` of the venue's type in force
    when the heartbeat arrived.
  - policy_drift/drift: the heartbeat reports another `policy_version` than the one published for
    the venue's type when it arrived, and so has every heartbeat of the kiosk since one received
    more than 1 hour before it (the run of drifting heartbeats is broken only by a heartbeat that
    reports the published version).
  - clock_skew/skew: `ts` off the receive time by more than 120 s (120.000 s is fine).
* log_gap/missing_seq: for each `log_id` of the kiosk, take the heartbeats received in the
  window at least 1 hour before now (exactly 1 hour counts); a seq below the highest `last_seq`
  they report that the collector does not hold now is missing. `count` = missing seqs;
  `first`/`last` = receive times of the earliest and latest of those heartbeats that reported a
  `last_seq` above a missing seq. A seq that arrives late stops being missing (the finding
  describes the log as it is now). The collector relies on a log's `last_seq` never going down
  (a kiosk starts a new `log_id` when its log is replaced): it looks only at logs with a hole
  below their highest held seq or whose latest heartbeat reports more than they hold, and takes
  the latest heartbeat's `last_seq` as the highest reported.
* silent_kiosk/silent: the observed part of the window is `[max(since, provisioned_at),
  min(until, now))`. It is cut at every heartbeat receive time; each piece longer than
  `silent_after` (exactly `silent_after` is fine) is a silent stretch. `count` = stretches,
  `first` = start of the first, `last` = end of the last.

Units are ordered most severe first: by the total count of their most severe rule, rule by rule
in table order (a unit with any override finding comes before every unit without one), then by
venue id. Within a unit, findings go by rule, then larger count, then kiosk id and kind.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from itertools import pairwise
from typing import Any


class Rule(StrEnum):
    """In order of severity, most severe first (the order of the spec's table)."""

    OVERRIDE_ENTRIES = "override_entries"
    CODE_REUSE = "code_reuse"
    LOG_GAP = "log_gap"
    UNCHECKED_ENTRIES = "unchecked_entries"
    THERMOMETER_FAULT = "thermometer_fault"
    SILENT_KIOSK = "silent_kiosk"
    STALE_TRUST = "stale_trust"
    POLICY_DRIFT = "policy_drift"
    CLOCK_SKEW = "clock_skew"


SEVERITY = {rule: rank for rank, rule in enumerate(Rule)}

# code_reuse: one subject allowed more than this many times within the window, at one venue.
CODE_REUSE_MAX_ALLOWS = 3
CODE_REUSE_WINDOW_S = 600
# log_gap: a missing seq counts once this long has passed since the heartbeat that reported it.
LOG_GAP_GRACE_S = 3600
# thermometer_fault: stuck (enough readings, tiny spread) or too many implausible readings.
STUCK_MIN_READINGS = 20
STUCK_MAX_STDDEV_C = 0.05
STUCK_MAX_VARIANCE_TENTHS = Fraction(1, 4)  # (0.05 °C = 0.5 tenths of a degree)², exactly
IMPLAUSIBLE_MAX_SHARE = 0.20
PLAUSIBLE_MIN_C = 34.0
PLAUSIBLE_MAX_C = 42.5
# silent_kiosk default (collector config `findings.silent_after` overrides it).
SILENT_AFTER_S = 15 * 60
# policy_drift: reporting another policy_version for longer than this.
POLICY_DRIFT_AFTER_S = 3600
# clock_skew: a heartbeat's ts off the receive time by more than this.
CLOCK_SKEW_MAX_S = 120
# At most this many offending entry ids travel with a finding (the unit page shows the rest).
SAMPLE_SIZE = 5
# The default window of the inspectors' queries.
DEFAULT_WINDOW_S = 24 * 3600


class Kind(StrEnum):
    """Which condition of a rule held."""

    OVERRIDE = "override"
    REUSE = "reuse"
    MISSING_SEQ = "missing_seq"
    BROKEN_CHAIN = "broken_chain"
    UNCHECKED = "unchecked"
    STUCK = "stuck"
    IMPLAUSIBLE = "implausible"
    REPORTED_FAULT = "reported_fault"
    SILENT = "silent"
    STALE = "stale"
    DRIFT = "drift"
    SKEW = "skew"


# Kinds whose evidence is heartbeats (or their absence): no sample entry ids.
HEARTBEAT_KINDS = frozenset(
    {Kind.MISSING_SEQ, Kind.REPORTED_FAULT, Kind.SILENT, Kind.STALE, Kind.DRIFT, Kind.SKEW}
)

RULE_OF_KIND: dict[Kind, Rule] = {
    Kind.OVERRIDE: Rule.OVERRIDE_ENTRIES,
    Kind.REUSE: Rule.CODE_REUSE,
    Kind.MISSING_SEQ: Rule.LOG_GAP,
    Kind.BROKEN_CHAIN: Rule.LOG_GAP,
    Kind.UNCHECKED: Rule.UNCHECKED_ENTRIES,
    Kind.STUCK: Rule.THERMOMETER_FAULT,
    Kind.IMPLAUSIBLE: Rule.THERMOMETER_FAULT,
    Kind.REPORTED_FAULT: Rule.THERMOMETER_FAULT,
    Kind.SILENT: Rule.SILENT_KIOSK,
    Kind.STALE: Rule.STALE_TRUST,
    Kind.DRIFT: Rule.POLICY_DRIFT,
    Kind.SKEW: Rule.CLOCK_SKEW,
}

PLAIN_WORDS: dict[Rule, dict[str, str]] = {
    Rule.OVERRIDE_ENTRIES: {
        "en": "Staff let people in whom the rule had denied",
        "zh": "工作人员放行了被拒绝的人员",
    },
    Rule.CODE_REUSE: {
        "en": "One health code let in more than 3 times within 10 minutes",
        "zh": "同一健康码10分钟内放行超过3次",
    },
    Rule.LOG_GAP: {
        "en": "Entries missing from the kiosk's log, or the log was altered",
        "zh": "终端记录缺失或被篡改",
    },
    Rule.UNCHECKED_ENTRIES: {
        "en": "People let in without every required check",
        "zh": "未完成必检项目即放行",
    },
    Rule.THERMOMETER_FAULT: {
        "en": "Thermometer stuck, implausible or reported faulty",
        "zh": "体温计读数异常或故障",
    },
    Rule.SILENT_KIOSK: {
        "en": "Kiosk silent for longer than allowed",
        "zh": "终端长时间未上报",
    },
    Rule.STALE_TRUST: {
        "en": "Kiosk could not verify codes: its trust list was too old",
        "zh": "终端信任列表过期，无法核验健康码",
    },
    Rule.POLICY_DRIFT: {
        "en": "Kiosk ran another policy than the one published",
        "zh": "终端执行的策略与发布的不一致",
    },
    Rule.CLOCK_SKEW: {
        "en": "Kiosk clock off by more than 2 minutes",
        "zh": "终端时钟偏差超过2分钟",
    },
}

KIND_WORDS: dict[Kind, dict[str, str]] = {
    Kind.OVERRIDE: {"en": "overridden denials", "zh": "人工放行"},
    Kind.REUSE: {"en": "repeated uses of one code", "zh": "重复使用同一健康码"},
    Kind.MISSING_SEQ: {"en": "entries never received", "zh": "记录未上传"},
    Kind.BROKEN_CHAIN: {"en": "entries that break the hash chain", "zh": "哈希链断裂"},
    Kind.UNCHECKED: {"en": "entries lacking a required check", "zh": "缺少必检项目"},
    Kind.STUCK: {"en": "readings that never change", "zh": "读数固定不变"},
    Kind.IMPLAUSIBLE: {"en": "implausible readings", "zh": "读数不合理"},
    Kind.REPORTED_FAULT: {"en": "heartbeats reporting a fault", "zh": "上报故障"},
    Kind.SILENT: {"en": "silent stretches", "zh": "未上报时段"},
    Kind.STALE: {"en": "heartbeats with a stale trust list", "zh": "信任列表过期"},
    Kind.DRIFT: {"en": "heartbeats on another policy", "zh": "策略不一致"},
    Kind.SKEW: {"en": "heartbeats with a skewed clock", "zh": "时钟偏差"},
}


# -- the thresholds, as predicates (the SQL applies the same constants) ---------------------------


def implausible(temperature_c: float) -> bool:
    return temperature_c < PLAUSIBLE_MIN_C or temperature_c > PLAUSIBLE_MAX_C


def stuck_from_sums(readings: int, sum_tenths: int, sum_sq_tenths: int) -> bool:
    """At least 20 readings with a population standard deviation under 0.05 °C, from the sums of
    the readings in tenths of a degree (readings are whole tenths, so this is exact integer
    arithmetic: variance < 0.5² tenths² ⟺ 4·(n·Σx² − (Σx)²) < n²)."""
    if readings < STUCK_MIN_READINGS:
        return False
    spread = readings * sum_sq_tenths - sum_tenths * sum_tenths  # n² times the variance
    limit = STUCK_MAX_VARIANCE_TENTHS
    return spread * limit.denominator < limit.numerator * readings * readings


def tenths(temperature_c: float) -> int:
    return round(temperature_c * 10)


def stuck(temperatures: Iterable[float]) -> bool:
    values = [tenths(t) for t in temperatures]
    return stuck_from_sums(len(values), sum(values), sum(v * v for v in values))


def too_many_implausible(readings: int, implausible_readings: int) -> bool:
    """Over 20% of the readings implausible (compared in integers: no rounding at 20% exactly)."""
    return readings > 0 and implausible_readings * 5 > readings


def clock_skewed(kiosk_ts: float, received_at: float) -> bool:
    return abs(received_at - kiosk_ts) > CLOCK_SKEW_MAX_S


def trust_stale(trust_age_s: float | None, max_trust_age_hours: float) -> bool:
    return trust_age_s is not None and trust_age_s > max_trust_age_hours * 3600


def silent_stretches(
    received_at: Iterable[float],
    provisioned_at: float,
    since: float,
    until: float,
    now: float,
    silent_after_s: float = SILENT_AFTER_S,
) -> list[tuple[float, float]]:
    """The stretches longer than `silent_after_s` without a heartbeat in the observed window."""
    start, end = max(since, provisioned_at), min(until, now)
    if end <= start:
        return []
    cuts = sorted({t for t in received_at if start < t < end})
    bounds = [start, *cuts, end]
    return [(a, b) for a, b in pairwise(bounds) if b - a > silent_after_s]


def excess_uses(allows: Iterable[tuple[float, str]]) -> list[tuple[float, str]]:
    """Of the allows (ts, id) of one subject at one venue, those that are at least the fourth
    within less than 10 minutes."""
    ordered = sorted(allows)
    times = [ts for ts, _ in ordered]
    excess = []
    for index, (ts, entry_id) in enumerate(ordered):
        earlier = index - bisect.bisect_right(times, ts - CODE_REUSE_WINDOW_S, 0, index)
        if earlier >= CODE_REUSE_MAX_ALLOWS:
            excess.append((ts, entry_id))
    return excess


# -- findings and their order -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    kind: Kind
    kiosk_id: str
    count: int
    first: float
    last: float
    sample_entry_ids: tuple[str, ...] = ()

    def sort_key(self) -> tuple[int, int, str, str]:
        return (SEVERITY[self.rule], -self.count, self.kiosk_id, self.kind.value)


def finding_of(
    kind: Kind, kiosk_id: str, evidence: Sequence[tuple[float, str]], with_samples: bool
) -> Finding:
    """A finding from its evidence (time, entry id or ""), in any order."""
    ordered = sorted(evidence)
    samples = tuple(i for _, i in ordered[:SAMPLE_SIZE]) if with_samples else ()
    return Finding(
        RULE_OF_KIND[kind], kind, kiosk_id, len(ordered), ordered[0][0], ordered[-1][0], samples
    )


def unit_sort_key(venue_id: str, findings: Iterable[Finding]) -> tuple[Any, ...]:
    """Most severe first: rule by rule in table order, the larger total count first."""
    totals = [0] * len(Rule)
    for finding in findings:
        totals[SEVERITY[finding.rule]] += finding.count
    return (*(-total for total in totals), venue_id)


def order_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=Finding.sort_key)


# -- the reference evaluator over plain data ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryFacts:
    id: str
    kiosk_id: str
    venue_id: str
    ts: float
    log_id: str = ""
    seq: int = 0
    decision: str = "allow"
    subject: str | None = None
    code_format: str = "vhc1"
    temperature_c: float | None = 36.6
    mask: str = "on"
    override: bool = False
    chain_broken: bool = False


@dataclass(frozen=True, slots=True)
class HeartbeatFacts:
    """A heartbeat and what was in force when it arrived (the published policy version and the
    venue type's `max_trust_age_hours`)."""

    kiosk_id: str
    received_at: float
    ts: float
    log_id: str
    last_seq: int
    policy_version: str
    published_version: str
    thermometer: str = "ok"
    trust_age_s: float | None = None
    max_trust_age_hours: float = 48.0


@dataclass(frozen=True, slots=True)
class KioskFacts:
    kiosk_id: str
    venue_id: str
    provisioned_at: float
    mask_required: bool = True  # by the policy published now for its venue's type


@dataclass(frozen=True, slots=True)
class Window:
    since: float
    until: float
    now: float
    silent_after_s: float = SILENT_AFTER_S

    def holds(self, t: float) -> bool:
        return self.since <= t < self.until


@dataclass
class _Evidence:
    """Offending entries and heartbeats by (kind, kiosk), plus findings of stretches and gaps
    (their count is not a number of items)."""

    items: dict[tuple[Kind, str], list[tuple[float, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    aggregates: list[Finding] = field(default_factory=list)

    def add(self, kind: Kind, kiosk_id: str, t: float, entry_id: str = "") -> None:
        self.items[(kind, kiosk_id)].append((t, entry_id))


def _unchecked(entry: EntryFacts, mask_required: bool) -> bool:
    return entry.decision == "allow" and (
        entry.code_format == "none"
        or entry.temperature_c is None
        or (entry.mask == "unchecked" and mask_required)
    )


def _entry_evidence(
    entries: Sequence[EntryFacts], kiosks: Mapping[str, KioskFacts], window: Window, ev: _Evidence
) -> None:
    allows: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    kiosk_of = {entry.id: entry.kiosk_id for entry in entries}
    readings: dict[str, list[EntryFacts]] = defaultdict(list)
    for entry in entries:
        if entry.decision == "allow" and entry.subject is not None:
            allows[(entry.venue_id, entry.subject)].append((entry.ts, entry.id))
        if not window.holds(entry.ts):
            continue
        if entry.override:
            ev.add(Kind.OVERRIDE, entry.kiosk_id, entry.ts, entry.id)
        if entry.chain_broken:
            ev.add(Kind.BROKEN_CHAIN, entry.kiosk_id, entry.ts, entry.id)
        if _unchecked(entry, kiosks[entry.kiosk_id].mask_required):
            ev.add(Kind.UNCHECKED, entry.kiosk_id, entry.ts, entry.id)
        if entry.temperature_c is not None:
            readings[entry.kiosk_id].append(entry)
    for uses in allows.values():
        for ts, entry_id in excess_uses(uses):
            if window.holds(ts):
                ev.add(Kind.REUSE, kiosk_of[entry_id], ts, entry_id)
    for kiosk_id, kiosk_readings in readings.items():
        values = [e.temperature_c for e in kiosk_readings if e.temperature_c is not None]
        if stuck(values):
            for e in kiosk_readings:
                ev.add(Kind.STUCK, kiosk_id, e.ts, e.id)
        bad = [
            e
            for e in kiosk_readings
            if e.temperature_c is not None and implausible(e.temperature_c)
        ]
        if too_many_implausible(len(values), len(bad)):
            for e in bad:
                ev.add(Kind.IMPLAUSIBLE, kiosk_id, e.ts, e.id)


def _drift_evidence(beats: Sequence[HeartbeatFacts], window: Window, ev: _Evidence) -> None:
    run_start: float | None = None
    for beat in sorted(beats, key=lambda b: b.received_at):
        if beat.policy_version == beat.published_version:
            run_start = None
            continue
        if run_start is None:
            run_start = beat.received_at
        if beat.received_at - run_start > POLICY_DRIFT_AFTER_S and window.holds(beat.received_at):
            ev.add(Kind.DRIFT, beat.kiosk_id, beat.received_at)


def _missing_seq_evidence(
    kiosk_id: str,
    beats: Sequence[HeartbeatFacts],
    held: Mapping[str, set[int]],
    window: Window,
    ev: _Evidence,
) -> None:
    by_log: dict[str, list[HeartbeatFacts]] = defaultdict(list)
    for beat in beats:
        if window.holds(beat.received_at) and beat.received_at + LOG_GAP_GRACE_S <= window.now:
            by_log[beat.log_id].append(beat)
    count, reporting = 0, []
    for log_id, log_beats in by_log.items():
        highest = max(beat.last_seq for beat in log_beats)
        seqs = held.get(log_id, set())
        missing = [seq for seq in range(1, highest) if seq not in seqs]
        if missing:
            count += len(missing)
            reporting += [b.received_at for b in log_beats if b.last_seq > missing[0]]
    if count:
        ev.aggregates.append(
            Finding(Rule.LOG_GAP, Kind.MISSING_SEQ, kiosk_id, count, min(reporting), max(reporting))
        )


def evaluate(
    kiosks: Sequence[KioskFacts],
    entries: Sequence[EntryFacts],
    heartbeats: Sequence[HeartbeatFacts],
    window: Window,
) -> dict[str, list[Finding]]:
    """Every finding in the window, by venue id, each venue's list in order. The reference the
    collector's SQL is tested against; it loads everything, so it is for tests only."""
    by_id = {kiosk.kiosk_id: kiosk for kiosk in kiosks}
    ev = _Evidence()
    _entry_evidence(entries, by_id, window, ev)
    held: dict[str, set[int]] = defaultdict(set)
    for entry in entries:
        held[entry.log_id].add(entry.seq)
    beats_of: dict[str, list[HeartbeatFacts]] = defaultdict(list)
    for beat in heartbeats:
        beats_of[beat.kiosk_id].append(beat)
        if not window.holds(beat.received_at):
            continue
        if beat.thermometer == "fault":
            ev.add(Kind.REPORTED_FAULT, beat.kiosk_id, beat.received_at)
        if trust_stale(beat.trust_age_s, beat.max_trust_age_hours):
            ev.add(Kind.STALE, beat.kiosk_id, beat.received_at)
        if clock_skewed(beat.ts, beat.received_at):
            ev.add(Kind.SKEW, beat.kiosk_id, beat.received_at)
    for kiosk in kiosks:
        beats = beats_of.get(kiosk.kiosk_id, [])
        _drift_evidence(beats, window, ev)
        _missing_seq_evidence(kiosk.kiosk_id, beats, held, window, ev)
        stretches = silent_stretches(
            (b.received_at for b in beats),
            kiosk.provisioned_at,
            window.since,
            window.until,
            window.now,
            window.silent_after_s,
        )
        if stretches:
            ev.aggregates.append(
                Finding(
                    Rule.SILENT_KIOSK,
                    Kind.SILENT,
                    kiosk.kiosk_id,
                    len(stretches),
                    stretches[0][0],
                    stretches[-1][1],
                )
            )
    result: dict[str, list[Finding]] = defaultdict(list)
    for (kind, kiosk_id), items in ev.items.items():
        entry_rule = kind not in HEARTBEAT_KINDS
        result[by_id[kiosk_id].venue_id].append(finding_of(kind, kiosk_id, items, entry_rule))
    for finding in ev.aggregates:
        result[by_id[finding.kiosk_id].venue_id].append(finding)
    return {venue: order_findings(found) for venue, found in result.items()}
