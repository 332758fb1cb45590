"""Entry batches parsed and checked off the event loop, in worker processes when they are large.

Parsing, validating and writing out the RFC 8785 form of 1,000 entries takes about 12 ms of CPU,
all of it holding the GIL: on a thread of the collector's own process it competes with aiohttp
and the database writer for one core. Bodies of `POOL_MIN_BYTES` or more (about 60 entries and
up) therefore go to a pool of worker processes, so ingest uses the machine's other cores; smaller
ones are decoded on a thread, where the hand-off costs less than the work.

The pool starts on the first large body, and that body and any that follow are decoded on a
thread until the workers are up, so no request waits for a process to start (and a collector
that only sees small batches, or a test, never starts one). A worker that dies (out of memory,
killed) costs nothing but time: the batch is decoded on a thread and the next large body starts
a new pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import signal
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from kiosk.collector.batch import BatchRejected, prepare_batch
from kiosk.collector.bodies import parse_json
from kiosk.collector.errors import ApiError
from kiosk.collector.storage.base import PreparedBatch

log = logging.getLogger(__name__)

POOL_MIN_BYTES = 32 * 1024


def default_processes() -> int:
    """One worker per core beyond the first (the event loop and SQLite need one), at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A refusal carried back from a worker as plain data (ApiError does not pickle)."""

    batch: bool  # BatchRejected rather than ApiError
    status: int
    error: str
    detail: str
    index: int | None

    def exception(self) -> Exception:
        if self.batch:
            return BatchRejected(self.status, self.error, self.detail, self.index)
        extra: dict[str, Any] = {} if self.index is None else {"index": self.index}
        return ApiError(self.status, self.error, self.detail, **extra)


def decode_batch(body: bytes, kiosk_id: str, venue_id: str, received_at: float) -> PreparedBatch:
    """The body of `POST /api/v1/entries` as rows; ApiError or BatchRejected when refused."""
    return prepare_batch(
        parse_json(body), kiosk_id=kiosk_id, venue_id=venue_id, received_at=received_at
    )


def _decode_in_worker(
    body: bytes, kiosk_id: str, venue_id: str, received_at: float
) -> PreparedBatch | _Refusal:
    try:
        return decode_batch(body, kiosk_id, venue_id, received_at)
    except BatchRejected as exc:
        return _Refusal(True, exc.status, exc.error, exc.detail, exc.index)
    except ApiError as exc:  # parse_json's: not UTF-8, not JSON, too deep, unstorable text
        index = exc.extra.get("index")
        return _Refusal(False, exc.status, exc.error, exc.detail, index)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group; stopping is the collector's decision, not theirs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ready() -> bool:
    return True


class BatchDecoder:
    """Decodes entry batches; owned by the collector app, which closes it after serving."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._warming: asyncio.Future[list[bool]] | None = None

    async def decode(
        self, body: bytes, kiosk_id: str, venue_id: str, received_at: float
    ) -> PreparedBatch:
        pool = self._usable_pool() if len(body) >= POOL_MIN_BYTES else None
        if pool is None:
            return await asyncio.to_thread(decode_batch, body, kiosk_id, venue_id, received_at)
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                pool, _decode_in_worker, body, kiosk_id, venue_id, received_at
            )
        except BrokenProcessPool:
            log.warning("a batch decoding worker died; decoding on a thread, new workers next")
            self._discard(pool)
            return await asyncio.to_thread(decode_batch, body, kiosk_id, venue_id, received_at)
        if isinstance(outcome, _Refusal):
            raise outcome.exception()
        return outcome

    def _usable_pool(self) -> concurrent.futures.ProcessPoolExecutor | None:
        """The pool once its workers answer; until then None (and the first call starts it)."""
        if self._processes == 0:
            return None
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self._processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_interrupts,
            )
            loop = asyncio.get_running_loop()
            self._warming = asyncio.gather(
                *(loop.run_in_executor(self._pool, _ready) for _ in range(self._processes))
            )
            self._warming.add_done_callback(self._warmed)
            log.info("starting %d batch decoding worker(s)", self._processes)
            return None
        warming = self._warming
        if warming is None or not warming.done():
            return None
        if warming.cancelled() or warming.exception() is not None:
            self._discard(self._pool)
            return None
        return self._pool

    def _warmed(self, warming: asyncio.Future[list[bool]]) -> None:
        if not warming.cancelled() and warming.exception() is None:
            log.info("%d batch decoding worker(s) ready", self._processes)

    def _discard(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool, self._warming = None, None
        pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
