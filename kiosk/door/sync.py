"""The kiosk's side of sync-api.md: store-and-forward of the entry log, heartbeats and the kiosk
configuration, as one owned background service of the door process.

- Entries: oldest first, in batches of up to 1,000 (and under the 1 MiB body limit), sent as the
  exact canonical JSON the log chained. Marked sent only after a `200`; retried after network
  errors and 5xx with capped exponential backoff and jitter; `400` with an index sets aside that
  one entry and resends the rest; `413` splits the batch; `401`/`403` keep the batch, raise an
  alert and retry later; after a timeout, smaller batches until they go through (a slow link).
  A backlog drains without pauses between batches; when the log is empty
  the loop waits for the next entry (`entry_written`) or `sync_interval`. Delivery is
  at-least-once and the collector is idempotent by id, so exactly-once holds at the collector:
  an answer lost on the way back only makes the next attempt count duplicates.
- Heartbeats every `heartbeat_interval` with the spec's members (`DoorRuntime.heartbeat`).
- Configuration every `config_interval` with `If-None-Match`: a new document is validated, applied
  without a restart and cached on disk; a `304` counts as a successful refresh (trust age
  restarts); a bad document keeps the knowledge in force (`sync_config`).
- The clock offset is measured at every exchange (`sync_clock`) and handed to the engine.

All network trouble arrives as outcomes from `sync_transport` (the one boundary); nothing raises
out of the loops, and all delivery state lives in the SQLite log, so a restart simply resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kiosk.door.config import KioskConfig
from kiosk.door.knowledge import KnowledgeHolder
from kiosk.door.store import EntryLog, StoreError
from kiosk.door.sync_clock import OffsetEstimator
from kiosk.door.sync_config import ConfigApplier
from kiosk.door.sync_transport import (
    BadEntry,
    CollectorClient,
    ConfigFetched,
    ConfigUnchanged,
    Delivered,
    Refused,
    Rejected,
    RetryLater,
    Stored,
    TokenFile,
    TooLarge,
)
from kiosk.wire import MAX_BATCH_ENTRIES, MAX_BODY_BYTES

log = logging.getLogger(__name__)

_BATCH_HEAD = '{"entries":['
_BATCH_TAIL = "]}"
_SET_ASIDE_WHY_CHARS = 200


class _OffsetSink(Protocol):
    def set(self, offset_ms: int | None) -> None: ...


class SyncRuntime(Protocol):
    """What sync needs from the door process (`kiosk.door.app.DoorRuntime` provides it)."""

    @property
    def config(self) -> KioskConfig: ...
    @property
    def entry_log(self) -> EntryLog: ...
    @property
    def knowledge(self) -> KnowledgeHolder: ...
    @property
    def clock_offset(self) -> _OffsetSink: ...
    @property
    def entry_written(self) -> asyncio.Event: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def status_sources(self) -> dict[str, Callable[[], dict[str, Any]]]: ...

    async def heartbeat(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff after a failure: base·2^n seconds, capped, each wait drawn from [½, 1] of it."""

    base_s: float = 1.0
    cap_s: float = 60.0


class Backoff:
    def __init__(self, policy: RetryPolicy, rng: Callable[[], float] = random.random) -> None:
        self._policy = policy
        self._rng = rng
        self.failures = 0

    def next_delay(self, at_least: float | None = None, cap: float | None = None) -> float:
        limit = self._policy.cap_s if cap is None else min(cap, self._policy.cap_s)
        ceiling = min(limit, self._policy.base_s * float(2 ** min(self.failures, 30)))
        self.failures += 1
        # Jitter keeps a street of kiosks that lost the collector together from returning in step.
        delay = ceiling * (0.5 + 0.5 * self._rng())
        if at_least is not None:
            delay = max(delay, min(at_least, limit))
        return delay

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True, slots=True)
class SyncFailure:
    """Why a step stopped short. `kind`: unreachable, timeout, connection_lost, tls, busy,
    server_error, network or protocol (worth retrying soon), refused or rejected (a person
    must look), store (the local log failed) or bug."""

    kind: str
    detail: str
    retry_after: float | None = None


@dataclass
class SyncStatus:
    """What the attendant's page and the logs say about the link to the collector."""

    collector: str = "unknown"  # ok (it answers) or unreachable
    alert: str | None = None  # what a person must fix (token, certificate, URL...), or None
    alerts: dict[str, str] = dataclasses.field(default_factory=dict)  # by exchange
    since: float | None = None  # wall time the current `collector` state began
    last_error: str | None = None
    last_contact: float | None = None
    sent: int = 0
    duplicates: int = 0
    set_aside: int = 0
    batches: int = 0
    config: str = "not fetched"
    config_applied_at: float | None = None
    clock_offset_ms: int | None = None
    clock_uncertainty_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SyncService:
    """Owned by the door app: `await run()` until cancelled. Tests and benchmarks drive the same
    object with `drain()`, `send_heartbeat()` and `pull_config()`."""

    def __init__(
        self,
        runtime: SyncRuntime,
        *,
        retry: RetryPolicy | None = None,
        batch_limit: int = MAX_BATCH_ENTRIES,
        body_limit: int = MAX_BODY_BYTES,
    ) -> None:
        settings = runtime.config.collector
        if settings.url is None or settings.token_file is None:
            raise ValueError("sync needs collector.url and collector.token_file")
        self._runtime = runtime
        self._settings = settings
        self._log = runtime.entry_log
        self._clock = runtime.clock
        self._retry = retry or RetryPolicy()
        self.batch_limit = max(1, min(batch_limit, MAX_BATCH_ENTRIES))
        self._batch_size = self.batch_limit  # smaller for a while after a timeout
        self._body_limit = body_limit
        self.client = CollectorClient(
            settings.url,
            TokenFile(settings.token_file),
            ca_file=settings.ca_file,
            timeout=settings.timeout,
            offset=OffsetEstimator(),
            clock=runtime.clock,
        )
        self.status = SyncStatus()
        self._configs = ConfigApplier(runtime.knowledge, runtime.config, clock=runtime.clock)
        self._config_failed = self._heartbeat_failed = self._entries_failed = False
        self._config_wake = asyncio.Event()
        self._heartbeat_wake = asyncio.Event()
        self._entries_wake = asyncio.Event()
        runtime.status_sources["collector"] = self.status.as_dict

    # -- the service ----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._entries_loop(), name="sync-entries")
                group.create_task(self._heartbeat_loop(), name="sync-heartbeat")
                group.create_task(self._config_loop(), name="sync-config")
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the HTTP session (`run` does on its way out; callers of the steps do it)."""
        await self.client.close()

    async def _entries_loop(self) -> None:
        backoff = Backoff(self._retry)
        wake = self._runtime.entry_written
        while True:
            failure = await _guarded("sending entries", self.drain)
            self._entries_failed = failure is not None
            if failure is None:
                backoff.reset()
                # Idle: the next entry wakes us at once; the interval is the safety net.
                await _until_set(wake, self._settings.sync_interval)
            else:
                # A heartbeat or pull that gets through ends the wait: the way is open again.
                await self._wait(self._entries_wake, backoff.next_delay(failure.retry_after))

    async def _heartbeat_loop(self) -> None:
        interval = self._settings.heartbeat_interval
        next_at = time.monotonic()
        while True:
            failure = await _guarded("sending a heartbeat", self.send_heartbeat)
            self._heartbeat_failed = failure is not None
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # a slow exchange: keep the rhythm, skip the missed beats
                next_at = now + interval
            # A collector seen again by another loop hears from us at once.
            await self._wait(self._heartbeat_wake, next_at - now)

    async def _config_loop(self) -> None:
        backoff = Backoff(self._retry)
        interval = self._settings.config_interval
        while True:
            failure = await _guarded("pulling the configuration", self.pull_config)
            self._config_failed = failure is not None
            if failure is None:
                backoff.reset()
                delay = interval
            else:
                delay = backoff.next_delay(failure.retry_after, cap=interval)
            # A collector seen again by another loop cuts a failed pull's wait short.
            await self._wait(self._config_wake, delay)

    @staticmethod
    async def _wait(wake: asyncio.Event, seconds: float) -> None:
        wake.clear()
        await _until_set(wake, seconds)

    # -- entries --------------------------------------------------------------------------

    async def drain(self) -> SyncFailure | None:
        """Send every unsent entry; None once the log has none left, else why it stopped.

        While one batch is at the collector, the previous one is marked sent and the next one
        read, so the kiosk's own disk work (a synced commit per batch) hides behind the round
        trip; requests still go one at a time, oldest first."""
        wake = self._runtime.entry_written
        stored: list[str] = []  # the collector answered 200; not yet marked in the log
        try:
            wake.clear()  # before reading: an entry written from here on wakes the idle wait
            rows = await self._log.unsent_bodies(self._batch_size)
            while rows:
                sending = asyncio.create_task(self._deliver(rows))
                try:
                    await self._mark_sent(stored)
                    stored = []
                    wake.clear()
                    in_flight = {entry_id for entry_id, _ in rows}
                    ahead = await self._log.unsent_bodies(self._batch_size + len(rows))
                    rows = [row for row in ahead if row[0] not in in_flight][: self._batch_size]
                except BaseException:  # a store error, or the service stopping: no orphan
                    sending.cancel()
                    await asyncio.gather(sending, return_exceptions=True)
                    raise
                stored, failure = await sending
                self._fit_batch_size(len(stored), failure)
                if failure is not None:
                    await self._mark_sent(stored)
                    return failure
            await self._mark_sent(stored)
        except StoreError as exc:  # entries stored there but not marked are resent, as duplicates
            return self._store_failed("reading or marking entries", exc)
        return None

    def _fit_batch_size(self, stored: int, failure: SyncFailure | None) -> None:
        """A link too slow to carry a full batch within `timeout` would time out on it forever:
        after a timeout batches are halved, and they grow back as they go through."""
        if failure is not None and failure.kind == "timeout" and self._batch_size > 1:
            self._batch_size = max(1, self._batch_size // 2)
            log.info(
                "no answer in time: sending batches of %d entries until they go through",
                self._batch_size,
                extra={"event": "batch_size", "entries": self._batch_size},
            )
        elif failure is None and stored and self._batch_size < self.batch_limit:
            self._batch_size = min(self.batch_limit, self._batch_size * 2)

    async def _mark_sent(self, ids: list[str]) -> None:
        if ids:
            await self._log.mark_sent(ids)
            self.status.sent += len(ids)

    async def _deliver(self, rows: list[tuple[str, str]]) -> tuple[list[str], SyncFailure | None]:
        """Send these entries, split to fit and without any the collector refuses: the ids it
        stored (200), and why it stopped early, if it did."""
        stored: list[str] = []
        pending = deque(_split_by_size(rows, self._body_limit))
        while pending:
            batch = pending.popleft()
            outcome = await self.client.send_entries(_batch_body(batch))
            self._note_clock()
            ids = [entry_id for entry_id, _ in batch]
            if isinstance(outcome, Stored):
                self._contact_ok("entries")
                stored.extend(ids)
                self.status.batches += 1
                self.status.duplicates += outcome.duplicates or 0
            elif isinstance(outcome, BadEntry) and outcome.index < len(batch):
                self._contact_ok("entries")
                bad = ids[outcome.index]
                why = f"{outcome.error}: {outcome.detail}"[:_SET_ASIDE_WHY_CHARS]
                try:
                    await self._log.set_aside(bad, why)
                except StoreError as exc:
                    return stored, self._store_failed("setting an entry aside", exc)
                self.status.set_aside += 1
                log.error(
                    "the collector refused entry %s (%s); set it aside and sending the rest",
                    bad,
                    why,
                    extra={"event": "entry_set_aside", "entry_id": bad},
                )
                rest = batch[: outcome.index] + batch[outcome.index + 1 :]
                if rest:
                    pending.appendleft(rest)
            elif isinstance(outcome, TooLarge) and len(batch) > 1:
                self._contact_ok("entries")
                middle = len(batch) // 2
                pending.appendleft(batch[middle:])
                pending.appendleft(batch[:middle])
                log.info(
                    "the collector found a batch of %d too large (%s); sending it in halves",
                    len(batch),
                    outcome.detail,
                    extra={"event": "batch_split", "entries": len(batch)},
                )
            elif isinstance(outcome, TooLarge):
                # One entry refused as too large: nothing left to split. Keep it (never drop an
                # entry on a guess; a collector that small refuses every entry) and alert.
                return stored, self._failed(
                    Rejected(
                        413, "too_large", f"a single entry is over its limit: {outcome.detail}"
                    ),
                    "entries",
                )
            elif isinstance(outcome, BadEntry):
                return stored, self._failed(
                    Rejected(
                        400,
                        outcome.error,
                        f"names entry index {outcome.index} of a batch of {len(batch)}: "
                        f"{outcome.detail}",
                    ),
                    "entries",
                )
            else:
                return stored, self._failed(outcome, "entries")
        return stored, None

    # -- heartbeats -----------------------------------------------------------------------

    async def send_heartbeat(self) -> SyncFailure | None:
        try:
            members = await self._runtime.heartbeat()
        except StoreError as exc:
            return self._store_failed("reading the log for a heartbeat", exc)
        outcome = await self.client.send_heartbeat(members)
        self._note_clock()
        if isinstance(outcome, Delivered):
            self._contact_ok("heartbeat")
            return None
        return self._failed(outcome, "heartbeat")

    # -- configuration --------------------------------------------------------------------

    async def pull_config(self) -> SyncFailure | None:
        outcome = await self.client.fetch_config(self._configs.etag)
        self._note_clock()
        failure = None
        if isinstance(outcome, ConfigFetched):
            self._contact_ok("configuration")
            problem = await self._configs.apply(outcome.raw, outcome.etag)
            if problem is not None:
                failure = SyncFailure("rejected", f"configuration unusable: {problem}")
        elif isinstance(outcome, ConfigUnchanged):
            self._contact_ok("configuration")
            await self._configs.unchanged()
        else:
            failure = self._failed(outcome, "configuration")
        self.status.config = self._configs.state
        self.status.config_applied_at = self._configs.applied_at
        return failure

    # -- state ----------------------------------------------------------------------------

    def _note_clock(self) -> None:
        offset = self.client.offset.offset_ms()
        if offset is not None:
            self._runtime.clock_offset.set(offset)
        self.status.clock_offset_ms = offset
        self.status.clock_uncertainty_ms = self.client.offset.uncertainty_ms()

    def _contact_ok(self, exchange: str) -> None:
        """The collector answered this exchange as it should."""
        now = self._clock()
        self.status.last_contact = now
        if self.status.collector != "ok":
            if self.status.collector != "unknown":
                log.info("the collector answers again", extra={"event": "collector_ok"})
            self.status.collector, self.status.since = "ok", now
        self._set_alert(exchange, None)
        if self._config_failed:
            self._config_wake.set()
        if self._heartbeat_failed:
            self._heartbeat_wake.set()
        if self._entries_failed and exchange != "entries":
            self._entries_wake.set()

    def _failed(self, outcome: Refused | Rejected | RetryLater, exchange: str) -> SyncFailure:
        """Why this exchange did not go through; the link state and alerts follow from it."""
        self.status.last_error = f"{exchange}: {_describe(outcome)}"
        if isinstance(outcome, RetryLater):
            now = self._clock()
            if self.status.collector != "unreachable":
                log.warning(
                    "the collector cannot be reached (%s); entries stay in the local log and "
                    "are sent when it can",
                    outcome.detail,
                    extra={"event": "collector_unreachable", "reason": outcome.reason},
                )
                self.status.collector, self.status.since = "unreachable", now
            else:
                log.debug("the collector still cannot be reached: %s", outcome.detail)
            if outcome.reason == "tls":
                self._set_alert(
                    exchange, f"collector certificate refused ({outcome.detail}); check ca_file"
                )
            return SyncFailure(outcome.reason, outcome.detail, outcome.retry_after)
        if not (isinstance(outcome, Refused) and outcome.status is None):  # it did answer
            now = self._clock()
            self.status.last_contact = now
            if self.status.collector != "ok":
                self.status.collector, self.status.since = "ok", now
        if isinstance(outcome, Refused):
            code = "no token" if outcome.status is None else str(outcome.status)
            self._set_alert(
                exchange,
                f"the collector refuses this kiosk's {exchange} ({code} {outcome.error}: "
                f"{outcome.detail}); check collector.token_file and the kiosk's provisioning",
            )
            return SyncFailure("refused", self.status.alerts[exchange])
        self._set_alert(
            exchange,
            f"the collector rejects the {exchange} ({outcome.status} {outcome.error}: "
            f"{outcome.detail})",
        )
        return SyncFailure("rejected", self.status.alerts[exchange])

    def _set_alert(self, exchange: str, text: str | None) -> None:
        """Logged when it changes, not at every retry (a kiosk may retry for hours)."""
        alerts = self.status.alerts
        if alerts.get(exchange) == text:
            return
        if text is None:
            del alerts[exchange]
            log.info("%s: resolved", exchange, extra={"event": "sync_alert_cleared"})
        else:
            alerts[exchange] = text
            log.error(
                "%s; kept in the local log, retried later",
                text,
                extra={"event": "sync_alert", "exchange": exchange},
            )
        self.status.alert = "; ".join(alerts[name] for name in sorted(alerts)) or None

    def _store_failed(self, doing: str, exc: StoreError) -> SyncFailure:
        log.warning(
            "sync stopped %s: the entry log failed (%s); retrying later",
            doing,
            exc.reason,
            extra={"event": "sync_store_error", "reason": exc.reason},
        )
        return SyncFailure("store", f"{doing}: {exc.reason}")


async def _until_set(event: asyncio.Event, seconds: float) -> None:
    """Wait for `event`, at most `seconds`. Not `asyncio.wait_for`: on Python 3.11 it swallows a
    cancellation that comes as the event is set, and the door, stopping just after writing an
    entry (which sets `entry_written`), then waited for this loop forever."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()


async def run_sync(runtime: SyncRuntime) -> None:
    """The door service (`kiosk.door.app.DoorService`) that syncs with the collector."""
    await SyncService(runtime).run()


async def _guarded(doing: str, step: Callable[[], Any]) -> SyncFailure | None:
    """Run one step of a loop; a bug in it is logged and retried later, never ends sync."""
    try:
        result: SyncFailure | None = await step()
        return result
    except Exception as exc:  # the loop must outlive any one bug
        log.exception("sync failed %s", doing, extra={"event": "sync_bug"})
        return SyncFailure("bug", f"{doing}: {type(exc).__name__}")


def _describe(outcome: Refused | Rejected | RetryLater) -> str:
    if isinstance(outcome, RetryLater):
        return f"{outcome.reason}: {outcome.detail}"
    return f"{outcome.status} {outcome.error}: {outcome.detail}"


def _batch_body(batch: list[tuple[str, str]]) -> bytes:
    return (_BATCH_HEAD + ",".join(body for _, body in batch) + _BATCH_TAIL).encode("utf-8")


def _body_size(body: str) -> int:
    return len(body) if body.isascii() else len(body.encode("utf-8"))


def _split_by_size(rows: list[tuple[str, str]], limit: int) -> list[list[tuple[str, str]]]:
    """Consecutive groups whose request bodies stay within `limit` bytes (an entry too big even
    alone still gets a group of its own: the collector's 413 then says so)."""
    groups: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    size = len(_BATCH_HEAD) + len(_BATCH_TAIL)
    for row in rows:
        extra = _body_size(row[1]) + (1 if current else 0)
        if current and size + extra > limit:
            groups.append(current)
            current, size = [], len(_BATCH_HEAD) + len(_BATCH_TAIL)
            extra = _body_size(row[1])
        current.append(row)
        size += extra
    if current:
        groups.append(current)
    return groups
