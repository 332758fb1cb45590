"""Kill -9 of the collector at random moments during ingest, on SQLite and PostgreSQL (issue 8,
"Crashes"): no acknowledged entry is lost and none is stored twice.

A real `kiosk collector` process takes batches from several senders at once (one kiosk each,
chained entries as a kiosk's log makes them). At seeded random moments the test kills it with
SIGKILL, mid-request as often as not, and starts it again on the same database. Each sender
behaves like the kiosk's sync: an entry counts as delivered only when its batch got a 200; every
other batch (refused connection, reset, no answer) is kept and sent again, joined by newer
entries. At the end every sender drains, and the database is compared with what was sent:

- every acknowledged id is held, and nothing else is;
- each id is held once, and acknowledged once: `accepted` plus `duplicates` of all 200 answers
  add up to the rows held (an entry whose answer was lost with a kill after its commit comes
  back as a duplicate);
- every log is whole: one run of seqs from 1, chain links checked;
- sending everything once more stores nothing new.

`make test` kills a few times per database; `make soak` (KIOSK_SOAK=1) 100 times.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from collector_helpers import CLI, T0, LogWriter
from test_fuzz_support import SOAK, record_figures

from kiosk.collector.storage import open_storage
from kiosk.collector.storage.base import Venue
from kiosk.collector.tokens import new_token, token_hash

SENDERS = 4
SHORT_KILLS = 3
SOAK_KILLS = int(os.environ.get("KIOSK_KILLS", "100"))


@dataclass
class Sender:
    """One kiosk sending its log the way sync does: resend until a 200."""

    writer: LogWriter
    token: str
    rng: random.Random
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # every entry made, by id
    pending: list[dict[str, Any]] = field(default_factory=list)  # not acknowledged yet
    acked: set[str] = field(default_factory=set)
    accepted: int = 0  # sum of `accepted` over 200 answers
    duplicates: int = 0
    batches_acked: int = 0
    failures: int = 0
    busy: bool = False  # a request is out

    def grow(self) -> None:
        for _ in range(self.rng.randint(1, 40)):
            entry = self.writer.entry()
            self.sent[entry["id"]] = entry
            self.pending.append(entry)

    async def send_once(self, session: aiohttp.ClientSession, url: str) -> bool:
        batch = self.pending[: self.rng.randint(1, 300)]
        if not batch:
            return True
        self.busy = True
        try:
            async with session.post(
                f"{url}/api/v1/entries", json={"entries": batch},
                headers={"Authorization": f"Bearer {self.token}"},
            ) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError):
            self.failures += 1
            return False
        finally:
            self.busy = False
        if status != 200:
            # 503 while the database recovers is fine; anything else is a bug.
            assert status == 503, (status, body)
            self.failures += 1
            return False
        assert body["accepted"] + body["duplicates"] == len(batch), body
        self.accepted += body["accepted"]
        self.duplicates += body["duplicates"]
        self.batches_acked += 1
        done = {entry["id"] for entry in batch}
        self.acked |= done
        self.pending = [entry for entry in self.pending if entry["id"] not in done]
        return True

    async def run(self, url: str, stop: asyncio.Event, growing: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set() or self.pending:
                if growing.is_set() and len(self.pending) < 400:
                    self.grow()
                if not await self.send_once(session, url):
                    await asyncio.sleep(0.05)  # the collector is down: retry soon
                await asyncio.sleep(0)


class CollectorProcess:
    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kiosk", "collector", "--config", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.starts += 1

    async def healthy(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.process is not None and self.process.poll() is None, "it died"
                try:
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("the collector did not come up")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def provision(database_url: str) -> dict[str, str]:
    storage = await open_storage(database_url, now=T0)
    tokens = {}
    try:
        await storage.add_venue(Venue("v-kill", "Kill", "city/k", "general", T0), actor=CLI)
        for index in range(SENDERS):
            kiosk_id = f"k-kill-{index}"
            tokens[kiosk_id] = new_token()
            await storage.add_kiosk(kiosk_id, "v-kill", token_hash(tokens[kiosk_id]),
                                    actor=CLI, now=T0)
    finally:
        await storage.close()
    return tokens


async def held_ids(database_url: str, kiosk_ids: list[str]) -> tuple[int, dict[str, list[str]]]:
    """All entries held, and the ids held per kiosk."""
    storage = await open_storage(database_url, now=T0)
    try:
        held = {
            kiosk_id: [e.id for e in await storage.entries_of_kiosk(
                kiosk_id, since=T0 - 10, until=T0 + 1e8, limit=10_000_000)]
            for kiosk_id in kiosk_ids
        }
        return await storage.count_entries(), held
    finally:
        await storage.close()


async def kill_during_ingest(database_url: str, folder: Path, kills: int, seed: int) -> None:
    tokens = await provision(database_url)
    config = folder / "collector.toml"
    port = free_port()
    config.write_text(f'[server]\nhost = "127.0.0.1"\nport = {port}\nshutdown_timeout = 1\n'
                      f'[database]\nurl = "{database_url}"\n')
    rng = random.Random(seed)
    senders = [
        Sender(LogWriter(kiosk_id, "v-kill"), token, random.Random(rng.random()))
        for kiosk_id, token in tokens.items()
    ]
    collector = CollectorProcess(config, port)
    stop, growing = asyncio.Event(), asyncio.Event()
    growing.set()
    in_flight_at_kill = 0
    collector.start()
    tasks = [asyncio.create_task(s.run(collector.url, stop, growing)) for s in senders]
    try:
        for _ in range(kills):
            await collector.healthy()
            await asyncio.sleep(rng.uniform(0.05, 0.8))
            in_flight_at_kill += sum(s.busy for s in senders)
            await asyncio.to_thread(collector.kill)
            collector.start()
        await collector.healthy()
        growing.clear()  # no new entries: drain what is pending
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=300)
        # Everything once more: nothing new may be stored.
        async with aiohttp.ClientSession() as session:
            for sender in senders:
                every = list(sender.sent.values())
                for start in range(0, len(every), 1000):
                    async with session.post(
                        f"{collector.url}/api/v1/entries",
                        json={"entries": every[start:start + 1000]},
                        headers={"Authorization": f"Bearer {sender.token}"},
                    ) as response:
                        assert response.status == 200
                        answer = await response.json()
                        assert answer["accepted"] == 0, answer
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(collector.stop)

    count, held = await held_ids(database_url, list(tokens))
    acked_total = 0
    for sender in senders:
        ids = held[sender.writer.kiosk_id]
        assert len(ids) == len(set(ids)), "an entry is stored twice"
        assert set(ids) == sender.acked == set(sender.sent), "lost or unacknowledged entries"
        # Each entry was acknowledged once: as accepted, or as a duplicate when its batch came
        # again after an answer lost with the kill (acknowledged ids are never sent again).
        assert sender.accepted + sender.duplicates == len(ids), "counts disagree with rows"
        acked_total += len(sender.acked)
    assert count == acked_total
    storage = await open_storage(database_url, now=T0)
    try:
        for sender in senders:
            summary = await storage.log_summary(sender.writer.log_id)
            assert summary is not None
            assert summary.runs == ((1, sender.writer.seq),) and summary.held == sender.writer.seq
    finally:
        await storage.close()
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    record_figures(
        "collector-kill",
        {
            "kills": kills,
            "requests_in_flight_at_kills": in_flight_at_kill,
            "senders": SENDERS,
            "entries_compared": acked_total,
            "batches_acknowledged": sum(s.batches_acked for s in senders),
            "entries_resent_as_duplicates": sum(s.duplicates for s in senders),
            "failed_requests_retried": sum(s.failures for s in senders),
            "seed": seed,
        },
        database=dialect,
        run="soak" if kills > SHORT_KILLS else "short",
    )


async def test_kill_9_of_the_collector_during_ingest_loses_no_acknowledged_entry(
    database_url: str, tmp_path: Path
) -> None:
    await kill_during_ingest(database_url, tmp_path, kills=SHORT_KILLS, seed=20220305)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="the full count runs under make soak (KIOSK_SOAK=1)")
async def test_kill_9_of_the_collector_100_times(database_url: str, tmp_path: Path) -> None:
    await kill_during_ingest(database_url, tmp_path, kills=SOAK_KILLS, seed=8)
