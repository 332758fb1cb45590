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

For the demo and the dashboard's tests: `misbehaving_city(now)` (two districts, one unit that
does not enforce the measures), `seed(storage, scenario)` or, through the API,
`seed(storage, scenario, http=HttpSink(client, clock))` with the app built on a `ManualClock`;
`Seeded.tokens` holds the inspectors' tokens. Modules: spec (the data), expand (documents and
reference facts), seed, city.
"""

from __future__ import annotations

from kiosk.collector.scenario.city import CLEAN_VENUE, MISBEHAVING_VENUE, misbehaving_city
from kiosk.collector.scenario.expand import (
    Expanded,
    Step,
    entry_uuid,
    expand,
    log_uuid,
    reference_facts,
    subject_of,
)
from kiosk.collector.scenario.seed import (
    SCENARIO_ADMIN,
    SEED_ACTOR,
    HttpPoster,
    HttpSink,
    ManualClock,
    Seeded,
    SeedError,
    seed,
)
from kiosk.collector.scenario.spec import (
    EntrySpec,
    HeartbeatSpec,
    InspectorSpec,
    KioskSpec,
    Moment,
    PolicySpec,
    Scenario,
    VenueSpec,
    WindowSpec,
    load_scenario,
)

__all__ = [
    "CLEAN_VENUE",
    "MISBEHAVING_VENUE",
    "SCENARIO_ADMIN",
    "SEED_ACTOR",
    "EntrySpec",
    "Expanded",
    "HeartbeatSpec",
    "HttpPoster",
    "HttpSink",
    "InspectorSpec",
    "KioskSpec",
    "ManualClock",
    "Moment",
    "PolicySpec",
    "Scenario",
    "SeedError",
    "Seeded",
    "Step",
    "VenueSpec",
    "WindowSpec",
    "entry_uuid",
    "expand",
    "load_scenario",
    "log_uuid",
    "misbehaving_city",
    "reference_facts",
    "seed",
    "subject_of",
]
