"""The collector's batch decoder over a real server on 127.0.0.1 with real worker processes
(SQLite only: the decoder does not depend on the database). A large batch decoded in a worker is
stored, or refused, exactly as one decoded on a thread; a worker killed, idle or mid-batch, costs
only time; closing the app leaves no worker behind; `server.decode_processes` is range-checked.

Whether a batch went to a worker is seen from outside, in /proc: the workers are the children of
this process that multiprocessing spawned, and a worker that decoded a batch has read the whole
body from its pipe (/proc/PID/io rchar) and, for a batch it could decode, written the rows back
(wchar, which a starting worker leaves near zero: it writes no bytecode).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from collector_helpers import Collector, LogWriter, start_collector

from kiosk.cli import main
from kiosk.collector.batch_decoder import POOL_MIN_BYTES
from kiosk.collector.config import CollectorConfig, load_collector_config
from kiosk.collector.storage.base import LINK_OK, StoredEntry

ENTRIES = 300  # about 170 KiB of JSON, well over POOL_MIN_BYTES
WITHIN_S = 20.0  # bound on every wait for workers (they start in well under a second)
POLL_S = 0.05


# -- the workers, as the system shows them -------------------------------------------------------


def _children() -> set[int]:
    pids: set[int] = set()
    for listing in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            pids.update(int(pid) for pid in listing.read_text().split())
        except OSError:  # a thread that ended meanwhile
            continue
    return pids


def _state(pid: int) -> str:
    """R, S, T (stopped), Z (ended, not yet reaped)...; X when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "X"
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in ("Z", "X")


def _spawned(pid: int) -> bool:
    try:
        return b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Workers:
    """Children of this process that multiprocessing spawned after the test began."""

    def __init__(self) -> None:
        self._before = {pid for pid in _children() if _spawned(pid)}
        self.seen: set[int] = set()

    def alive(self) -> set[int]:
        pids = {pid for pid in _children() - self._before if _spawned(pid) and _alive(pid)}
        self.seen |= pids
        return pids

    def io(self) -> dict[int, tuple[int, int]]:
        """Bytes each live worker has read and written so far."""
        counts: dict[int, tuple[int, int]] = {}
        for pid in self.alive():
            try:
                lines = Path(f"/proc/{pid}/io").read_text().splitlines()
            except OSError:
                continue
            fields = dict(line.split(": ", 1) for line in lines)
            counts[pid] = (int(fields["rchar"]), int(fields["wchar"]))
        return counts

    async def stop(self, pids: set[int]) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        await self._until(lambda: all(_state(pid) == "T" for pid in pids), f"{pids} stopped")

    async def kill(self, pids: set[int]) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        await self._until(lambda: not any(_alive(pid) for pid in pids), f"{pids} ended")

    async def _until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WITHIN_S
        while not condition():
            assert time.monotonic() < deadline, f"not {what} within {WITHIN_S} s"
            await asyncio.sleep(POLL_S)


# -- sending -------------------------------------------------------------------------------------


def encode(entries: list[Any]) -> bytes:
    return json.dumps({"entries": entries}).encode()


async def post(c: Collector, workers: Workers, body: bytes) -> tuple[int, Any, bool]:
    """Status, JSON answer, and whether a worker decoded the body: one that was already running
    read all of it meanwhile and, when the batch was taken (200), wrote back at least as much."""
    before = workers.io()
    headers = {**c.provisioned.auth("k-a"), "Content-Type": "application/json"}
    response = await c.client.post("/api/v1/entries", data=body, headers=headers)
    answer = await response.json()
    after = workers.io()
    wrote = len(body) if response.status == 200 else 0
    in_worker = any(
        read - before[pid][0] >= len(body) and written - before[pid][1] >= wrote
        for pid, (read, written) in after.items()
        if pid in before
    )
    return response.status, answer, in_worker


def accepted(count: int) -> dict[str, int]:
    return {"accepted": count, "duplicates": 0}


async def until_a_worker_decodes(c: Collector, workers: Workers, writer: LogWriter) -> list[bytes]:
    """Large valid batches, sent until one is decoded in a worker (the pool is warm then); each
    is stored in any case. The bodies sent."""
    bodies: list[bytes] = []
    deadline = time.monotonic() + WITHIN_S
    while True:
        bodies.append(encode(writer.entries(ENTRIES)))
        status, answer, in_worker = await post(c, workers, bodies[-1])
        assert (status, answer) == (200, accepted(ENTRIES))
        if in_worker:
            return bodies
        assert time.monotonic() < deadline, f"no batch went to a worker within {WITHIN_S} s"
        await asyncio.sleep(POLL_S)


async def start(aiohttp_client: Any, database: Path, processes: int) -> Collector:
    config = CollectorConfig.model_validate(
        {
            "server": {"decode_processes": processes},
            "database": {"url": f"sqlite:///{database}"},
        }
    )
    return await start_collector(config, aiohttp_client)


async def held(c: Collector) -> list[StoredEntry]:
    entries = await c.storage.entries_of_kiosk("k-a", since=0, until=4e9, limit=100_000)
    return sorted(entries, key=lambda entry: entry.seq)


def assert_stored_once_and_chained(entries: list[StoredEntry], bodies: list[bytes]) -> None:
    sent = {entry["id"]: entry for body in bodies for entry in json.loads(body)["entries"]}
    assert [entry.id for entry in entries] == list(sent)  # each once, in seq order
    assert [entry.entry() for entry in entries] == list(sent.values())
    assert [entry.seq for entry in entries] == list(range(1, len(sent) + 1))
    assert {entry.link for entry in entries} == {LINK_OK}


async def close(c: Collector, workers: Workers) -> None:
    """Close the app; none of the workers seen, nor any other spawned since, may outlive it."""
    workers.alive()
    await c.client.close()  # the server, then the app's cleanup contexts
    assert {pid for pid in workers.seen if _alive(pid)} == set(), "workers outlived the app"
    assert workers.alive() == set(), "workers outlived the app"


# -- stored as on a thread -----------------------------------------------------------------------


async def test_a_large_batch_decoded_in_a_worker_is_stored_as_on_a_thread(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    workers = Workers()
    pooled = await start(aiohttp_client, tmp_path / "pooled.db", processes=1)
    writer = LogWriter("k-a", "v-a")
    bodies = [encode(writer.entries(5))]
    assert len(bodies[0]) < POOL_MIN_BYTES
    assert await post(pooled, workers, bodies[0]) == (200, accepted(5), False)
    assert workers.alive() == set(), "a small body started worker processes"

    # The first large body starts the pool and is decoded on a thread meanwhile.
    bodies.append(encode(writer.entries(ENTRIES)))
    assert len(bodies[-1]) >= POOL_MIN_BYTES
    assert await post(pooled, workers, bodies[-1]) == (200, accepted(ENTRIES), False)
    pool = workers.alive()
    assert len(pool) == 1
    assert all(written < len(bodies[-1]) for _, written in workers.io().values())
    bodies += await until_a_worker_decodes(pooled, workers, writer)
    # Warm: every large body goes to the worker, a batch sent again too.
    for _ in range(2):
        bodies.append(encode(writer.entries(ENTRIES)))
        assert await post(pooled, workers, bodies[-1]) == (200, accepted(ENTRIES), True)
    again = {"accepted": 0, "duplicates": ENTRIES}
    assert await post(pooled, workers, bodies[-1]) == (200, again, True)
    assert workers.alive() == pool

    # The same bodies to a collector that decodes on a thread: the same answers, no worker.
    threaded = await start(aiohttp_client, tmp_path / "threaded.db", processes=0)
    answers = [await post(threaded, workers, body) for body in bodies]
    assert answers == [(200, accepted(len(json.loads(body)["entries"])), False) for body in bodies]
    assert await post(threaded, workers, bodies[-1]) == (200, again, False)
    assert workers.alive() == pool, "decode_processes = 0 started worker processes"

    stored = await held(pooled)
    assert stored == await held(threaded)  # every column, received_at and link included
    assert_stored_once_and_chained(stored, bodies)
    await close(pooled, workers)
    await close(threaded, workers)


# -- refused as on a thread ----------------------------------------------------------------------


def refused_bodies() -> list[tuple[str, bytes, int, str, int | None]]:
    """Large bodies the collector refuses: (what, body, status, error, index)."""
    batch: list[Any] = LogWriter("k-a", "v-a").entries(ENTRIES)  # a log never stored
    foreign = LogWriter("k-b", "v-b").entry()
    invalid = {**batch[250], "temperature_c": 51}

    def spoilt(changes: dict[int, Any]) -> bytes:
        return encode([changes.get(index, entry) for index, entry in enumerate(batch)])

    unstorable = {**batch[150], "policy_version": "v\x00"}  # sent as \u0000
    too_many = encode(LogWriter("k-a", "v-a").entries(1001))
    return [
        ("an invalid member", spoilt({250: invalid}), 400, "invalid_entry", 250),
        ("an entry that is no object", spoilt({120: "entry"}), 400, "invalid_entry", 120),
        ("another kiosk's entry", spoilt({100: foreign}), 403, "forbidden", None),
        ("another's, then invalid", spoilt({10: foreign, 250: invalid}), 403, "forbidden", None),
        ("invalid, then another's", spoilt({10: invalid, 250: foreign}), 400, "invalid_entry", 10),
        ("text no database stores", spoilt({150: unstorable}), 400, "invalid_entry", 150),
        ("over 1,000 entries", too_many, 413, "payload_too_large", None),
        ("no entries member", json.dumps({"items": batch}).encode(), 400, "bad_request", None),
        ("not JSON", encode(batch)[:-1], 400, "bad_request", None),
        ("not UTF-8", b"\xff" + encode(batch), 400, "bad_request", None),
    ]


async def test_a_large_batch_refused_in_a_worker_gets_the_answer_of_a_thread(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    workers = Workers()
    pooled = await start(aiohttp_client, tmp_path / "pooled.db", processes=1)
    threaded = await start(aiohttp_client, tmp_path / "threaded.db", processes=0)
    writer = LogWriter("k-a", "v-a")
    bodies = await until_a_worker_decodes(pooled, workers, writer)
    for what, body, status, error, index in refused_bodies():
        assert len(body) >= POOL_MIN_BYTES, what
        in_pool = await post(pooled, workers, body)
        on_thread = await post(threaded, workers, body)
        assert in_pool[2], f"{what}: not decoded in the worker"
        assert not on_thread[2], what
        assert in_pool[:2] == on_thread[:2], what  # status and the whole JSON body
        answer = on_thread[1]
        assert (on_thread[0], answer["error"], answer.get("index")) == (status, error, index), what
        assert isinstance(answer["detail"], str) and answer["detail"], what
    # Nothing refused was stored, and the worker still decodes.
    bodies.append(encode(writer.entries(ENTRIES)))
    assert await post(pooled, workers, bodies[-1]) == (200, accepted(ENTRIES), True)
    assert_stored_once_and_chained(await held(pooled), bodies)
    assert await held(threaded) == []
    await close(pooled, workers)
    await close(threaded, workers)


# -- workers that die ----------------------------------------------------------------------------


async def test_a_killed_worker_costs_only_time(
    tmp_path: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    workers = Workers()
    c = await start(aiohttp_client, tmp_path / "c.db", processes=2)
    writer = LogWriter("k-a", "v-a")
    bodies = await until_a_worker_decodes(c, workers, writer)
    first = workers.alive()
    assert len(first) == 2

    # Mid-batch: with the workers stopped the batch waits for one of them (on a thread it would
    # be stored by now); killed, the batch is decoded on a thread after all.
    await workers.stop(first)
    try:  # killed in any case: the app's close would wait for stopped workers forever
        bodies.append(encode(writer.entries(ENTRIES)))
        sending = asyncio.create_task(post(c, workers, bodies[-1]))
        done, _ = await asyncio.wait({sending}, timeout=0.5)
        assert not done, "the batch did not wait for the stopped workers"
    finally:
        await workers.kill(first)
    status, answer, _ = await asyncio.wait_for(sending, WITHIN_S)
    assert (status, answer) == (200, accepted(ENTRIES))
    assert "a batch decoding worker died" in caplog.text

    # The next large body starts new workers; killed while idle, their next batch is decoded
    # on a thread too.
    bodies += await until_a_worker_decodes(c, workers, writer)
    second = workers.alive()
    assert len(second) == 2 and not second & first
    await workers.kill(second)
    bodies.append(encode(writer.entries(ENTRIES)))
    assert await post(c, workers, bodies[-1]) == (200, accepted(ENTRIES), False)

    # And a third pool takes over.
    bodies += await until_a_worker_decodes(c, workers, writer)
    third = workers.alive()
    assert len(third) == 2 and not third & (first | second)
    assert_stored_once_and_chained(await held(c), bodies)
    await close(c, workers)


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("-1", "server.decode_processes = -1: Input should be greater than or equal to 0"),
        ("65", "server.decode_processes = 65: Input should be less than or equal to 64"),
        ('"two"', "server.decode_processes = 'two': Input should be a valid integer"),
    ],
    ids=["-1", "65", "two"],
)
def test_decode_processes_out_of_range_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, says: str
) -> None:
    path = tmp_path / "collector.toml"
    database = f'[database]\nurl = "sqlite:///{tmp_path}/c.db"\n'
    path.write_text(f"[server]\ndecode_processes = {value}\n{database}", encoding="utf-8")
    assert main(["collector", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert says in err
    assert "Traceback" not in err
    for good in (0, 64):
        path.write_text(f"[server]\ndecode_processes = {good}\n{database}", encoding="utf-8")
        assert load_collector_config(path).server.decode_processes == good
