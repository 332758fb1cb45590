"""The findings rules as pure definitions: thresholds at their boundaries, the order of units and
findings, and the reference evaluator the collector's SQL is held to."""

from __future__ import annotations

import pytest

from kiosk.findings import (
    SEVERITY,
    EntryFacts,
    Finding,
    HeartbeatFacts,
    Kind,
    KioskFacts,
    Rule,
    Window,
    clock_skewed,
    evaluate,
    excess_uses,
    implausible,
    order_findings,
    silent_stretches,
    stuck,
    stuck_from_sums,
    too_many_implausible,
    trust_stale,
    unit_sort_key,
)

T0 = 1_646_470_000.0
HOUR = 3600.0
KIOSK = KioskFacts("k-a", "v-a", provisioned_at=T0 - 10 * HOUR)


def test_rules_keep_the_spec_order() -> None:
    assert [rule.value for rule in sorted(Rule, key=SEVERITY.__getitem__)] == [
        "override_entries",
        "code_reuse",
        "log_gap",
        "unchecked_entries",
        "thermometer_fault",
        "silent_kiosk",
        "stale_trust",
        "policy_drift",
        "clock_skew",
    ]


def test_stuck_needs_twenty_readings() -> None:
    assert stuck_from_sums(20, 20 * 366, 20 * 366 * 366)
    assert not stuck([36.6] * 19)
    assert stuck([36.6] * 20)
    # A real thermometer wanders by tenths of a degree.
    assert not stuck([36.5, 36.6, 36.7, 36.8] * 10)
    # Readings are whole tenths: population standard deviation 0.0497 is stuck, 0.05 is not.
    assert stuck([36.6] * 11 + [36.7] * 9)
    assert not stuck([36.6, 36.7] * 10)


def test_implausible_share_is_over_a_fifth() -> None:
    assert not implausible(34.0) and not implausible(42.5)
    assert implausible(33.9) and implausible(42.6)
    assert not too_many_implausible(10, 2)
    assert too_many_implausible(10, 3)
    assert too_many_implausible(1, 1)
    assert not too_many_implausible(0, 0)


def test_clock_skew_is_over_120_seconds() -> None:
    assert not clock_skewed(T0, T0 + 120)
    assert not clock_skewed(T0 + 120, T0)
    assert clock_skewed(T0, T0 + 121)
    assert clock_skewed(T0 + 120.001, T0)


def test_trust_is_stale_over_the_limit() -> None:
    assert not trust_stale(None, 48)
    assert not trust_stale(48 * 3600, 48)
    assert trust_stale(48 * 3600 + 1, 48)


@pytest.mark.parametrize(
    ("offsets", "excess"),
    [
        ([0, 200, 400], []),
        ([0, 200, 400, 599], [599]),
        ([0, 200, 400, 600], []),
        ([0, 200, 400, 599, 601], [599, 601]),
        ([0, 0, 0, 0], [0]),
    ],
)
def test_code_reuse_counts_the_fourth_use_within_ten_minutes(
    offsets: list[int], excess: list[int]
) -> None:
    allows = [(T0 + offset, f"e{index}") for index, offset in enumerate(offsets)]
    assert [ts - T0 for ts, _ in excess_uses(allows)] == excess


def test_silent_stretches_are_longer_than_silent_after() -> None:
    beats = [T0 + 900, T0 + 1801]
    assert silent_stretches(beats, T0 - HOUR, T0, T0 + 2700, T0 + 2700) == [(T0 + 900, T0 + 1801)]
    # Before provisioning nothing is expected; after `now` nothing is known yet.
    assert silent_stretches([], T0 + 100, T0, T0 + HOUR, T0 + 1000) == []
    assert silent_stretches([], T0 + 100, T0, T0 + HOUR, T0 + 1001) == [(T0 + 100, T0 + 1001)]


def test_units_order_by_rule_then_count() -> None:
    def one(rule: Rule, kind: Kind, count: int) -> list[Finding]:
        return [Finding(rule, kind, "k", count, T0, T0)]

    units = {
        "a-skew": one(Rule.CLOCK_SKEW, Kind.SKEW, 50),
        "b-override-1": one(Rule.OVERRIDE_ENTRIES, Kind.OVERRIDE, 1),
        "c-override-2": one(Rule.OVERRIDE_ENTRIES, Kind.OVERRIDE, 2),
        "d-reuse": one(Rule.CODE_REUSE, Kind.REUSE, 9),
    }
    ordered = sorted(units, key=lambda venue: unit_sort_key(venue, units[venue]))
    assert ordered == ["c-override-2", "b-override-1", "d-reuse", "a-skew"]
    mixed = order_findings(
        [*units["a-skew"], *units["b-override-1"], Finding(Rule.LOG_GAP, Kind.SKEW, "k", 1, 0, 0)]
    )
    assert [f.rule for f in mixed] == [Rule.OVERRIDE_ENTRIES, Rule.LOG_GAP, Rule.CLOCK_SKEW]


def beat(received: float, **changes: object) -> HeartbeatFacts:
    base: dict[str, object] = {
        "kiosk_id": "k-a",
        "received_at": received,
        "ts": received,
        "log_id": "log-1",
        "last_seq": 0,
        "policy_version": "default-1",
        "published_version": "default-1",
    }
    return HeartbeatFacts(**(base | changes))  # type: ignore[arg-type]


def test_evaluate_a_clean_kiosk_has_no_finding() -> None:
    window = Window(T0, T0 + HOUR, T0 + HOUR)
    entries = [
        EntryFacts(f"e{i}", "k-a", "v-a", T0 + 60 * i, "log-1", i + 1, temperature_c=36.0 + i / 10)
        for i in range(30)
    ]
    beats = [beat(T0 + 60 * i, last_seq=min(i, 30)) for i in range(61)]
    assert evaluate([KIOSK], entries, beats, window) == {}


def test_evaluate_policy_drift_needs_more_than_an_hour() -> None:
    window = Window(T0, T0 + 3 * HOUR, T0 + 3 * HOUR)
    beats = [beat(T0 + 60 * i, policy_version="old") for i in range(62)]
    found = evaluate([KIOSK], [], beats, window)["v-a"]
    drift = [f for f in found if f.rule is Rule.POLICY_DRIFT]
    # Received at 0, 60, ... 3660 s: only the one at 3660 s is more than an hour into the run.
    assert [(f.count, f.first - T0) for f in drift] == [(1, 3660)]


def test_evaluate_missing_seq_waits_an_hour_after_the_heartbeat() -> None:
    entries = [EntryFacts(f"e{s}", "k-a", "v-a", T0, "log-1", s) for s in (1, 2, 4)]
    beats = [beat(T0 + 600, last_seq=5)]
    early = Window(T0, T0 + 2 * HOUR, T0 + 600 + HOUR - 1)
    assert Rule.LOG_GAP not in {f.rule for f in evaluate([KIOSK], entries, beats, early)["v-a"]}
    late = Window(T0, T0 + 2 * HOUR, T0 + 600 + HOUR)
    gaps = [f for f in evaluate([KIOSK], entries, beats, late)["v-a"] if f.rule is Rule.LOG_GAP]
    assert [(f.kind, f.count) for f in gaps] == [(Kind.MISSING_SEQ, 1)]
