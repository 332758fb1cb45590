"""The findings scenarios of tests/fixtures/findings: each one's expected answer, held against
the pure reference evaluator here (and against a real collector on SQLite and PostgreSQL in
tests/test_inspectors_api.py, which imports the helpers below)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kiosk.collector.scenario import Scenario, expand, load_scenario, reference_facts
from kiosk.findings import evaluate, unit_sort_key
from kiosk.wire import format_rfc3339, parse_rfc3339

FIXTURES = Path(__file__).parent / "fixtures" / "findings"
SCENARIOS = sorted(FIXTURES.glob("*.json"))
FINDING_KEYS = ("rule", "kind", "kiosk_id", "count", "first", "last", "sample_entry_ids")


def in_region(region: str, scope: str) -> bool:
    return region == scope or region.startswith(scope.rstrip("/") + "/")


def normalised(units: list[dict[str, Any]], label_of: dict[str, str]) -> list[dict[str, Any]]:
    """Units reduced to what a fixture states: times to one form, entry ids to their labels."""
    result = []
    for unit in units:
        findings = []
        for finding in unit["findings"]:
            item = {key: finding[key] for key in FINDING_KEYS}
            item["first"] = format_rfc3339(parse_rfc3339(item["first"]))
            item["last"] = format_rfc3339(parse_rfc3339(item["last"]))
            item["sample_entry_ids"] = [label_of.get(i, i) for i in item["sample_entry_ids"]]
            findings.append(item)
        result.append({"venue_id": unit["venue_id"], "findings": findings})
    return result


def expected_units(scenario: Scenario) -> list[dict[str, Any]]:
    assert scenario.expected is not None
    return normalised(scenario.expected["units"], {})


def test_every_rule_has_a_scenario() -> None:
    names = {path.stem for path in SCENARIOS}
    assert {
        "clean",
        "override_entries",
        "code_reuse",
        "code_reuse_boundary",
        "log_gap_missing",
        "log_gap_chain",
        "unchecked_entries",
        "thermometer_stuck",
        "thermometer_implausible",
        "thermometer_reported_fault",
        "silent_kiosk",
        "stale_trust",
        "policy_drift",
        "clock_skew",
    } <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_reference_evaluator_agrees_with_the_fixture(path: Path) -> None:
    scenario = load_scenario(path)
    expanded = expand(scenario)
    kiosks, entries, heartbeats, window = reference_facts(scenario, expanded)
    found = evaluate(kiosks, entries, heartbeats, window)
    scope = scenario.inspectors[0].region if scenario.inspectors else "harbin"
    region = {venue.venue_id: venue.region for venue in scenario.venues}
    venues = sorted(
        (v for v in found if in_region(region[v], scope)), key=lambda v: unit_sort_key(v, found[v])
    )
    units = [
        {
            "venue_id": venue,
            "findings": [
                {
                    "rule": f.rule.value,
                    "kind": f.kind.value,
                    "kiosk_id": f.kiosk_id,
                    "count": f.count,
                    "first": format_rfc3339(f.first),
                    "last": format_rfc3339(f.last),
                    "sample_entry_ids": list(f.sample_entry_ids),
                }
                for f in found[venue]
            ],
        }
        for venue in venues
    ]
    assert normalised(units, expanded.label_of) == expected_units(scenario)
