"""Retention on a real entry log: old entries go in small batches, never an unsent one when a
collector is configured, and the loop survives a failing log."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from kiosk.door.retention import purge_once, retention_loop
from kiosk.door.store import EntryDraft, EntryLog

DAY = 86_400.0
NOW = 1_700_000_000.0
DRAFT = EntryDraft(
    ts=NOW,
    code_format="none",
    code_verdict="none",
    code_status=None,
    subject=None,
    subject_key_version=None,
    temperature_c=None,
    mask="unchecked",
    decision="deny",
    reasons=("code_missing",),
    override=None,
    policy_version="default-1",
    clock_offset_ms=None,
)


async def filled(path: Path) -> tuple[EntryLog, list[str]]:
    log = await EntryLog.open(path, kiosk_id="k-1", venue_id="v-1")
    ids = []
    for age_days in (40, 35, 30, 29, 10, 1):
        entry = await log.append(replace(DRAFT, ts=NOW - age_days * DAY))
        ids.append(entry["id"])
    return log, ids


async def test_a_standalone_kiosk_drops_what_is_older_than_retention(tmp_path: Path) -> None:
    log, _ = await filled(tmp_path / "entries.db")
    assert await purge_once(log, retention_days=28, only_sent=False, now=NOW, batch=2) == 4
    left = [e["seq"] for e in await log.unsent(10)]
    await log.close()
    assert left == [5, 6]


async def test_with_a_collector_only_accepted_entries_go(tmp_path: Path) -> None:
    log, ids = await filled(tmp_path / "entries.db")
    await log.mark_sent([ids[0], ids[2], ids[5]])
    assert await purge_once(log, retention_days=28, only_sent=True, now=NOW) == 2
    assert [e["seq"] for e in await log.unsent(10)] == [2, 4, 5]  # unsent stay, however old
    assert (await log.append(replace(DRAFT, ts=NOW)))["seq"] == 7
    await log.close()


async def test_the_loop_runs_at_once_then_waits_and_survives_a_closed_log(
    tmp_path: Path,
) -> None:
    log, _ = await filled(tmp_path / "entries.db")
    task = asyncio.create_task(
        retention_loop(
            log, retention_days=28, only_sent=False, clock=lambda: NOW, first_after=0, interval=0.01
        )
    )
    for _ in range(100):
        await asyncio.sleep(0.01)
        if (await log.stats()).entries == 2:
            break
    assert (await log.stats()).entries == 2
    await log.close()  # the log fails from now on: logged, not fatal
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
