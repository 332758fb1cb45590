"""The door's entry log on real SQLite files: seq and chain, failures that record nothing,
the size bound, retention, and a corrupt file moved aside."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kiosk.door.store import EntryDraft, EntryLog, NotRecorded, StoreError
from kiosk.wire import GENESIS_CHAIN, Entry, canonical_json, chain_link

T0 = 1_646_500_000.0
DRAFT = EntryDraft(
    ts=T0,
    code_format="vhc1",
    code_verdict="valid",
    code_status="green",
    subject="ab" * 32,
    subject_key_version=1,
    temperature_c=36.6,
    mask="on",
    decision="allow",
    reasons=(),
    override=None,
    policy_version="default-1",
    clock_offset_ms=-120,
)


def draft(i: int = 0, **changes: Any) -> EntryDraft:
    return replace(DRAFT, ts=T0 + i, **changes)


async def open_log(path: Path, **kwargs: Any) -> EntryLog:
    return await EntryLog.open(path, kiosk_id="k-1", venue_id="v-1", **kwargs)


def stored(path: Path) -> list[tuple[int, str]]:
    """(seq, body) of every entry, read with a separate plain connection."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, body FROM entries ORDER BY seq").fetchall()
    db.close()
    return [(int(seq), str(body)) for seq, body in rows]


def verify_chain(rows: list[tuple[int, str]], log_id: str) -> None:
    previous = GENESIS_CHAIN
    for expected_seq, (seq, body) in enumerate(rows, start=1):
        entry = json.loads(body)
        assert seq == entry["seq"] == expected_seq
        assert entry["log_id"] == log_id
        assert body == canonical_json(entry).decode()  # stored exactly as chained
        assert entry["chain"] == chain_link(previous, entry)
        previous = entry["chain"]


async def test_appends_get_seq_one_to_n_and_a_chain_that_verifies(tmp_path: Path) -> None:
    path = tmp_path / "entries.db"
    log = await open_log(path)
    first = [await log.append(draft(i)) for i in range(120)]
    await log.close()
    log = await open_log(path)
    assert log.log_id == first[0]["log_id"]
    second = [
        await log.append(draft(200 + i, decision="deny", reasons=("fever",))) for i in range(5)
    ]
    await log.close()
    assert [e["seq"] for e in first + second] == list(range(1, 126))
    assert second[0]["chain"] == chain_link(first[-1]["chain"], second[0])
    verify_chain(stored(path), log.log_id)


async def test_an_entry_has_every_sync_api_member_and_nothing_else(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "entries.db")
    entry = await log.append(draft(), entry_id="018f6a5e-3c1d-7c1e-9a57-2f1d3b1c9e10")
    await log.close()
    assert set(entry) == set(Entry.model_fields)
    parsed = Entry.model_validate(entry)
    assert parsed.id == "018f6a5e-3c1d-7c1e-9a57-2f1d3b1c9e10"
    assert (parsed.ts, parsed.kiosk_id, parsed.venue_id) == (
        "2022-03-05T17:06:40.000Z",
        "k-1",
        "v-1",
    )


async def test_generated_ids_are_time_ordered_uuid7(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "entries.db")
    ids = [(await log.append(draft(i)))["id"] for i in range(5)]
    await log.close()
    assert all(i[14] == "7" for i in ids)
    assert ids == sorted(ids)


async def test_concurrent_appends_leave_no_gap(tmp_path: Path) -> None:
    path = tmp_path / "entries.db"
    log = await open_log(path)
    entries = await asyncio.gather(*(log.append(draft(i)) for i in range(50)))
    await log.close()
    assert sorted(e["seq"] for e in entries) == list(range(1, 51))
    verify_chain(stored(path), log.log_id)


async def test_get_returns_what_was_written(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "entries.db")
    entry = await log.append(draft(temperature_c=37.0))
    assert await log.get(entry["id"]) == entry
    assert await log.get_body(entry["id"]) == canonical_json(entry).decode()
    assert await log.get("018f6a5e-3c1d-7c1e-9a57-2f1d3b1c9e10") is None
    await log.close()


async def test_an_invalid_draft_is_not_recorded_and_uses_no_seq(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "entries.db")
    await log.append(draft())
    long_note = {
        "by": "att-1",
        "note": "x" * 201,
        "entry_id": "018f6a5e-3c1d-7c1e-9a57-2f1d3b1c9e10",
    }
    for bad in (
        draft(temperature_c=36.65),
        draft(subject="not hex"),
        draft(mask="maybe"),
        draft(override=long_note),
    ):
        with pytest.raises(NotRecorded) as caught:
            await log.append(bad)
        assert caught.value.reason == "invalid"
    assert (await log.append(draft()))["seq"] == 2
    await log.close()


async def test_a_read_only_database_records_nothing(tmp_path: Path) -> None:
    path = tmp_path / "entries.db"
    log = await open_log(path)
    await log.append(draft())
    # Tests run as root, so file modes prove nothing; query_only makes SQLite itself refuse
    # writes with SQLITE_READONLY, as a read-only mount does.
    assert log._db is not None
    await log._db.execute("PRAGMA query_only = 1")
    with pytest.raises(NotRecorded) as caught:
        await log.append(draft(1))
    assert caught.value.reason == "read_only"
    with pytest.raises(StoreError) as caught_sent:
        await log.mark_sent(["anything"])
    assert caught_sent.value.reason == "read_only"
    await log._db.execute("PRAGMA query_only = 0")
    assert (await log.append(draft(2)))["seq"] == 2
    await log.close()
    verify_chain(stored(path), log.log_id)


async def test_a_full_disk_records_nothing_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "entries.db"
    log = await open_log(path)
    await log.append(draft())
    assert log._db is not None
    pages = next(iter(await log._db.execute_fetchall("PRAGMA page_count")))[0]
    await log._db.execute(f"PRAGMA max_page_count = {pages}")
    big = draft(1, policy_version="p" * 64)
    failures = 0
    for i in range(200):  # fill the last pages until SQLite says the database is full
        try:
            await log.append(replace(big, ts=T0 + i))
        except NotRecorded as exc:
            assert exc.reason == "disk_full"
            failures += 1
            break
    assert failures == 1
    stats = await log.stats()
    assert stats.last_seq == stats.entries
    with pytest.raises(NotRecorded, match="disk_full"):
        await log.append(draft(500))
    await log._db.execute(f"PRAGMA max_page_count = {pages * 100}")
    entry = await log.append(draft(501))
    assert entry["seq"] == stats.last_seq + 1
    await log.close()
    verify_chain(stored(path), log.log_id)


async def test_the_size_bound_refuses_rather_than_drops(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "entries.db", max_entries=3)
    entries = [await log.append(draft(i)) for i in range(3)]
    assert (await log.stats()).storage_used_ratio == 1.0
    with pytest.raises(NotRecorded) as caught:
        await log.append(draft(3))
    assert caught.value.reason == "storage_full"
    assert await log.purge(older_than=T0 + 100, only_sent=True) == 0  # nothing sent yet
    await log.mark_sent([entries[0]["id"]])
    assert await log.purge(older_than=T0 + 100, only_sent=True) == 1
    assert (await log.append(draft(4)))["seq"] == 4
    await log.close()


async def test_unsent_mark_sent_set_aside_and_stats(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "entries.db", max_entries=100)
    ids = [(await log.append(draft(i)))["id"] for i in range(6)]
    assert [e["seq"] for e in await log.unsent(4)] == [1, 2, 3, 4]
    await log.mark_sent(ids[:2])
    await log.set_aside(ids[2], "400 at index 0: bad entry")
    assert [e["seq"] for e in await log.unsent(10)] == [4, 5, 6]
    stats = await log.stats()
    assert (stats.last_seq, stats.backlog, stats.set_aside, stats.entries) == (6, 3, 1, 6)
    assert stats.storage_used_ratio == pytest.approx(0.04)  # unsent and set aside: 4 of 100
    assert stats.log_id == log.log_id
    await log.mark_sent([])  # nothing to do is fine
    await log.close()


async def test_purge_never_drops_unsent_and_works_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "entries.db"
    log = await open_log(path)
    ids = [(await log.append(draft(i)))["id"] for i in range(30)]
    await log.mark_sent(ids[:10] + ids[20:25])
    # sent: seq 1-10 and 21-25 (ts T0+0..9, T0+20..24); older than T0+22: 1-10, 21, 22
    assert await log.purge(older_than=T0 + 22, only_sent=True, batch=3) == 12
    left = [seq for seq, _ in stored(path)]
    assert left == list(range(11, 21)) + list(range(23, 31))
    assert len(await log.unsent(100)) == 15  # every unsent entry is still there
    assert await log.purge(older_than=T0 + 15, only_sent=False) == 5  # seq 11-15
    assert (await log.stats()).entries == 13
    assert (await log.append(draft(40)))["seq"] == 31
    await log.close()


async def test_purging_every_entry_keeps_the_chain_going(tmp_path: Path) -> None:
    path = tmp_path / "entries.db"
    log = await open_log(path)
    last = await log.append(draft())
    await log.purge(older_than=T0 + 1, only_sent=False)
    await log.close()
    log = await open_log(path)
    entry = await log.append(draft(2))
    await log.close()
    assert entry["seq"] == 2
    assert entry["chain"] == chain_link(last["chain"], entry)


async def test_a_log_written_before_the_head_trigger_keeps_its_head(tmp_path: Path) -> None:
    """Logs of earlier versions moved the head with their own UPDATE and have no trigger: the
    first append adds it, and the head then survives a purge of every entry and a reopen."""
    path = tmp_path / "entries.db"
    log = await open_log(path)
    await log.append(draft())
    await log.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER entries_head")
    db.close()
    log = await open_log(path)
    last = await log.append(draft(1))
    await log.purge(older_than=T0 + 2, only_sent=False)
    await log.close()
    log = await open_log(path)
    entry = await log.append(draft(3))
    await log.close()
    assert (last["seq"], entry["seq"]) == (2, 3)
    assert entry["chain"] == chain_link(last["chain"], entry)


async def test_close_is_idempotent_and_a_closed_log_records_nothing(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "entries.db")
    await log.close()
    await log.close()
    with pytest.raises(NotRecorded):
        await log.append(draft())
    with pytest.raises(StoreError):
        await log.stats()


async def test_a_file_that_is_not_a_database_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "entries.db"
    garbage = b"this is not SQLite at all" * 100
    path.write_bytes(garbage)
    log = await open_log(path)
    entry = await log.append(draft())
    await log.close()
    assert entry["seq"] == 1
    assert log.recovered_from is not None
    assert log.recovered_from.name.startswith("entries.db.corrupt-")
    assert log.recovered_from.read_bytes() == garbage  # kept, never deleted
    assert "corrupt" in caplog.text and str(log.recovered_from) in caplog.text


async def test_a_damaged_page_is_found_by_the_check_and_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "entries.db"
    log = await open_log(path)
    for i in range(300):
        await log.append(draft(i))
    old_id = log.log_id
    await log.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    for page in (3, 4, 5):
        start = page_size * page
        data[start : start + page_size] = b"\xa5" * page_size
    path.write_bytes(bytes(data))
    log = await open_log(path, check=True)
    assert log.recovered_from is not None and log.recovered_from.exists()
    assert log.log_id != old_id
    assert (await log.append(draft()))["seq"] == 1
    await log.close()


async def test_an_unusable_place_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        await open_log(blocker / "entries.db")
