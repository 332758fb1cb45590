"""The storage interface on SQLite and PostgreSQL: provisioning, tokens, idempotent ingest,
chain links checked whichever order entries arrive in, log runs, rollups, heartbeats judged on
arrival, configuration generations, and PostgreSQL's day partitions."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from collector_helpers import CLI, T0, LogWriter, provision

from kiosk.collector.batch import prepare_batch
from kiosk.collector.storage import open_storage
from kiosk.collector.storage.base import (
    ENTRY_BROKEN_CHAIN,
    ENTRY_MASK_UNCHECKED,
    ENTRY_NO_CODE,
    ENTRY_NO_TEMPERATURE,
    ENTRY_SEQ_REUSED,
    HEARTBEAT_AFTER_SILENCE,
    HEARTBEAT_POLICY_DRIFT,
    HEARTBEAT_POLICY_MISMATCH,
    HEARTBEAT_STALE_TRUST,
    HEARTBEAT_THERMOMETER_FAULT,
    LINK_BROKEN,
    LINK_OK,
    LINK_UNVERIFIED,
    AlreadyExists,
    ForeignEntryId,
    HeartbeatRecord,
    IngestResult,
    NotFound,
    PolicyPublication,
    Storage,
    StorageError,
    Venue,
)
from kiosk.collector.storage.sqlite import SqliteStorage
from kiosk.collector.tokens import new_token, token_hash
from kiosk.wire import chain_link


async def ingest(storage: Storage, entries: list[dict[str, Any]], now: float = T0) -> IngestResult:
    kiosk_id, venue_id = entries[0]["kiosk_id"], entries[0]["venue_id"]
    batch = prepare_batch(
        {"entries": entries}, kiosk_id=kiosk_id, venue_id=venue_id, received_at=now
    )
    return await storage.ingest_entries(batch)


async def links(storage: Storage, kiosk_id: str) -> dict[int, str]:
    held = await storage.entries_of_kiosk(kiosk_id, since=0, until=4e9, limit=1000)
    return {entry.seq: entry.link for entry in held}


async def test_provisioning_refuses_what_exists_and_finds_tokens(storage: Storage) -> None:
    p = await provision(storage)
    with pytest.raises(AlreadyExists):
        await storage.add_venue(Venue("v-a", "Again", "city/d1", "general", T0), actor=CLI)
    with pytest.raises(AlreadyExists):
        await storage.add_kiosk("k-a", "v-a", token_hash(new_token()), actor=CLI, now=T0)
    with pytest.raises(AlreadyExists):  # one namespace for kiosks and people
        await storage.add_person("k-a", "admin", None, token_hash(new_token()), actor=CLI, now=T0)
    with pytest.raises(NotFound):
        await storage.add_kiosk("k-c", "v-none", token_hash(new_token()), actor=CLI, now=T0)
    kiosk = await storage.principal_by_token(token_hash(p.tokens["k-a"]))
    assert kiosk is not None
    assert (kiosk.role, kiosk.kiosk_id, kiosk.venue_id, kiosk.region) == (
        "kiosk", "k-a", "v-a", "city/d1"
    )
    inspector = await storage.principal_by_token(token_hash(p.tokens["insp-d1"]))
    assert inspector is not None and (inspector.role, inspector.region) == ("inspector", "city/d1")
    assert await storage.principal_by_token(token_hash(new_token())) is None
    info = await storage.kiosk("k-b")
    assert info is not None and (info.venue_type, info.region, info.unit_status) == (
        "hospital", "city/d10", "open"
    )


async def test_revoke_and_rotate(storage: Storage) -> None:
    p = await provision(storage)
    old = token_hash(p.tokens["insp-d1"])
    await storage.set_token("insp-d1", None, actor=CLI, now=T0)
    assert await storage.principal_by_token(old) is None
    new = token_hash(new_token())
    await storage.set_token("insp-d1", new, actor=CLI, now=T0)
    assert (await storage.principal_by_token(new)) is not None
    with pytest.raises(NotFound):
        await storage.set_token("nobody", None, actor=CLI, now=T0)
    actions = [r.action for r in await storage.audit_records(
        since=0, until=4e9, after_id=0, limit=100)]
    assert actions[-2:] == ["revoke_token", "rotate_token"]


async def test_idempotency_and_ids_of_another_kiosk(storage: Storage) -> None:
    p = await provision(storage)
    a = p.kiosk_a.entries(4)
    assert await ingest(storage, a) == IngestResult(4, 0)
    assert await ingest(storage, a + a[:1]) == IngestResult(0, 5)
    twice = p.kiosk_a.entries(1)
    assert (await ingest(storage, twice + twice)).accepted == 1  # the same id twice in a batch
    stolen = p.kiosk_b.entries(2)
    stolen[1] = {**stolen[1], "id": a[2]["id"]}
    with pytest.raises(ForeignEntryId) as caught:
        await ingest(storage, stolen)
    assert caught.value.index == 1
    assert await storage.entries_of_kiosk("k-b", since=0, until=4e9, limit=9) == []
    # Upper-case hex is the same UUID.
    assert await ingest(storage, [{**a[0], "id": a[0]["id"].upper()}]) == IngestResult(0, 1)
    assert await storage.count_entries() == 5


async def test_a_late_predecessor_checks_the_link_it_completes(storage: Storage) -> None:
    p = await provision(storage)
    w = p.kiosk_a
    log = w.entries(6)
    log[3] = {**log[3], "mask": "off"}  # seq 4 altered after it was chained
    assert (await ingest(storage, [log[0], log[1], log[4], log[5]])).unverified_links == 1
    assert await links(storage, "k-a") == {1: LINK_OK, 2: LINK_OK, 5: LINK_UNVERIFIED, 6: LINK_OK}
    result = await ingest(storage, [log[2]])  # seq 3 arrives: 3 checks against 2; 4 still missing
    assert (result.accepted, result.unverified_links) == (1, 0)
    result = await ingest(storage, [log[3]])  # seq 4: its own link broken, 5's link now known
    assert result.broken_links == 1
    assert await links(storage, "k-a") == {
        1: LINK_OK, 2: LINK_OK, 3: LINK_OK, 4: LINK_BROKEN, 5: LINK_OK, 6: LINK_OK
    }
    summary = await storage.log_summary(w.log_id)
    assert summary is not None and summary.runs == ((1, 6),) and summary.held == 6


async def test_a_late_entry_that_breaks_its_successor_marks_it(storage: Storage) -> None:
    p = await provision(storage)
    w = p.kiosk_a
    log = w.entries(3)
    forged = {**log[1], "temperature_c": 36.0}
    # A consistent 2, but 3 was chained after the real one.
    forged["chain"] = chain_link(log[0]["chain"], forged)
    await ingest(storage, [log[0], log[2]])
    await ingest(storage, [forged])
    held = await storage.entries_of_kiosk("k-a", since=0, until=4e9, limit=9)
    by_seq = {e.seq: e for e in held}
    assert by_seq[2].link == LINK_OK
    assert by_seq[3].link == LINK_BROKEN and by_seq[3].flags & ENTRY_BROKEN_CHAIN


async def test_a_second_entry_for_a_held_seq_is_flagged(storage: Storage) -> None:
    p = await provision(storage)
    w = p.kiosk_a
    log = w.entries(3)
    await ingest(storage, log)
    fork = LogWriter("k-a", "v-a", log_id=w.log_id, seq=1, chain=log[0]["chain"]).entry()
    assert fork["seq"] == 2
    assert (await ingest(storage, [fork])).accepted == 1
    held = [e for e in await storage.entries_of_kiosk("k-a", since=0, until=4e9, limit=9)
            if e.id == fork["id"]]
    assert held[0].flags & ENTRY_SEQ_REUSED and held[0].link == LINK_OK
    summary = await storage.log_summary(w.log_id)
    assert summary is not None and summary.held == 3 and summary.runs == ((1, 3),)


async def test_rollups_per_kiosk_and_hour(storage: Storage, database_url: str) -> None:
    p = await provision(storage)
    w = p.kiosk_a
    w.ts = T0 - 1  # entries at T0, T0 + 1, ...: T0 is 17:06:40, inside one hour
    entries = [
        w.entry(temperature_c=36.5),
        w.entry(temperature_c=33.9),  # implausible
        w.entry(temperature_c=None),  # allowed without a reading
        w.entry(code_format="none", code_verdict="none", code_status=None, subject=None),
        w.entry(mask="unchecked"),
        w.entry(decision="deny", reasons=["fever", "mask_off"], temperature_c=38.0, mask="off"),
    ]
    await ingest(storage, entries[:3])
    await ingest(storage, entries[3:])
    rows = await _hours(storage, database_url)
    assert len(rows) == 1
    hour = rows[0]
    assert hour["entries"] == 6 and hour["allows"] == 5 and hour["denies"] == 1
    assert (hour["no_code"], hour["no_temperature"], hour["mask_unchecked"]) == (1, 1, 1)
    assert (hour["unchecked"], hour["unchecked_with_mask"]) == (2, 3)
    readings = [365, 339, 366, 366, 380]
    assert hour["readings"] == 5
    assert hour["readings_sum_dc"] == sum(readings)
    assert hour["readings_sumsq_dc"] == sum(r * r for r in readings)
    assert hour["implausible"] == 1
    held = await storage.entries_of_kiosk("k-a", since=0, until=4e9, limit=9)
    assert [e.flags for e in held[2:5]] == [
        ENTRY_NO_TEMPERATURE, ENTRY_NO_CODE, ENTRY_MASK_UNCHECKED
    ]


async def _hours(storage: Storage, database_url: str) -> list[dict[str, Any]]:
    if database_url.startswith("sqlite"):
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute("SELECT * FROM kiosk_hours")]
            finally:
                conn.row_factory = None

        return await storage.read(read)  # type: ignore[attr-defined, no-any-return]
    rows = await storage.fetch("SELECT * FROM kiosk_hours")  # type: ignore[attr-defined]
    return [dict(row) for row in rows]


def beat(now: float, **changes: Any) -> HeartbeatRecord:
    fields: dict[str, Any] = {
        "kiosk_id": "k-a", "venue_id": "v-a", "received_at": now, "ts": now,
        "log_id": "01a20658-a7a1-7ccd-93eb-5f569445f5f0", "last_seq": 3, "backlog": 0,
        "policy_version": "default-1", "camera": "ok", "thermometer": "ok",
        "trust_age_s": 60.0, "set_aside": 0, "storage_used_ratio": 0.1, "software": "t",
        "published_policy_version": "default-1", "max_trust_age_hours": 48.0,
        "silent_after_s": 900.0, "body": {"hello": "world"},
    }
    fields.update(changes)
    return HeartbeatRecord(**fields)


async def test_heartbeats_are_judged_when_they_arrive(storage: Storage) -> None:
    await provision(storage)
    await storage.record_heartbeat(beat(T0))
    await storage.record_heartbeat(beat(T0 + 30, thermometer="fault", trust_age_s=48 * 3600 + 1))
    await storage.record_heartbeat(beat(T0 + 60, policy_version="old-1"))
    await storage.record_heartbeat(beat(T0 + 60 + 1800, policy_version="old-1"))
    await storage.record_heartbeat(beat(T0 + 60 + 3601, policy_version="old-1"))
    await storage.record_heartbeat(beat(T0 + 60 + 3631))
    beats = await storage.heartbeats_of_kiosk("k-a", since=0, until=4e9, limit=9)
    flags = [b.flags for b in beats]
    assert flags[0] == 0
    assert flags[1] == HEARTBEAT_THERMOMETER_FAULT | HEARTBEAT_STALE_TRUST
    assert flags[2] == HEARTBEAT_POLICY_MISMATCH
    assert flags[3] == HEARTBEAT_POLICY_MISMATCH | HEARTBEAT_AFTER_SILENCE  # 1800 s > 900 s
    assert flags[4] == HEARTBEAT_POLICY_MISMATCH | HEARTBEAT_POLICY_DRIFT | HEARTBEAT_AFTER_SILENCE
    assert flags[5] == 0
    assert [b.drift_since for b in beats] == [None, None, T0 + 60, T0 + 60, T0 + 60, None]
    assert beats[0].body == {"hello": "world"}


async def test_configuration_parts_and_generations(storage: Storage, database_url: str) -> None:
    snapshot = await storage.config_snapshot()
    assert snapshot.policies == {} and snapshot.trust_list is None
    assert len(snapshot.pseudonym_key) == 43 and snapshot.pseudonym_key_version == 1
    generation = await storage.config_generation()
    publication = PolicyPublication(
        "mall", "m-2", {"max_temperature_c": 37.0, "accepted_status": ["green"],
                        "mask_required": True, "max_test_age_hours": None,
                        "deny_travel_risk": False}, 48.0, published_at=T0, published_by="root")
    await storage.publish_policy(publication, actor=CLI)
    await storage.put_document("trust_list", {"keys": []}, {"keys": []}, actor=CLI, now=T0)
    assert await storage.config_generation() == generation + 2
    snapshot = await storage.config_snapshot()
    assert snapshot.policies["mall"].policy_version == "m-2"
    assert snapshot.trust_list == {"keys": []}
    key = snapshot.pseudonym_key
    await storage.close()
    reopened = await open_storage(database_url, now=T0 + 99)
    try:  # the key is made once, at the first start, and kept
        assert (await reopened.config_snapshot()).pseudonym_key == key
    finally:
        await reopened.close()


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    storage = await open_storage(url, now=T0)
    await storage.close()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'future', 'x')")
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        await open_storage(url, now=T0)


@pytest.mark.postgres
async def test_postgres_partitions_by_day_and_moves_stranded_rows(
    storage: Storage, database_url: str
) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("partitions are PostgreSQL's")
    await provision(storage)
    ahead = LogWriter("k-a", "v-a", ts=T0 + 30 * 86400)  # a kiosk clock a month ahead
    await ingest(storage, ahead.entries(2), now=T0)
    far = LogWriter("k-a", "v-a", ts=T0 - 5000 * 86400)
    await ingest(storage, far.entries(1), now=T0)
    normal = LogWriter("k-a", "v-a")
    await ingest(storage, normal.entries(2), now=T0)
    fetch = storage.fetch  # type: ignore[attr-defined]
    where = "SELECT tableoid::regclass::text AS part, count(*) FROM entries GROUP BY 1 ORDER BY 1"
    assert [tuple(r) for r in await fetch(where)] == [("entries_default", 3),
                                                       ("entries_p20220305", 2)]
    # A month later the kiosk's day is near: its partition is made and its rows move there.
    await ingest(storage, ahead.entries(1), now=T0 + 30 * 86400)
    assert [tuple(r) for r in await fetch(where)] == [
        ("entries_default", 1), ("entries_p20220305", 2), ("entries_p20220404", 3)
    ]
    assert await storage.count_entries() == 6


async def test_any_time_is_accepted_however_far_off(storage: Storage) -> None:
    await provision(storage)
    w = LogWriter("k-a", "v-a")
    entries = [
        w.entry(ts="0001-01-01T00:00:00Z"),
        w.entry(ts="9999-12-31T23:59:59.999Z"),
        w.entry(ts="2022-03-05T17:06:40.123456789+08:00"),
    ]
    assert await ingest(storage, entries) == IngestResult(3, 0)
    held = await storage.entries_of_kiosk("k-a", since=-7e10, until=3e11, limit=9)
    assert [e.seq for e in held] == [1, 3, 2]
    assert held[1].ts == pytest.approx(1646471200.123457)
    assert {e.link for e in held} == {LINK_OK}


async def test_sqlite_wal_stays_bounded_under_writes_without_a_pause(tmp_path: Path) -> None:
    """Checkpoints run beside the writer; a WAL is only restarted after one copied all of it,
    which writes that never pause would never allow. Past its bound the writer checkpoints the
    WAL away itself, so a flood of batches (a city's kiosks catching up) cannot fill the disk."""
    limit = 256  # frames: 1 MiB of 4 KiB pages
    storage = await SqliteStorage.open(tmp_path / "c.db", now=T0, wal_limit_frames=limit)
    try:
        await storage.write(lambda conn: conn.execute("CREATE TABLE filler (data BLOB)"))
        largest = 0
        for _ in range(120):  # 120 transactions of 400 KiB, as a bulk load writes: 48 MiB
            await storage.write(
                lambda conn: conn.executemany(
                    "INSERT INTO filler (data) VALUES (?)", [(bytes(4096),)] * 100
                )
            )
            largest = max(largest, (tmp_path / "c.db-wal").stat().st_size)
        rows = await storage.read(
            lambda conn: conn.execute("SELECT count(*) FROM filler").fetchone()
        )
    finally:
        await storage.close()
    assert rows == (12_000,)
    assert largest <= 4 * limit * 4096, f"the WAL grew to {largest:,} bytes"
