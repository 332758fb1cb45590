"""Daily partitions of the PostgreSQL `entries` table, created on demand and ahead of time.

An entry lives in the partition of its `ts` day (UTC). `ts` is the kiosk's clock, so it may be
anything; days within `PAST_DAYS` before to `AHEAD_DAYS` after the collector's clock get their
own partition, other days go to `entries_default`. Should a day later come within range while the
default partition holds rows of it (a kiosk clock far ahead), creating its partition moves those
rows over in the same transaction. Retention is dropping whole partitions (`DROP TABLE
entries_pYYYYMMDD` after deleting its ids from `entry_ids`).

Partitions are created under one advisory lock, so several collectors never race to make the
same one; each process remembers the days it knows exist, so the check costs nothing per batch.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

DAY_S = 86400
PAST_DAYS = 400
AHEAD_DAYS = 3
PARTITION_LOCK = 0x6B696F736B01  # "kiosk" + 1: the advisory lock of partition changes


def day_of(ts: float) -> int:
    return math.floor(ts / DAY_S)


def partition_name(day: int) -> str:
    return "entries_p" + datetime.fromtimestamp(day * DAY_S, tz=UTC).strftime("%Y%m%d")


def _bound(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_S, tz=UTC).strftime("%Y-%m-%d 00:00:00+00")


class DailyPartitions:
    def __init__(self) -> None:
        self._known: set[int] = set()

    def wanted(self, days: set[int], now: float) -> set[int]:
        today = day_of(now)
        return {
            day
            for day in days
            if today - PAST_DAYS <= day <= today + AHEAD_DAYS and day not in self._known
        }

    async def ensure(self, conn: Any, days: set[int], now: float) -> None:
        """Make sure each day near `now` has its partition (`conn`: an asyncpg connection,
        outside any transaction)."""
        missing = self.wanted(days, now)
        if not missing:
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            existing = {
                row[0]
                for row in await conn.fetch(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'entries'::regclass"
                )
            }
            for day in sorted(missing):
                name = partition_name(day)
                if name not in existing:
                    await self._create(conn, day, name)
        self._known |= missing

    async def _create(self, conn: Any, day: int, name: str) -> None:
        low, high = day * DAY_S, (day + 1) * DAY_S
        stranded = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM entries_default WHERE ts >= $1 AND ts < $2)", low, high
        )
        bounds = f"FOR VALUES FROM ('{_bound(day)}') TO ('{_bound(day + 1)}')"
        if not stranded:
            await conn.execute(f"CREATE TABLE {name} PARTITION OF entries {bounds}")
            return
        await conn.execute(
            f"CREATE TABLE {name} (LIKE entries INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        await conn.execute(
            f"WITH moved AS (DELETE FROM entries_default WHERE ts >= $1 AND ts < $2 RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved",
            low,
            high,
        )
        await conn.execute(f"ALTER TABLE entries ATTACH PARTITION {name} {bounds}")
