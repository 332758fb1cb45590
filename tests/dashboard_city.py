"""A small city for the dashboard's tests, as a findings scenario (kiosk.collector.scenario):
two districts of Harbin, in Daowai a misbehaving restaurant (an attendant overriding fever
denials, a thermometer stuck at 36.6 °C) and a well-run library; in Nangang a mall whose kiosk
clock is off by five minutes. Four hours of traffic and heartbeats every ten minutes up to
`NOW`; the default window (the last 24 hours) holds all of it. The kiosks send their entries
in one batch each just before `NOW` (the tests seed it in a few transactions).
"""

from __future__ import annotations

from typing import Any

from kiosk.collector.scenario import Scenario
from kiosk.wire import parse_rfc3339

NOW = parse_rfc3339("2022-03-05T12:00:00Z")
DAOWAI_INSPECTOR = "insp-daowai"
NANGANG_INSPECTOR = "insp-nangang"
BAD, GOOD, FAR = "daowai-0007", "daowai-0012", "nangang-0003"
BAD_KIOSK, GOOD_KIOSK, FAR_KIOSK = "k-daowai-0007-a", "k-daowai-0012-a", "k-nangang-0003-a"

ENTRIES: list[dict[str, Any]] = [
        # The restaurant: a thermometer that always says 36.6, fevers let in anyway.
        {"id": "r", "kiosk": BAD_KIOSK, "ts": "2022-03-05T08:05:00Z", "repeat": 60,
         "every_s": 220, "temperature_c": 36.6},
        {"id": "r-deny-1", "kiosk": BAD_KIOSK, "ts": "2022-03-05T08:45:00Z",
         "decision": "deny", "code_status": "red", "reasons": ["status_red"]},
        {"id": "r-deny-2", "kiosk": BAD_KIOSK, "ts": "2022-03-05T09:40:00Z",
         "decision": "deny", "code_status": "red", "reasons": ["status_red"]},
        {"id": "r-override-2", "kiosk": BAD_KIOSK, "ts": "2022-03-05T09:41:00Z",
         "override": "r-deny-2", "reasons": ["status_red"]},
        {"id": "r-deny-3", "kiosk": BAD_KIOSK, "ts": "2022-03-05T11:05:00Z",
         "decision": "deny", "code_status": "red", "reasons": ["status_red"]},
        {"id": "r-override-3", "kiosk": BAD_KIOSK, "ts": "2022-03-05T11:06:00Z",
         "override": "r-deny-3", "reasons": ["status_red"]},
        # The library: ordinary traffic, one fever turned away.
        {"id": "l", "kiosk": GOOD_KIOSK, "ts": "2022-03-05T08:10:00Z", "repeat": 45,
         "every_s": 300, "temperatures": [36.3, 36.6, 36.9, 36.5, 37.0]},
        {"id": "l-fever", "kiosk": GOOD_KIOSK, "ts": "2022-03-05T10:02:00Z",
         "decision": "deny", "temperature_c": 38.3, "reasons": ["fever"]},
        # The mall: ordinary traffic.
        {"id": "m", "kiosk": FAR_KIOSK, "ts": "2022-03-05T08:30:00Z", "repeat": 30,
         "every_s": 400, "temperatures": [36.4, 36.8, 36.2]},
]


def city() -> Scenario:
    provisioned = "2022-03-05T08:00:00Z"
    beats = {"received_at": "2022-03-05T08:00:30Z", "repeat": 24, "every_s": 600}
    return Scenario.model_validate(
        {
            "description": "the dashboard's city",
            "now": NOW,
            "venues": [
                {"venue_id": BAD, "name": "老道外饭店 Daowai Restaurant",
                 "region": "harbin/daowai"},
                {"venue_id": GOOD, "name": "道外图书馆 Daowai Library",
                 "region": "harbin/daowai"},
                {"venue_id": FAR, "name": "南岗商场 Nangang Mall", "region": "harbin/nangang",
                 "type": "mall"},
            ],
            "kiosks": [
                {"kiosk_id": BAD_KIOSK, "venue_id": BAD, "provisioned_at": provisioned},
                {"kiosk_id": GOOD_KIOSK, "venue_id": GOOD, "provisioned_at": provisioned},
                {"kiosk_id": FAR_KIOSK, "venue_id": FAR, "provisioned_at": provisioned},
            ],
            "inspectors": [
                {"name": DAOWAI_INSPECTOR, "region": "harbin/daowai"},
                {"name": NANGANG_INSPECTOR, "region": "harbin/nangang"},
            ],
            "entries": [{**entry, "received_at": "2022-03-05T11:59:00Z"} for entry in ENTRIES],
            "heartbeats": [
                {"kiosk": BAD_KIOSK, **beats, "backlog": 2},
                {"kiosk": GOOD_KIOSK, **beats},
                {"kiosk": FAR_KIOSK, **beats, "behind_s": 300},
            ],
        }
    )
