"""Sending the entry log: batches, exactly the stored bytes, and every answer of sync-api.md
(200, 400 with index, 413, 401/403, 5xx) and every network fault (refused, reset, stalled, the
lost 200), against a small real collector on 127.0.0.1 (test_sync_fake.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_sync_fake import FAST_RETRY, SyncKit, make_sync_kit, until

from kiosk.door.sync import Backoff, RetryPolicy, SyncService
from kiosk.wire import MAX_BATCH_ENTRIES


@contextlib.asynccontextmanager
async def running(service: SyncService) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(service.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def set_aside_rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, set_aside FROM entries WHERE set_aside IS NOT NULL")
        found = [(str(i), str(why)) for i, why in rows]
    db.close()
    return found


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[SyncKit]:
    async with make_sync_kit(tmp_path) as made:
        yield made


def test_batches_are_of_up_to_1000_entries_by_default(kit: SyncKit) -> None:
    assert kit.service().batch_limit == MAX_BATCH_ENTRIES == 1000


async def test_a_backlog_goes_oldest_first_in_full_batches_as_stored(kit: SyncKit) -> None:
    # A batch limit of 100 stands for the 1,000 of the spec (bench/sync.py --quick sends
    # full batches of 1,000 to the real collector); appending 2,000 entries here is slow.
    written = await kit.write(233)
    # Floats the canonical form writes without ".0", and text that is not ASCII.
    override = {"by": "attendant-7", "note": "老人 · übersehen", "entry_id": written[0]["id"]}
    written += await kit.write(2, temperature_c=37.0, override=override)
    service = kit.service(batch_limit=100)
    assert await service.drain() is None
    fake = kit.collector
    assert [body.count(b'"chain"') for body in fake.bodies] == [100, 100, 35]
    assert fake.order == [entry["id"] for entry in written]
    stored = list(kit.stored_bodies().values())
    # Each request is the stored canonical JSON of its entries, byte for byte.
    for number, body in enumerate(fake.bodies):
        batch = stored[number * 100 : (number + 1) * 100]
        assert body == ('{"entries":[' + ",".join(batch) + "]}").encode()
    assert b'"temperature_c":37,' in fake.bodies[-1] and "老人".encode() in fake.bodies[-1]
    assert fake.chain_ok()
    stats = await kit.log.stats()
    assert (stats.backlog, stats.set_aside) == (0, 0)
    status = service.status
    assert (status.sent, status.batches, status.collector) == (235, 3, "ok")
    assert await service.drain() is None
    assert len(fake.bodies) == 3  # nothing left to send: no request at all


async def test_entries_are_marked_sent_only_after_a_200(kit: SyncKit) -> None:
    await kit.write(10)
    fake = kit.collector
    service = kit.service()
    for fault, kind in ((503, "server_error"), ("drop", "connection_lost"), (429, "busy")):
        fake.script.append(fault)
        failure = await service.drain()
        assert failure is not None and failure.kind == kind
        assert (await kit.log.stats()).backlog == 10
        assert service.status.collector == "unreachable" and service.status.alert is None
    assert fake.entries == {}
    assert await service.drain() is None
    assert len(fake.entries) == 10 and service.status.collector == "ok"


async def test_a_lost_200_is_resent_and_stored_once(kit: SyncKit) -> None:
    """The worst case: the collector commits and answers, the answer never arrives."""
    written = await kit.write(30)
    fake = kit.collector
    fake.script.append("commit_drop")
    service = kit.service()
    failure = await service.drain()
    assert failure is not None and failure.kind == "connection_lost"
    assert len(fake.entries) == 30 and (await kit.log.stats()).backlog == 30
    assert await service.drain() is None
    assert fake.order == [e["id"] for e in written]  # each once, in order
    assert (service.status.sent, service.status.duplicates) == (30, 30)
    assert (await kit.log.stats()).backlog == 0


async def test_a_refused_entry_is_set_aside_alone_and_the_rest_is_sent(
    kit: SyncKit, caplog: pytest.LogCaptureFixture
) -> None:
    written = await kit.write(120)
    bad = written[70]
    fake = kit.collector
    fake.foreign_ids.add(bad["id"])
    service = kit.service(batch_limit=100)
    with caplog.at_level(logging.ERROR, logger="kiosk.door.sync"):
        assert await service.drain() is None
    assert fake.order == [e["id"] for e in written if e is not bad]
    assert fake.answers == [400, 200, 200]  # the batch again without it, then the last 200
    assert set_aside_rows(kit.log.path) == [(bad["id"], "foreign_id: id held for another kiosk")]
    stats = await kit.log.stats()
    assert (stats.backlog, stats.set_aside, service.status.set_aside) == (0, 1, 1)
    assert bad["id"] in caplog.text
    # A set-aside entry is never sent again.
    fake.foreign_ids.clear()
    await kit.write(1)
    assert await service.drain() is None
    assert bad["id"] not in fake.entries


async def test_a_400_without_an_index_keeps_the_batch_and_alerts(kit: SyncKit) -> None:
    await kit.write(5)
    kit.collector.script.append(400)  # a 400 with no index: nothing to set aside
    service = kit.service()
    failure = await service.drain()
    assert failure is not None and failure.kind == "rejected"
    assert service.status.collector == "ok"  # it answers; what it says needs a person
    assert "400" in (service.status.alert or "") and "entries" in service.status.alerts
    stats = await kit.log.stats()
    assert (stats.backlog, stats.set_aside) == (5, 0)
    assert await service.drain() is None and service.status.alert is None


async def test_413_splits_the_batch_until_it_fits(kit: SyncKit) -> None:
    written = await kit.write(100)
    fake = kit.collector
    fake.max_batch = 30
    service = kit.service(batch_limit=100)
    assert await service.drain() is None
    sizes = [body.count(b'"chain"') for body in fake.bodies]
    assert sizes == [100, 50, 25, 25, 50, 25, 25]
    assert fake.answers == [413, 413, 200, 200, 413, 200, 200]
    assert fake.order == [e["id"] for e in written]


async def test_a_lone_entry_too_large_is_kept_not_set_aside(kit: SyncKit) -> None:
    await kit.write(2)
    kit.collector.max_batch = 0
    service = kit.service()
    failure = await service.drain()
    assert failure is not None and failure.kind == "rejected"
    assert "413" in (service.status.alert or "")
    stats = await kit.log.stats()
    assert (stats.backlog, stats.set_aside) == (2, 0)


async def test_batches_stay_under_the_body_limit(kit: SyncKit) -> None:
    await kit.write(40)
    service = kit.service(body_limit=5_000)
    assert await service.drain() is None
    assert all(len(body) <= 5_000 for body in kit.collector.bodies)
    assert len(kit.collector.bodies) > 3 and len(kit.collector.entries) == 40


async def test_401_keeps_the_batch_alerts_and_a_new_token_is_picked_up(
    kit: SyncKit, caplog: pytest.LogCaptureFixture
) -> None:
    await kit.write(3)
    right = kit.collector.token
    kit.token_file.write_text("x" * 43)
    service = kit.service()
    with caplog.at_level(logging.DEBUG):
        failure = await service.drain()
        assert failure is not None and failure.kind == "refused"
        assert "token_file" in (service.status.alert or "")
        assert (await kit.log.stats()).backlog == 3
        assert not set_aside_rows(kit.log.path)
        kit.token_file.write_text(right + "\n")  # rotated: no restart needed
        assert await service.drain() is None
    assert service.status.alert is None and len(kit.collector.entries) == 3
    assert right not in caplog.text and "x" * 43 not in caplog.text


async def test_403_keeps_the_batch(kit: SyncKit) -> None:
    await kit.write(3)
    kit.collector.script.extend([403, 403])
    service = kit.service()
    for _ in range(2):
        failure = await service.drain()
        assert failure is not None and failure.kind == "refused"
    assert (await kit.log.stats()).backlog == 3
    assert await service.drain() is None


async def test_a_missing_token_file_is_an_alert_not_a_crash(kit: SyncKit) -> None:
    await kit.write(1)
    kit.token_file.unlink()
    service = kit.service()
    failure = await service.drain()
    assert failure is not None and failure.kind == "refused"
    assert "no token" in (service.status.alert or "")
    assert kit.collector.bodies == []


async def test_a_stalled_collector_times_out_and_the_batch_is_retried(tmp_path: Path) -> None:
    async with make_sync_kit(tmp_path, timeout=0.3) as kit:
        await kit.write(4)
        kit.collector.script.append("stall")
        service = kit.service()
        failure = await service.drain()
        assert failure is not None and failure.kind == "timeout"
        assert (await kit.log.stats()).backlog == 4
        assert await service.drain() is None
        assert len(kit.collector.entries) == 4


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_link_too_slow_for_a_full_batch_gets_smaller_ones(tmp_path: Path) -> None:
    async with make_sync_kit(tmp_path, timeout=0.3) as kit:
        written = await kit.write(100)
        kit.collector.slow_over = 30  # bigger batches take longer than the kiosk waits
        service = kit.service(batch_limit=100)
        async with running(service):
            await until(lambda: service.status.sent == 100, within=10)
        assert set(kit.collector.entries) == {e["id"] for e in written}
        sizes = [body.count(b'"chain"') for body in kit.collector.bodies]
        assert sizes[:3] == [100, 50, 25]


async def test_a_408_from_the_collector_halves_the_batch_like_our_own_timeout(
    kit: SyncKit,
) -> None:
    # The collector's body timeout cut off a body that came too slowly: resending the same
    # batch whole would meet the same fate forever on that link.
    written = await kit.write(100)
    kit.collector.script.extend([408, 408])
    service = kit.service(batch_limit=100)
    async with running(service):
        await until(lambda: service.status.sent == 100, within=10)
    sizes = [body.count(b'"chain"') for body in kit.collector.bodies]
    assert sizes[:3] == [100, 50, 25]
    assert kit.collector.order == [e["id"] for e in written]


async def test_decided_offline_then_the_collector_comes_up(tmp_path: Path) -> None:
    port = unused_port()
    async with make_sync_kit(tmp_path, start=False, url=f"http://127.0.0.1:{port}") as kit:
        service = kit.service()
        async with running(service):
            written = await kit.write(50)
            await until(lambda: service.status.collector == "unreachable")
            assert "cannot connect" in (service.status.last_error or "")
            written += await kit.write(50)
            await kit.collector.start(port)
            await until(lambda: len(kit.collector.entries) == 100)
            # The heartbeat and the configuration, waiting on their backoff, follow at once.
            await until(lambda: bool(kit.collector.heartbeats and kit.collector.config_requests))
        assert kit.collector.order == [e["id"] for e in written]
        assert kit.collector.chain_ok()


async def test_a_collector_seen_again_by_another_exchange_ends_the_entries_backoff(
    tmp_path: Path,
) -> None:
    port = unused_port()
    async with make_sync_kit(tmp_path, start=False, url=f"http://127.0.0.1:{port}") as kit:
        service = kit.service(retry=RetryPolicy(base_s=30, cap_s=60))
        async with running(service):
            await kit.write(5)
            await until(lambda: service.status.collector == "unreachable")
            await kit.collector.start(port)
            await asyncio.sleep(0.3)
            assert kit.collector.entries == {}  # the entries loop waits out its backoff...
            assert await service.pull_config() is None  # ...until another exchange gets through
            await until(lambda: len(kit.collector.entries) == 5, within=3)


async def test_an_idle_loop_wakes_for_a_new_entry(kit: SyncKit) -> None:
    service = kit.service()  # sync_interval is 60 s here
    async with running(service):
        await until(lambda: kit.collector.config_requests)
        await asyncio.sleep(0.1)
        [entry] = await kit.write(1)  # sets runtime.entry_written, as the engine does
        await until(lambda: entry["id"] in kit.collector.entries, within=2)


async def test_5xx_retries_back_off_until_the_collector_recovers(kit: SyncKit) -> None:
    await kit.write(5)
    kit.collector.script.extend([500, 502, 503, 504])
    service = kit.service(retry=RetryPolicy(base_s=0.01, cap_s=0.05))
    async with running(service):
        await until(lambda: len(kit.collector.entries) == 5)
    assert kit.collector.answers == [500, 502, 503, 504, 200]


def test_backoff_is_capped_exponential_with_jitter() -> None:
    draws = iter([0.0, 1.0, 0.5, 1.0, 1.0, 1.0, 0.0])
    backoff = Backoff(RetryPolicy(base_s=1.0, cap_s=10.0), rng=lambda: next(draws))
    delays = [backoff.next_delay() for _ in range(6)]
    assert delays == [0.5, 2.0, 3.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.next_delay(at_least=4.0) == 4.0  # a Retry-After is honoured, within the cap
    assert Backoff(FAST_RETRY, rng=lambda: 1.0).next_delay(at_least=300) == FAST_RETRY.cap_s


async def test_heartbeats_carry_the_spec_members(kit: SyncKit) -> None:
    await kit.write(3)
    service = kit.service()
    assert await service.send_heartbeat() is None
    [beat] = kit.collector.heartbeats
    assert (beat["kiosk_id"], beat["last_seq"], beat["backlog"]) == ("k-sync-1", 3, 3)
    assert beat["sensors"]["camera"] == "ok" and "set_aside" in beat and "trust_age_s" in beat
    kit.token_file.write_text("y" * 43)
    failure = await service.send_heartbeat()
    assert failure is not None and failure.kind == "refused"
    assert service.status.alert is not None


async def test_the_clock_offset_is_measured_at_every_exchange(kit: SyncKit) -> None:
    kit.collector.date_skew_s = 90.0
    service = kit.service()
    for _ in range(4):
        assert await service.send_heartbeat() is None
        await asyncio.sleep(0.3)  # readings at different sub-second phases narrow it down
    final = kit.runtime.clock_offset.get()  # what the engine stamps on the next entry
    assert final is not None and abs(final - 90_000) <= 1000
    assert service.status.clock_uncertainty_ms is not None
    assert service.status.clock_uncertainty_ms <= 500


async def test_stopping_mid_batch_leaves_nothing_running_and_a_restart_resumes(
    kit: SyncKit,
) -> None:
    written = await kit.write(250)
    kit.collector.script.extend(["ok", "stall"])  # the second batch hangs at the collector
    before = asyncio.all_tasks()
    service = kit.service(batch_limit=100)
    async with running(service):
        # The first batch is marked sent while the second is at the collector.
        await until(lambda: len(kit.collector.bodies) == 2 and service.status.sent == 100)
    await kit.collector.stop()  # its own handler of the stalled request ends too
    assert asyncio.all_tasks() == before
    # The batch cut off is still unsent, to be sent again.
    assert (await kit.log.stats()).backlog == 150
    # A new service (a restarted door) picks up where the log says, nothing twice.
    await kit.collector.start()
    kit.runtime.config = kit.runtime.config.model_copy(
        update={
            "collector": kit.runtime.config.collector.model_copy(update={"url": kit.collector.url})
        }
    )
    assert await kit.service().drain() is None
    assert kit.collector.order == [entry["id"] for entry in written]
