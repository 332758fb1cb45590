"""Fuzz the ingest schema through the real HTTP endpoints (issue 8, "Bad input"): arbitrary JSON
bodies to `POST /api/v1/entries` and `POST /api/v1/heartbeat` get a 4xx in the one error shape,
never a 5xx, and store nothing; valid batches and heartbeats with one member mutated get either
their success or a 4xx that names the mutated entry, and store exactly what was acknowledged.

A few seconds each here; `python bench/fuzz.py` runs the same targets for long.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_helpers import T0, LogWriter, heartbeat
from hypothesis import strategies as st
from test_fuzz_support import (
    LiveCollector,
    Target,
    decode_bytes,
    dumps_loose,
    json_values,
    raw_substituted,
    record_figures,
    run_target,
    short_examples,
    sqlite_config,
)

ENTRY_MEMBERS = [
    "id", "log_id", "seq", "chain", "kiosk_id", "venue_id", "ts", "clock_offset_ms",
    "code_format", "code_verdict", "code_status", "subject", "subject_key_version",
    "temperature_c", "mask", "decision", "reasons", "override", "policy_version",
    "override.by", "override.note", "override.entry_id", "unknown_member",
]
HEARTBEAT_MEMBERS = [
    "kiosk_id", "ts", "log_id", "last_seq", "backlog", "policy_version", "sensors",
    "sensors.camera", "sensors.thermometer", "sensors.extra", "trust_age_s", "set_aside",
    "storage_used_ratio", "software", "unknown_member",
]
AROUND_T0 = (T0 - 1e8, T0 + 1e8)  # heartbeats are found by the collector's (fake) receive time


class IngestProbe:
    """Sends bodies as kiosk k-a and keeps count of what the collector should hold."""

    def __init__(self, live: LiveCollector) -> None:
        self.live = live
        self.entries = 0
        self.heartbeats = 0

    def held(self) -> tuple[int, int]:
        storage = self.live.storage
        entries = self.live.call(storage.count_entries())
        beats = self.live.call(
            storage.heartbeats_of_kiosk(
                "k-a", since=AROUND_T0[0], until=AROUND_T0[1], limit=100_000
            )
        )
        return entries, len(beats)

    def post(self, path: str, body: str | bytes) -> tuple[int, Any]:
        status, _, data = self.live.request("POST", path, body, self.live.auth("k-a"))
        assert status < 500, (status, data[:300])
        answer = json.loads(data) if data else None
        if status >= 400:
            assert isinstance(answer, dict) and set(answer) <= {"error", "detail", "index"}
            assert isinstance(answer["error"], str) and isinstance(answer["detail"], str)
        return status, answer

    def expect_held(self) -> None:
        assert self.held() == (self.entries, self.heartbeats)

    # -- the promises ----------------------------------------------------------------------

    def any_entries_body(self, body: str | bytes) -> None:
        status, answer = self.post("/api/v1/entries", body)
        if status == 200:  # only {"entries": []} and its like can be
            assert answer == {"accepted": 0, "duplicates": 0}, answer
        else:
            assert 400 <= status < 500
        self.expect_held()

    def any_heartbeat_body(self, body: str | bytes) -> None:
        status, _ = self.post("/api/v1/heartbeat", body)
        assert 400 <= status < 500 or status == 204
        self.heartbeats += status == 204
        self.expect_held()

    def mutated_batch(self, plan: tuple[int, int, str, str, Any]) -> None:
        count, target, member, action, value = plan
        batch = LogWriter("k-a", "v-a").entries(count)
        _mutate(batch[target], member, action, value)
        status, answer = self.post("/api/v1/entries", dumps_loose({"entries": batch}))
        if status == 200:
            assert answer["accepted"] + answer["duplicates"] == count
            self.entries += answer["accepted"]
        else:
            assert status in (400, 403), (status, answer)
            if answer["error"] == "invalid_entry":
                assert answer["index"] == target, (member, action, value, answer)
            if status == 403:
                assert member in ("kiosk_id", "venue_id"), (member, answer)
        self.expect_held()

    def mutated_heartbeat(self, plan: tuple[str, str, Any]) -> None:
        member, action, value = plan
        beat = heartbeat(LogWriter("k-a", "v-a"), T0)
        _mutate(beat, member, action, value)
        status, answer = self.post("/api/v1/heartbeat", dumps_loose(beat))
        assert status in (204, 400, 403), (status, answer)
        if status == 403:
            assert member == "kiosk_id"
        self.heartbeats += status == 204
        self.expect_held()


def _mutate(document: dict[str, Any], member: str, action: str, value: Any) -> None:
    owner = document
    if "." in member:
        head, member = member.split(".", 1)
        if not isinstance(document.get(head), dict):
            document[head] = {"by": "att-1", "note": "", "entry_id": document.get("id")}
        owner = document[head]
    if action == "delete":
        owner.pop(member, None)
    else:
        owner[member] = value


def entry_plans() -> st.SearchStrategy[tuple[int, int, str, str, Any]]:
    return st.integers(1, 4).flatmap(
        lambda count: st.tuples(
            st.just(count),
            st.integers(0, count - 1),
            st.sampled_from(ENTRY_MEMBERS),
            st.sampled_from(["replace", "replace", "delete"]),
            json_values,
        )
    )


def heartbeat_plans() -> st.SearchStrategy[tuple[str, str, Any]]:
    return st.tuples(
        st.sampled_from(HEARTBEAT_MEMBERS),
        st.sampled_from(["replace", "replace", "delete"]),
        json_values,
    )


def any_body() -> st.SearchStrategy[str | bytes]:
    entries_like = st.fixed_dictionaries(
        {"entries": st.lists(st.dictionaries(st.sampled_from(ENTRY_MEMBERS), json_values),
                             max_size=2)}
    )
    return st.one_of(
        json_values.map(dumps_loose),
        entries_like.map(dumps_loose),
        raw_substituted(entries_like),
        raw_substituted(json_values),
        st.binary(max_size=200),
    )


def ingest_targets(live: LiveCollector) -> list[Target]:
    probe = IngestProbe(live)
    probe.entries, probe.heartbeats = probe.held()

    def mapped(data: bytes) -> bytes:
        return data

    return [
        Target("ingest-entries-any-body", any_body(), probe.any_entries_body, mapped),
        Target("ingest-heartbeat-any-body", any_body(), probe.any_heartbeat_body, mapped),
        Target("ingest-entries-mutated", entry_plans(), probe.mutated_batch,
               lambda data: (1, 0, "unknown_member", "replace", decode_bytes(data))),
        Target("ingest-heartbeat-mutated", heartbeat_plans(), probe.mutated_heartbeat,
               lambda data: ("sensors.extra", "replace", decode_bytes(data))),
    ]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCollector]:
    folder: Path = tmp_path_factory.mktemp("fuzz-ingest")
    with LiveCollector(sqlite_config(folder)) as server:
        yield server


@pytest.mark.parametrize("name", [
    "ingest-entries-any-body", "ingest-heartbeat-any-body",
    "ingest-entries-mutated", "ingest-heartbeat-mutated",
])
def test_fuzzed_ingest_bodies_are_4xx_never_5xx_and_store_only_what_is_acknowledged(
    live: LiveCollector, name: str
) -> None:
    target = next(t for t in ingest_targets(live) if t.name == name)
    tried = run_target(target, short_examples(60))
    record_figures("fuzz", {"inputs": tried, "engine": "hypothesis"}, target=name)
    assert tried >= 20
