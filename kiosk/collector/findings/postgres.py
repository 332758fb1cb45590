"""The findings queries on PostgreSQL: the statements of findings/sqlite.py in PostgreSQL's
dialect (timestamptz, FILTER, GREATEST/LEAST), run in one REPEATABLE READ transaction so the
answer is one snapshot. Times cross as Unix seconds (the storage's timestamptz codec)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import asyncpg

from kiosk.collector.findings.model import (
    EntryEvidence,
    Evidence,
    FindingsQuery,
    GapEvidence,
    HeartbeatEvidence,
    Readings,
    ReadingsEvidence,
    SilentEvidence,
)
from kiosk.collector.storage.base import (
    ENTRY_BROKEN_CHAIN,
    ENTRY_MASK_UNCHECKED,
    ENTRY_NO_CODE,
    ENTRY_NO_TEMPERATURE,
    ENTRY_OVERRIDE,
    HEARTBEAT_AFTER_SILENCE,
    HEARTBEAT_CLOCK_SKEW,
    HEARTBEAT_POLICY_DRIFT,
    HEARTBEAT_STALE_TRUST,
    HEARTBEAT_THERMOMETER_FAULT,
    StorageError,
)
from kiosk.collector.storage.postgres import PostgresStorage
from kiosk.findings import (
    IMPLAUSIBLE_MAX_SHARE,
    LOG_GAP_GRACE_S,
    PLAUSIBLE_MAX_C,
    PLAUSIBLE_MIN_C,
    STUCK_MAX_VARIANCE_TENTHS,
    STUCK_MIN_READINGS,
)

# As in findings/sqlite.py: a whole-city form (the region is applied afterwards to the few rows
# of evidence) and a one-venue form restricted to the venue's kiosks. Aggregating before any
# join keeps the planner from looping over venues it cannot estimate.
_KIOSKS_OF_VENUE = "(SELECT kiosk_id FROM kiosks WHERE venue_id = :venue::text)"


def _only(one_venue: bool) -> Callable[[str], str]:
    def restrict(alias: str) -> str:
        return f" AND {alias}.kiosk_id IN {_KIOSKS_OF_VENUE}" if one_venue else ""

    return restrict


def _entry_evidence_sql(one_venue: bool) -> str:
    only = _only(one_venue)
    return f"""
WITH flagged AS MATERIALIZED (
    SELECT e.id, e.kiosk_id, e.venue_id, e.ts, e.flags FROM entries AS e
    WHERE e.flags <> 0 AND e.ts >= :since AND e.ts < :until{only("e")}
),
kinds AS (
    SELECT id, kiosk_id, venue_id, ts, 'override' AS kind FROM flagged
    WHERE flags & {ENTRY_OVERRIDE} <> 0
    UNION ALL
    SELECT id, kiosk_id, venue_id, ts, 'broken_chain' FROM flagged
    WHERE flags & {ENTRY_BROKEN_CHAIN} <> 0
    UNION ALL
    SELECT f.id, f.kiosk_id, f.venue_id, f.ts, 'unchecked' FROM flagged AS f
    WHERE f.flags & {ENTRY_NO_CODE | ENTRY_NO_TEMPERATURE} <> 0
       OR (f.flags & {ENTRY_MASK_UNCHECKED} <> 0
           AND (SELECT v.venue_type FROM venues AS v WHERE v.venue_id = f.venue_id)
               <> ALL (:no_mask_types::text[]))
    UNION ALL
    SELECT r.entry_id, r.kiosk_id, r.venue_id, r.ts, 'reuse' FROM code_reuse AS r
    WHERE r.ts >= :since AND r.ts < :until{only("r")}
),
ranked AS (
    SELECT kiosk_id, venue_id, kind, id, ts,
           row_number() OVER (PARTITION BY kiosk_id, kind ORDER BY ts, id) AS position,
           count(*) OVER (PARTITION BY kiosk_id, kind) AS n,
           min(ts) OVER (PARTITION BY kiosk_id, kind) AS first,
           max(ts) OVER (PARTITION BY kiosk_id, kind) AS last
    FROM kinds
)
SELECT kiosk_id, venue_id, kind, n, first, last, id FROM ranked
WHERE position <= :sample::int ORDER BY kiosk_id, kind, position
"""


def _readings_sql(one_venue: bool) -> str:
    only = _only(one_venue)
    edge = f"""
    SELECT e.kiosk_id, e.venue_id, e.temperature_c AS c FROM entries AS e
    WHERE e.temperature_c IS NOT NULL{only("e")}"""

    def running(bound: str) -> str:
        return f"""(
        SELECT * FROM readings_running AS r WHERE r.kiosk_id = k.kiosk_id AND r.hour < {bound}
        ORDER BY r.hour DESC LIMIT 1)"""

    def total(column: str) -> str:
        return f"u.{column} - coalesce(f.{column}, 0)"

    return f"""
WITH edges AS (
    {edge} AND e.ts >= :since AND e.ts < :head_until
    UNION ALL
    {edge} AND e.ts >= :tail_from AND e.ts < :until
),
parts AS (
    SELECT k.kiosk_id, k.venue_id, {total("readings")} AS n, {total("sum_dc")} AS s,
           {total("sumsq_dc")} AS ss, {total("implausible")} AS bad
    FROM kiosks AS k
    JOIN LATERAL {running(":full_until")} AS u ON true
    LEFT JOIN LATERAL {running(":full_from")} AS f ON true
    WHERE u.hour >= :full_from{only("k")}
    UNION ALL
    SELECT kiosk_id, venue_id, count(*), sum(t), sum(t * t),
           count(*) FILTER (WHERE c < {PLAUSIBLE_MIN_C} OR c > {PLAUSIBLE_MAX_C})
    FROM (SELECT kiosk_id, venue_id, c, round(c * 10)::int AS t FROM edges) AS tenths
    GROUP BY kiosk_id, venue_id
),
totals AS (
    SELECT kiosk_id, venue_id, sum(n)::numeric AS n, sum(s)::numeric AS s,
           sum(ss)::numeric AS ss, sum(bad)::numeric AS bad
    FROM parts GROUP BY kiosk_id, venue_id
)
SELECT kiosk_id, venue_id, n, s, ss, bad FROM totals
WHERE (n >= {STUCK_MIN_READINGS}
       AND (n * ss - s * s) * {STUCK_MAX_VARIANCE_TENTHS.denominator}
           < {STUCK_MAX_VARIANCE_TENTHS.numerator} * n * n)
   OR bad * {round(1 / IMPLAUSIBLE_MAX_SHARE)} > n
"""


_READING_SAMPLES = """
SELECT k.kiosk_id, s.id, s.ts FROM unnest(:kiosks::text[]) AS k (kiosk_id)
CROSS JOIN LATERAL (
    SELECT e.id, e.ts FROM entries AS e
    WHERE e.kiosk_id = k.kiosk_id AND e.ts >= :since AND e.ts < :until
      AND e.temperature_c IS NOT NULL
    ORDER BY e.ts, e.id LIMIT :sample::int) AS s
ORDER BY k.kiosk_id, s.ts, s.id
"""
_LAST_READING = """
SELECT k.kiosk_id, (
    SELECT max(e.ts) FROM entries AS e
    WHERE e.kiosk_id = k.kiosk_id AND e.ts >= :since AND e.ts < :until
      AND e.temperature_c IS NOT NULL)
FROM unnest(:kiosks::text[]) AS k (kiosk_id)
"""
_IMPLAUSIBLE = f"""
SELECT e.kiosk_id, e.id, e.ts FROM entries AS e
WHERE e.kiosk_id = ANY (:kiosks::text[]) AND e.ts >= :since AND e.ts < :until
  AND (e.temperature_c < {PLAUSIBLE_MIN_C} OR e.temperature_c > {PLAUSIBLE_MAX_C})
ORDER BY e.kiosk_id, e.ts, e.id
"""

_HEARTBEAT_KINDS = {
    "reported_fault": HEARTBEAT_THERMOMETER_FAULT,
    "stale": HEARTBEAT_STALE_TRUST,
    "drift": HEARTBEAT_POLICY_DRIFT,
    "skew": HEARTBEAT_CLOCK_SKEW,
}


_BITS = "(VALUES " + ", ".join(f"({bit})" for bit in _HEARTBEAT_KINDS.values()) + ") AS k (bit)"


def _heartbeat_evidence_sql(one_venue: bool) -> str:
    only = _only(one_venue)
    edge = f"""
    SELECT h.kiosk_id, h.venue_id, k.bit, 1, h.received_at, h.received_at
    FROM heartbeats AS h JOIN {_BITS} ON h.flags & k.bit <> 0
    WHERE h.flags <> 0{only("h")}"""
    return f"""
WITH parts (kiosk_id, venue_id, kind, n, first, last) AS (
    SELECT b.kiosk_id, b.venue_id, b.kind, b.beats, b.first, b.last FROM heartbeat_hours AS b
    WHERE b.hour >= :full_from AND b.hour < :full_until{only("b")}
    UNION ALL
    {edge} AND h.received_at >= :since AND h.received_at < :head_until
    UNION ALL
    {edge} AND h.received_at >= :tail_from AND h.received_at < :until
)
SELECT kiosk_id, venue_id, kind, sum(n), min(first), max(last) FROM parts
GROUP BY kiosk_id, venue_id, kind
"""


def _silent_sql(one_venue: bool) -> str:
    only = _only(one_venue)
    return f"""
WITH stretches AS (
    SELECT h.kiosk_id, h.received_at - h.gap_s * interval '1 second' AS start,
           h.received_at AS stop
    FROM heartbeats AS h
    WHERE h.flags & {HEARTBEAT_AFTER_SILENCE} <> 0
      AND h.received_at > :since_plus_silence
      AND h.received_at - h.gap_s * interval '1 second' < :end_minus_silence{only("h")}
    UNION ALL
    SELECT k.kiosk_id, k.provisioned_at, coalesce(st.first_received_at, :end)
    FROM kiosks AS k LEFT JOIN kiosk_state AS st ON st.kiosk_id = k.kiosk_id
    WHERE k.provisioned_at < :end_minus_silence{only("k")}
    UNION ALL
    SELECT st.kiosk_id, st.last_received_at, :end FROM kiosk_state AS st
    WHERE st.last_received_at < :end_minus_silence{only("st")}
),
cut AS (
    SELECT k.kiosk_id, k.venue_id, greatest(s.start, :since, k.provisioned_at) AS start,
           least(s.stop, :end) AS stop
    FROM stretches AS s JOIN kiosks AS k ON k.kiosk_id = s.kiosk_id
)
SELECT kiosk_id, venue_id, count(*), min(start), max(stop) FROM cut
WHERE extract(epoch FROM stop - start) > :silent_after::float8
GROUP BY kiosk_id, venue_id
"""


def _gaps_sql(one_venue: bool) -> str:
    only = _only(one_venue)
    return f"""
WITH candidates AS (
    SELECT l.log_id, l.kiosk_id, l.venue_id FROM logs AS l
    WHERE l.held < l.max_seq{only("l")}
    UNION
    SELECT st.log_id, st.kiosk_id, st.venue_id
    FROM kiosk_state AS st LEFT JOIN logs AS l ON l.log_id = st.log_id
    WHERE st.last_seq - 1 > coalesce(l.max_seq, 0){only("st")}
),
reported AS (
    SELECT c.log_id, c.kiosk_id, c.venue_id, (
        SELECT h.last_seq FROM heartbeats AS h
        WHERE h.log_id = c.log_id AND h.received_at >= :since AND h.received_at < :until
          AND h.received_at <= :cutoff
        ORDER BY h.received_at DESC LIMIT 1) AS top
    FROM candidates AS c
),
holes AS (
    SELECT r.log_id, r.kiosk_id, r.venue_id, r.top,
           r.top - 1 - coalesce((
               SELECT sum(least(lr.last_seq, r.top - 1) - lr.first_seq + 1) FROM log_runs AS lr
               WHERE lr.log_id = r.log_id AND lr.first_seq < r.top), 0) AS missing,
           coalesce((SELECT lr.last_seq + 1 FROM log_runs AS lr
                     WHERE lr.log_id = r.log_id AND lr.first_seq = 1), 1) AS first_missing
    FROM reported AS r WHERE r.top IS NOT NULL
),
reporting AS (
    SELECT g.kiosk_id, g.venue_id, g.missing, (
        SELECT h.received_at FROM heartbeats AS h
        WHERE h.log_id = g.log_id AND h.received_at >= :since AND h.received_at < :until
          AND h.received_at <= :cutoff AND h.last_seq > g.first_missing
        ORDER BY h.received_at LIMIT 1) AS first, (
        SELECT h.received_at FROM heartbeats AS h
        WHERE h.log_id = g.log_id AND h.received_at >= :since AND h.received_at < :until
          AND h.received_at <= :cutoff AND h.last_seq > g.first_missing
        ORDER BY h.received_at DESC LIMIT 1) AS last
    FROM holes AS g WHERE g.missing > 0
)
SELECT kiosk_id, venue_id, sum(missing), min(first), max(last) FROM reporting
WHERE first IS NOT NULL
GROUP BY kiosk_id, venue_id
"""


_SQL = {
    one_venue: {
        "entries": _entry_evidence_sql(one_venue),
        "readings": _readings_sql(one_venue),
        "heartbeats": _heartbeat_evidence_sql(one_venue),
        "silent": _silent_sql(one_venue),
        "gaps": _gaps_sql(one_venue),
    }
    for one_venue in (False, True)
}

_NAME = re.compile(r"(?<!:):([a-z_]+)")


def positional(sql: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """`:name` placeholders to asyncpg's `$n`, with the arguments in order."""
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order[name] = len(order) + 1
        return f"${order[name]}"

    text = _NAME.sub(number, sql)
    return text, [values[name] for name in order]


def params(query: FindingsQuery) -> dict[str, Any]:
    end = min(query.until, query.now)
    return {
        "venue": query.venue_id,
        "since": query.since,
        "until": query.until,
        "end": end,
        "cutoff": query.now - LOG_GAP_GRACE_S,
        "silent_after": query.silent_after_s,
        "since_plus_silence": query.since + query.silent_after_s,
        "end_minus_silence": end - query.silent_after_s,
        "sample": query.sample_size,
        "no_mask_types": sorted(query.no_mask_types),
        **query.hours(),
    }


async def _fetch(conn: Any, sql: str, values: dict[str, Any]) -> list[Any]:
    text, args = positional(sql, values)
    return list(await conn.fetch(text, *args))


async def _entry_evidence(conn: Any, bound: dict[str, Any]) -> list[EntryEvidence]:
    found: dict[tuple[str, str], EntryEvidence] = {}
    for kiosk_id, venue_id, kind, n, first, last, entry_id in await _fetch(
        conn, _SQL[bound["venue"] is not None]["entries"], bound
    ):
        key = (kiosk_id, kind)
        if key not in found:
            found[key] = EntryEvidence(kiosk_id, venue_id, kind, n, first, last, [])
        found[key].sample_entry_ids.append(str(entry_id))
    return list(found.values())


async def _readings_evidence(conn: Any, bound: dict[str, Any]) -> list[ReadingsEvidence]:
    found = await _fetch(conn, _SQL[bound["venue"] is not None]["readings"], bound)
    if not found:
        return []
    # The samples of every kiosk found in three statements, not two or three per kiosk: at
    # 10,000 venues the round trips of 150 such kiosks were a third of the city-wide query.
    kiosks = bound | {"kiosks": [row[0] for row in found]}
    samples: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for kiosk_id, entry_id, ts in await _fetch(conn, _READING_SAMPLES, kiosks):
        samples[kiosk_id].append((ts, str(entry_id)))
    last = {kiosk_id: ts for kiosk_id, ts in await _fetch(conn, _LAST_READING, kiosks)}
    implausible: dict[str, list[tuple[float, str]]] = defaultdict(list)
    with_bad = bound | {"kiosks": [row[0] for row in found if row[5]]}
    if with_bad["kiosks"]:
        for kiosk_id, entry_id, ts in await _fetch(conn, _IMPLAUSIBLE, with_bad):
            implausible[kiosk_id].append((ts, str(entry_id)))
    return [
        ReadingsEvidence(
            kiosk_id,
            venue_id,
            Readings(int(n), int(s), int(ss), int(bad)),
            samples[kiosk_id],
            last[kiosk_id],
            implausible[kiosk_id],
        )
        for kiosk_id, venue_id, n, s, ss, bad in found
    ]


async def _heartbeat_evidence(conn: Any, bound: dict[str, Any]) -> list[HeartbeatEvidence]:
    kind_of = {bit: kind for kind, bit in _HEARTBEAT_KINDS.items()}
    sql = _SQL[bound["venue"] is not None]["heartbeats"]
    return [
        HeartbeatEvidence(kiosk_id, venue_id, kind_of[bit], int(n), first, last)
        for kiosk_id, venue_id, bit, n, first, last in await _fetch(conn, sql, bound)
    ]


async def evidence(storage: PostgresStorage, query: FindingsQuery) -> Evidence:
    """All the evidence of one query, in one snapshot."""
    bound = params(query)
    try:
        async with (
            storage.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await _gather(conn, bound)
    except (asyncpg.PostgresError, OSError) as exc:
        raise StorageError(f"the findings query failed: {exc}") from exc


async def _gather(conn: Any, bound: dict[str, Any]) -> Evidence:
    # These statements read little but look costly to the planner (correlated subqueries over
    # large tables, partial indexes it cannot size): JIT compilation would cost seconds and
    # parallel workers their start-up, and neither saves anything here.
    await conn.execute("SET LOCAL jit = off")
    await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    return Evidence(
        await _entry_evidence(conn, bound),
        await _readings_evidence(conn, bound),
        await _heartbeat_evidence(conn, bound),
        [
            SilentEvidence(*row)
            for row in await _fetch(conn, _SQL[bound["venue"] is not None]["silent"], bound)
        ],
        [
            GapEvidence(k, v, int(n), first, last)
            for k, v, n, first, last in await _fetch(
                conn, _SQL[bound["venue"] is not None]["gaps"], bound
            )
        ],
    )
