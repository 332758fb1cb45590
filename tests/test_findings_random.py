"""Random cities against the pure reference evaluator: the collector's SQL (both databases)
and kiosk.findings.evaluate must find the same, for windows that cut hours anywhere, clocks
that run on past the window or stop inside it, late and missing entries, altered links, reused
codes, silent, skewed, stale, drifting and faulty kiosks."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from kiosk.collector.findings import FindingsQuery, findings_by_venue
from kiosk.collector.scenario import Scenario, expand, reference_facts, seed
from kiosk.collector.storage.base import Storage
from kiosk.findings import evaluate, unit_sort_key
from kiosk.wire import format_rfc3339, parse_rfc3339

T0 = parse_rfc3339("2022-03-05T08:00:00Z")
HOUR = 3600.0


def random_city(rng: random.Random) -> Scenario:
    """Times are whole seconds: PostgreSQL keeps microseconds, and a float read back from them
    can differ from the one written in its last bit, which only matters exactly at a
    threshold (an hour of drift to the second), where the reference must see the same."""
    kiosks = [("k-a1", "v-a"), ("k-a2", "v-a"), ("k-b1", "v-b"), ("k-c1", "v-c")]
    entries: list[dict[str, Any]] = []
    stuck = {kiosk for kiosk, _ in kiosks if rng.random() < 0.3}
    drifting = {kiosk for kiosk, _ in kiosks if rng.random() < 0.3}
    for kiosk, _venue in kiosks:
        if rng.random() < 0.5:  # one code passed around: 4 or 5 allows within minutes
            start = T0 + rng.randrange(6 * 3600)
            for n in range(rng.choice([4, 5])):
                entries.append(
                    {
                        "id": f"{kiosk}-burst-{n}",
                        "kiosk": kiosk,
                        "ts": start + n * 130.0,
                        "subject": "burst",
                    }
                )
        ts = T0 - HOUR + rng.randrange(600)
        for n in range(rng.randrange(25, 60)):
            ts += rng.choice([20.0, 60.0, 240.0, 600.0])
            entry: dict[str, Any] = {
                "id": f"{kiosk}-{n}",
                "kiosk": kiosk,
                "ts": ts,
                "subject": rng.choice(["", "", "", "reused-1", "reused-2"]),
                "decision": rng.choice(["allow"] * 5 + ["deny"]),
                "temperature_c": 36.6
                if kiosk in stuck
                else rng.choice([36.6] * 6 + [36.4, 36.9, None, 33.0, 43.0]),
                "mask": rng.choice(["on"] * 8 + ["unchecked", "off"]),
                "code_format": rng.choice(["vhc1"] * 9 + ["none"]),
            }
            if rng.random() < 0.05:
                entry["override"] = True
            if rng.random() < 0.04:
                entry["sent"] = False
            if rng.random() < 0.04:
                entry["chain"] = "broken"
            if rng.random() < 0.15:
                entry["received_at"] = ts + rng.choice([1800.0, 4 * HOUR])
            entries.append(entry)
    heartbeats: list[dict[str, Any]] = []
    for kiosk, _venue in kiosks:
        at = T0 - HOUR + rng.randrange(300)
        while at < T0 + 9 * HOUR:
            heartbeats.append(
                {
                    "kiosk": kiosk,
                    "received_at": at,
                    "behind_s": rng.choice([0.0] * 6 + [121.0, -300.0]),
                    "thermometer": rng.choice(["ok"] * 12 + ["fault"]),
                    "trust_age_s": rng.choice([600.0] * 10 + [48 * HOUR + 1]),
                    "policy_version": "default-1"
                    if kiosk in drifting
                    else rng.choice([None] * 4 + ["default-1"]),
                }
            )
            at += rng.choice([60.0, 300.0, 600.0, 600.0, 1200.0])
    since = T0 + rng.randrange(2 * 3600)
    until = since + rng.randrange(5400, 6 * 3600)
    return Scenario.model_validate(
        {
            "now": until + rng.randrange(-3600, 2 * 3600),
            "window": {"since": since, "until": until},
            "venues": [
                {"venue_id": "v-a", "region": "harbin/d1"},
                {"venue_id": "v-b", "region": "harbin/d2", "type": "mall"},
                {"venue_id": "v-c", "region": "harbin/d2"},
            ],
            "kiosks": [
                {"kiosk_id": kiosk, "venue_id": venue, "provisioned_at": T0 - 2 * HOUR}
                for kiosk, venue in kiosks
            ],
            "policies": [
                {
                    "venue_type": "general",
                    "policy_version": "general-2",
                    "published_at": T0 + 2 * HOUR,
                },
                {
                    "venue_type": "mall",
                    "policy_version": "mall-2",
                    "published_at": T0,
                    "changes": {"mask_required": False},
                },
            ],
            "entries": entries,
            "heartbeats": heartbeats,
        }
    )


def shown(venue: str, findings: list[Any], label_of: dict[str, str]) -> dict[str, Any]:
    return {
        "venue_id": venue,
        "findings": [
            (
                f.rule.value,
                f.kind.value,
                f.kiosk_id,
                f.count,
                format_rfc3339(f.first),
                format_rfc3339(f.last),
                [label_of.get(i, i) for i in f.sample_entry_ids],
            )
            for f in findings
        ],
    }


@pytest.mark.parametrize("city", range(int(os.environ.get("KIOSK_RANDOM_CITIES", "4"))))
async def test_random_city(city: int, storage: Storage) -> None:
    scenario = random_city(random.Random(city))
    seeded = await seed(storage, scenario)
    found = await findings_by_venue(
        storage, FindingsQuery(since=scenario.since, until=scenario.until, now=scenario.now)
    )
    expanded = expand(scenario)
    reference = evaluate(*reference_facts(scenario, expanded))
    venues = sorted(reference, key=lambda venue: unit_sort_key(venue, reference[venue]))
    expected = [shown(v, reference[v], expanded.label_of) for v in venues]
    assert [shown(u.venue_id, u.findings, seeded.label_of) for u in found] == expected
    assert expected  # a random city always misbehaves somewhere
