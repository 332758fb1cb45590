"""Retention: entries older than `retention_days` leave the local log, a small batch at a time.

With a collector configured only entries it has accepted (marked sent) may go; unsent ones stay
however old. At the log's size bound the oldest sent entries make room; with none left, the door
says "not recorded" rather than drop an unsent one (kiosk.door.store). A standalone kiosk has no
one to send to, so age alone decides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kiosk.door.store import EntryLog, StoreError

log = logging.getLogger(__name__)

HOURLY = 3600.0
FIRST_RUN_AFTER = 60.0  # let the door settle first; then once an hour
BATCH = 500


async def purge_once(
    entry_log: EntryLog, *, retention_days: int, only_sent: bool, now: float, batch: int = BATCH
) -> int:
    """Delete what is due now; returns how many entries went. StoreError when the log fails."""
    cutoff = now - retention_days * 86400.0
    deleted = await entry_log.purge(older_than=cutoff, only_sent=only_sent, batch=batch)
    if deleted:
        log.info(
            "retention removed %d entries older than %d days",
            deleted,
            retention_days,
            extra={"event": "retention", "deleted": deleted},
        )
    return deleted


async def retention_loop(
    entry_log: EntryLog,
    *,
    retention_days: int,
    only_sent: bool,
    clock: Callable[[], float] = time.time,
    interval: float = HOURLY,
    first_after: float = FIRST_RUN_AFTER,
    batch: int = BATCH,
) -> None:
    """Run `purge_once` after `first_after` seconds and then every `interval`, until cancelled.
    A failing log is logged and tried again next time; it never stops the door."""
    await asyncio.sleep(first_after)
    while True:
        try:
            await purge_once(
                entry_log,
                retention_days=retention_days,
                only_sent=only_sent,
                now=clock(),
                batch=batch,
            )
        except StoreError as exc:
            log.warning("retention could not purge the entry log: %s", exc.reason)
        await asyncio.sleep(interval)
