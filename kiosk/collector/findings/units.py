"""One unit (venue) for inspectors: its kiosks and their latest heartbeat, its entry counts in a
window, its rectification status and history, and changing that status.

Counts come like the findings' readings: whole hours from the rollups (`kiosk_hours`,
`kiosk_hour_reasons`), the partial hours at the window's ends from the unit's own entries on
`(kiosk_id, ts)`. A status change updates the venue, appends to `unit_status_changes`, is
audited and bumps the configuration generation (so the unit's kiosks see a new ETag and
`unit_status`), all in one transaction. SQLite and PostgreSQL statements sit side by side.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kiosk.collector.findings.model import FindingsQuery
from kiosk.collector.storage import postgres_sql, sqlite_sql
from kiosk.collector.storage.base import Actor, NotFound, Storage, StorageError
from kiosk.collector.storage.postgres import PostgresStorage
from kiosk.collector.storage.sqlite import SqliteStorage


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: str
    note: str
    set_by: str
    set_at: float


@dataclass(frozen=True, slots=True)
class UnitHeader:
    venue_id: str
    name: str
    region: str
    venue_type: str
    status: str
    note: str | None
    set_by: str | None
    set_at: float | None


@dataclass(frozen=True, slots=True)
class KioskView:
    kiosk_id: str
    provisioned_at: float
    last_received_at: float | None
    last_ts: float | None
    clock_offset_s: float | None
    heartbeat: dict[str, Any] | None  # the latest heartbeat's members as the kiosk sent them


@dataclass
class EntryCounts:
    total: int = 0
    allow: int = 0
    deny: int = 0
    by_reason: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True, slots=True)
class UnitDetail:
    header: UnitHeader
    kiosks: list[KioskView]
    counts: EntryCounts
    history: list[StatusChange]


_HEADER = (
    "SELECT venue_id, name, region, venue_type, unit_status, status_note, status_set_by, "
    "status_set_at FROM venues"
)


# -- SQLite ------------------------------------------------------------------------------------


def _sqlite_headers(conn: sqlite3.Connection, venue_ids: list[str]) -> dict[str, UnitHeader]:
    rows = conn.execute(
        _HEADER + " WHERE venue_id IN (SELECT value FROM json_each(?))", (json.dumps(venue_ids),)
    )
    return {row[0]: UnitHeader(*row) for row in rows}


def _sqlite_history(conn: sqlite3.Connection, venue_id: str) -> list[StatusChange]:
    rows = conn.execute(
        "SELECT status, note, set_by, set_at FROM unit_status_changes WHERE venue_id = ? "
        "ORDER BY set_at, change_id",
        (venue_id,),
    )
    return [StatusChange(*row) for row in rows]


def _sqlite_detail(conn: sqlite3.Connection, query: FindingsQuery) -> UnitDetail | None:
    venue_id = query.venue_id
    assert venue_id is not None
    header = _sqlite_headers(conn, [venue_id]).get(venue_id)
    if header is None:
        return None
    kiosks = [
        KioskView(k, p, r, t, o, json.loads(b) if b is not None else None)
        for k, p, r, t, o, b in conn.execute(
            "SELECT k.kiosk_id, k.provisioned_at, s.last_received_at, s.last_ts, s.last_offset_s,"
            " s.body FROM kiosks AS k LEFT JOIN kiosk_state AS s ON s.kiosk_id = k.kiosk_id "
            "WHERE k.venue_id = ? ORDER BY k.kiosk_id",
            (venue_id,),
        )
    ]
    hours = query.hours()
    counts = EntryCounts()
    bound = {"venue": venue_id, "since": query.since, "until": query.until, **hours}
    for total, allows, denies in conn.execute(
        "SELECT coalesce(sum(entries), 0), coalesce(sum(allows), 0), coalesce(sum(denies), 0) "
        "FROM kiosk_hours WHERE kiosk_id IN (SELECT kiosk_id FROM kiosks WHERE venue_id = :venue)"
        " AND hour >= :full_from AND hour < :full_until",
        bound,
    ):
        counts.total, counts.allow, counts.deny = total, allows, denies
    for decision, reason, n in conn.execute(
        "SELECT decision, reason, sum(entries) FROM kiosk_hour_reasons WHERE kiosk_id IN "
        "(SELECT kiosk_id FROM kiosks WHERE venue_id = :venue) AND hour >= :full_from "
        "AND hour < :full_until GROUP BY decision, reason",
        bound,
    ):
        counts.by_reason[(decision, reason)] += n
    edges = (
        "SELECT e.decision, e.body FROM kiosks AS k JOIN entries AS e INDEXED BY entries_kiosk_ts "
        "ON e.kiosk_id = k.kiosk_id WHERE k.venue_id = :venue AND ((e.ts >= :since AND "
        "e.ts < :head_until) OR (e.ts >= :tail_from AND e.ts < :until))"
    )
    for decision, body in conn.execute(edges, bound):
        _count_edge(counts, decision, json.loads(body).get("reasons", []))
    return UnitDetail(header, kiosks, counts, _sqlite_history(conn, venue_id))


def _count_edge(counts: EntryCounts, decision: str, reasons: list[str]) -> None:
    counts.total += 1
    if decision == "allow":
        counts.allow += 1
    else:
        counts.deny += 1
    for reason in reasons:
        counts.by_reason[(decision, reason)] += 1


def _sqlite_set_status(
    conn: sqlite3.Connection, venue_id: str, status: str, note: str, actor: Actor, now: float
) -> list[StatusChange]:
    if conn.execute("SELECT 1 FROM venues WHERE venue_id = ?", (venue_id,)).fetchone() is None:
        raise NotFound(f"no venue {venue_id!r}")
    conn.execute(
        "UPDATE venues SET unit_status = ?, status_note = ?, status_set_by = ?, "
        "status_set_at = ? WHERE venue_id = ?",
        (status, note, actor.name, now, venue_id),
    )
    conn.execute(
        "INSERT INTO unit_status_changes (venue_id, status, note, set_by, set_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (venue_id, status, note, actor.name, now),
    )
    sqlite_sql.record_audit(
        conn, actor, "set_unit_status", venue_id, {"status": status, "note": note}, now
    )
    sqlite_sql.bump_config_generation(conn)
    return _sqlite_history(conn, venue_id)


# -- PostgreSQL --------------------------------------------------------------------------------


async def _pg_headers(conn: Any, venue_ids: list[str]) -> dict[str, UnitHeader]:
    rows = await conn.fetch(_HEADER + " WHERE venue_id = ANY ($1::text[])", venue_ids)
    return {row[0]: UnitHeader(*row) for row in rows}


async def _pg_history(conn: Any, venue_id: str) -> list[StatusChange]:
    rows = await conn.fetch(
        "SELECT status, note, set_by, set_at FROM unit_status_changes WHERE venue_id = $1 "
        "ORDER BY set_at, change_id",
        venue_id,
    )
    return [StatusChange(*row) for row in rows]


async def _pg_detail(conn: Any, query: FindingsQuery) -> UnitDetail | None:
    venue_id = query.venue_id
    assert venue_id is not None
    header = (await _pg_headers(conn, [venue_id])).get(venue_id)
    if header is None:
        return None
    kiosks = [
        KioskView(k, p, r, t, o, json.loads(b) if isinstance(b, str) else b)
        for k, p, r, t, o, b in await conn.fetch(
            "SELECT k.kiosk_id, k.provisioned_at, s.last_received_at, s.last_ts, s.last_offset_s,"
            " s.body::text FROM kiosks AS k LEFT JOIN kiosk_state AS s "
            "ON s.kiosk_id = k.kiosk_id WHERE k.venue_id = $1 ORDER BY k.kiosk_id",
            venue_id,
        )
    ]
    hours = query.hours()
    window = (hours["full_from"], hours["full_until"])
    counts = EntryCounts()
    row = await conn.fetchrow(
        "SELECT coalesce(sum(entries), 0), coalesce(sum(allows), 0), coalesce(sum(denies), 0) "
        "FROM kiosk_hours WHERE kiosk_id IN (SELECT kiosk_id FROM kiosks WHERE venue_id = $1) "
        "AND hour >= $2 AND hour < $3",
        venue_id,
        *window,
    )
    counts.total, counts.allow, counts.deny = (int(value) for value in row)
    for decision, reason, n in await conn.fetch(
        "SELECT decision, reason, sum(entries) FROM kiosk_hour_reasons WHERE kiosk_id IN "
        "(SELECT kiosk_id FROM kiosks WHERE venue_id = $1) AND hour >= $2 AND hour < $3 "
        "GROUP BY decision, reason",
        venue_id,
        *window,
    ):
        counts.by_reason[(decision, reason)] += int(n)
    for decision, body in await conn.fetch(
        "SELECT e.decision, e.body FROM kiosks AS k JOIN entries AS e ON e.kiosk_id = k.kiosk_id"
        " WHERE k.venue_id = $1 AND ((e.ts >= $2 AND e.ts < $3) OR (e.ts >= $4 AND e.ts < $5))",
        venue_id,
        query.since,
        hours["head_until"],
        hours["tail_from"],
        query.until,
    ):
        _count_edge(counts, decision, json.loads(body).get("reasons", []))
    return UnitDetail(header, kiosks, counts, await _pg_history(conn, venue_id))


async def _pg_set_status(
    conn: Any, venue_id: str, status: str, note: str, actor: Actor, now: float
) -> list[StatusChange]:
    updated = await conn.execute(
        "UPDATE venues SET unit_status = $2, status_note = $3, status_set_by = $4, "
        "status_set_at = $5 WHERE venue_id = $1",
        venue_id,
        status,
        note,
        actor.name,
        now,
    )
    if updated.endswith(" 0"):
        raise NotFound(f"no venue {venue_id!r}")
    await conn.execute(
        "INSERT INTO unit_status_changes (venue_id, status, note, set_by, set_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        venue_id,
        status,
        note,
        actor.name,
        now,
    )
    await postgres_sql.record_audit(
        conn, actor, "set_unit_status", venue_id, {"status": status, "note": note}, now
    )
    await postgres_sql.bump_config_generation(conn)
    return await _pg_history(conn, venue_id)


# -- the interface -----------------------------------------------------------------------------


async def unit_headers(storage: Storage, venue_ids: list[str]) -> dict[str, UnitHeader]:
    if not venue_ids:
        return {}
    if storage.dialect == "sqlite":
        sqlite_storage = _sqlite(storage)
        return await sqlite_storage.read(lambda conn: _sqlite_headers(conn, venue_ids))
    pg = _postgres(storage)
    async with pg.pool.acquire() as conn:
        return await _pg_headers(conn, venue_ids)


async def unit_detail(storage: Storage, query: FindingsQuery) -> UnitDetail | None:
    """The unit `query.venue_id` in the window, as one snapshot; None when there is none."""
    if storage.dialect == "sqlite":
        sqlite_storage = _sqlite(storage)
        return await sqlite_storage.read(lambda conn: _sqlite_detail(conn, query))
    pg = _postgres(storage)
    async with (
        pg.pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        return await _pg_detail(conn, query)


async def set_unit_status(
    storage: Storage, venue_id: str, status: str, note: str, *, actor: Actor, now: float
) -> list[StatusChange]:
    """Order the unit closed for rectification or let it reopen; its whole history after."""
    if storage.dialect == "sqlite":
        sqlite_storage = _sqlite(storage)
        return await sqlite_storage.write(
            lambda conn: _sqlite_set_status(conn, venue_id, status, note, actor, now)
        )
    pg = _postgres(storage)
    return await pg.transaction(
        lambda conn: _pg_set_status(conn, venue_id, status, note, actor, now)
    )


def _sqlite(storage: Storage) -> SqliteStorage:
    if not isinstance(storage, SqliteStorage):
        raise StorageError("units need the collector's SQLite storage")
    return storage


def _postgres(storage: Storage) -> PostgresStorage:
    if not isinstance(storage, PostgresStorage):
        raise StorageError("units need the collector's PostgreSQL storage")
    return storage
