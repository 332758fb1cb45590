"""The two reads the dashboard makes beside the inspectors' API: the regions that exist (for the
district filter) and a unit's entries and denials per hour (for its chart).

Neither is a finding nor an entry-level read: the regions are names of places, the chart reads
the hourly rollups (`kiosk_hours`, counts kept at ingest) of one unit, after the unit page has
passed the API's own scope check. Scope is decided by `tokens.region_covers`, the function the
API's authorization uses.
"""

from __future__ import annotations

from kiosk.collector.dashboard_chart import HOUR_S
from kiosk.collector.storage.base import Storage, StorageError
from kiosk.collector.storage.postgres import PostgresStorage
from kiosk.collector.storage.sqlite import SqliteStorage
from kiosk.collector.tokens import region_covers


async def regions_within(storage: Storage, scope: str | None) -> list[str]:
    """Every region a venue has, and each region between it and `scope`, that `scope` covers
    (None: an admin, everything), sorted."""
    if isinstance(storage, SqliteStorage):
        rows = await storage.read(
            lambda conn: conn.execute("SELECT DISTINCT region FROM venues").fetchall()
        )
    elif isinstance(storage, PostgresStorage):
        rows = await storage.fetch("SELECT DISTINCT region FROM venues")
    else:
        raise StorageError("the dashboard needs the collector's SQLite or PostgreSQL storage")
    found: set[str] = set()
    for (region,) in rows:
        segments = str(region).split("/")
        for depth in range(1, len(segments) + 1):
            path = "/".join(segments[:depth])
            if scope is None or region_covers(scope, path):
                found.add(path)
    return sorted(found)


async def hourly_decisions(
    storage: Storage, venue_id: str, since: float, until: float
) -> dict[float, tuple[int, int]]:
    """(allowed, denied) entries of the venue's kiosks per hour start in `[since, until)`, from
    the hourly rollups (whole hours; both bounds are hour starts here)."""
    if isinstance(storage, SqliteStorage):
        rows = await storage.read(
            lambda conn: conn.execute(
                "SELECT hour, SUM(allows), SUM(denies) FROM kiosk_hours "
                "WHERE venue_id = ? AND hour >= ? AND hour < ? GROUP BY hour",
                (venue_id, int(since), int(until)),
            ).fetchall()
        )
    elif isinstance(storage, PostgresStorage):
        rows = await storage.fetch(
            "SELECT extract(epoch FROM hour)::float8, SUM(allows)::bigint, SUM(denies)::bigint "
            "FROM kiosk_hours WHERE venue_id = $1 AND hour >= to_timestamp($2) "
            "AND hour < to_timestamp($3) GROUP BY hour",
            venue_id,
            since,
            until,
        )
    else:
        raise StorageError("the dashboard needs the collector's SQLite or PostgreSQL storage")
    counts: dict[float, tuple[int, int]] = {}
    for hour, allowed, denied in rows:
        start = float(hour) - float(hour) % HOUR_S
        previous = counts.get(start, (0, 0))
        counts[start] = (previous[0] + int(allowed or 0), previous[1] + int(denied or 0))
    return counts
