"""A ready-made scenario for the demo and the dashboard's tests: one unit that does not enforce
the measures, one that does, in two districts."""

from __future__ import annotations

from kiosk.collector.scenario.spec import Scenario

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
