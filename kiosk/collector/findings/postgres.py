"""The findings queries on PostgreSQL: the statements of findings/sqlite.py in PostgreSQL's
dialect (timestamptz, FILTER, GREATEST/LEAST), run in one REPEATABLE READ transaction so the
answer is one snapshot. Times cross as Unix seconds (the storage's timestamptz codec)."""

from __future__ import annotations

import re
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

_SCOPED = """
scoped AS (
    SELECT venue_id, venue_type FROM venues
    WHERE (:region::text = '' OR region = :region::text
           OR left(region, length(:region::text) + 1) = :region::text || '/')
      AND (:venue::text IS NULL OR venue_id = :venue::text)
)"""

_ENTRY_EVIDENCE = f"""
WITH {_SCOPED},
flagged AS MATERIALIZED (
    SELECT e.id, e.kiosk_id, e.venue_id, e.ts, e.flags, s.venue_type
    FROM entries AS e JOIN scoped AS s ON s.venue_id = e.venue_id
    WHERE e.flags <> 0 AND e.ts >= :since AND e.ts < :until
),
kinds AS (
    SELECT id, kiosk_id, venue_id, ts, 'override' AS kind FROM flagged
    WHERE flags & {ENTRY_OVERRIDE} <> 0
    UNION ALL
    SELECT id, kiosk_id, venue_id, ts, 'broken_chain' FROM flagged
    WHERE flags & {ENTRY_BROKEN_CHAIN} <> 0
    UNION ALL
    SELECT id, kiosk_id, venue_id, ts, 'unchecked' FROM flagged
    WHERE flags & {ENTRY_NO_CODE | ENTRY_NO_TEMPERATURE} <> 0
       OR (flags & {ENTRY_MASK_UNCHECKED} <> 0 AND venue_type <> ALL (:no_mask_types::text[]))
    UNION ALL
    SELECT r.entry_id, r.kiosk_id, r.venue_id, r.ts, 'reuse'
    FROM code_reuse AS r JOIN scoped AS s ON s.venue_id = r.venue_id
    WHERE r.ts >= :since AND r.ts < :until
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

_READINGS = f"""
WITH {_SCOPED},
edges AS (
    SELECT e.kiosk_id, e.venue_id, e.temperature_c AS c
    FROM entries AS e JOIN scoped USING (venue_id)
    WHERE e.temperature_c IS NOT NULL
      AND ((e.ts >= :since AND e.ts < :head_until) OR (e.ts >= :tail_from AND e.ts < :until))
),
parts AS (
    SELECT h.kiosk_id, h.venue_id, h.readings::bigint AS n, h.readings_sum_dc::numeric AS s,
           h.readings_sumsq_dc::numeric AS ss, h.implausible::bigint AS bad
    FROM kiosk_hours AS h JOIN scoped USING (venue_id)
    WHERE h.hour >= :full_from AND h.hour < :full_until AND h.readings > 0
    UNION ALL
    SELECT kiosk_id, venue_id, 1, t, t * t,
           (c < {PLAUSIBLE_MIN_C} OR c > {PLAUSIBLE_MAX_C})::int
    FROM (SELECT kiosk_id, venue_id, c, round(c * 10)::numeric AS t FROM edges) AS tenths
)
SELECT kiosk_id, venue_id, sum(n), sum(s), sum(ss), sum(bad) FROM parts
GROUP BY kiosk_id, venue_id
HAVING (sum(n) >= {STUCK_MIN_READINGS}
        AND (sum(n) * sum(ss) - sum(s) * sum(s)) * {STUCK_MAX_VARIANCE_TENTHS.denominator}
            < {STUCK_MAX_VARIANCE_TENTHS.numerator} * sum(n) * sum(n))
    OR sum(bad) * {round(1 / IMPLAUSIBLE_MAX_SHARE)} > sum(n)
"""

_READING_SAMPLES = """
SELECT id, ts FROM entries
WHERE kiosk_id = :kiosk::text AND ts >= :since AND ts < :until AND temperature_c IS NOT NULL
ORDER BY ts, id LIMIT :sample::int
"""
_LAST_READING = """
SELECT max(ts) FROM entries
WHERE kiosk_id = :kiosk::text AND ts >= :since AND ts < :until AND temperature_c IS NOT NULL
"""
_IMPLAUSIBLE = f"""
SELECT id, ts FROM entries
WHERE kiosk_id = :kiosk::text AND ts >= :since AND ts < :until
  AND (temperature_c < {PLAUSIBLE_MIN_C} OR temperature_c > {PLAUSIBLE_MAX_C})
ORDER BY ts, id
"""

_HEARTBEAT_KINDS = {
    "reported_fault": HEARTBEAT_THERMOMETER_FAULT,
    "stale": HEARTBEAT_STALE_TRUST,
    "drift": HEARTBEAT_POLICY_DRIFT,
    "skew": HEARTBEAT_CLOCK_SKEW,
}


def _beat_kind(bit: int) -> str:
    having = f"FILTER (WHERE flags & {bit} <> 0)"
    return f"count(*) {having}, min(received_at) {having}, max(received_at) {having}"


_HEARTBEAT_EVIDENCE = f"""
WITH {_SCOPED}
SELECT h.kiosk_id, h.venue_id, {", ".join(_beat_kind(bit) for bit in _HEARTBEAT_KINDS.values())}
FROM heartbeats AS h JOIN scoped USING (venue_id)
WHERE h.flags <> 0 AND h.received_at >= :since AND h.received_at < :until
  AND h.flags & {sum(_HEARTBEAT_KINDS.values())} <> 0
GROUP BY h.kiosk_id, h.venue_id
"""

_SILENT = f"""
WITH {_SCOPED},
stretches AS (
    SELECT h.kiosk_id, h.received_at - h.gap_s * interval '1 second' AS start,
           h.received_at AS stop
    FROM heartbeats AS h JOIN scoped USING (venue_id)
    WHERE h.flags <> 0 AND h.flags & {HEARTBEAT_AFTER_SILENCE} <> 0
      AND h.received_at > :since_plus_silence
      AND h.received_at - h.gap_s * interval '1 second' < :end_minus_silence
    UNION ALL
    SELECT k.kiosk_id, k.provisioned_at, coalesce(st.first_received_at, :end)
    FROM kiosks AS k JOIN scoped USING (venue_id)
    LEFT JOIN kiosk_state AS st ON st.kiosk_id = k.kiosk_id
    UNION ALL
    SELECT st.kiosk_id, st.last_received_at, :end
    FROM kiosk_state AS st JOIN scoped USING (venue_id)
    WHERE st.last_received_at < :end_minus_silence
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

_GAPS = f"""
WITH {_SCOPED},
candidates AS (
    SELECT l.log_id, l.kiosk_id, l.venue_id FROM logs AS l JOIN scoped USING (venue_id)
    WHERE l.held < l.max_seq
    UNION
    SELECT st.log_id, st.kiosk_id, st.venue_id
    FROM kiosk_state AS st JOIN scoped USING (venue_id)
    LEFT JOIN logs AS l ON l.log_id = st.log_id
    WHERE st.last_seq - 1 > coalesce(l.max_seq, 0)
),
reported AS (
    SELECT c.log_id, c.kiosk_id, c.venue_id, max(h.last_seq) AS top
    FROM candidates AS c JOIN heartbeats AS h ON h.log_id = c.log_id
    WHERE h.received_at >= :since AND h.received_at < :until AND h.received_at <= :cutoff
    GROUP BY c.log_id, c.kiosk_id, c.venue_id
),
holes AS (
    SELECT r.log_id, r.kiosk_id, r.venue_id, r.top,
           r.top - 1 - coalesce((
               SELECT sum(least(lr.last_seq, r.top - 1) - lr.first_seq + 1) FROM log_runs AS lr
               WHERE lr.log_id = r.log_id AND lr.first_seq < r.top), 0) AS missing,
           coalesce((SELECT lr.last_seq + 1 FROM log_runs AS lr
                     WHERE lr.log_id = r.log_id AND lr.first_seq = 1), 1) AS first_missing
    FROM reported AS r
)
SELECT o.kiosk_id, o.venue_id, sum(o.missing), min(b.first), max(b.last)
FROM holes AS o JOIN (
    SELECT g.log_id, min(h.received_at) AS first, max(h.received_at) AS last
    FROM holes AS g JOIN heartbeats AS h ON h.log_id = g.log_id
    WHERE g.missing > 0 AND h.received_at >= :since AND h.received_at < :until
      AND h.received_at <= :cutoff AND h.last_seq > g.first_missing
    GROUP BY g.log_id
) AS b ON b.log_id = o.log_id
WHERE o.missing > 0
GROUP BY o.kiosk_id, o.venue_id
"""

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
        "region": query.region,
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
        conn, _ENTRY_EVIDENCE, bound
    ):
        key = (kiosk_id, kind)
        if key not in found:
            found[key] = EntryEvidence(kiosk_id, venue_id, kind, n, first, last, [])
        found[key].sample_entry_ids.append(str(entry_id))
    return list(found.values())


async def _readings_evidence(conn: Any, bound: dict[str, Any]) -> list[ReadingsEvidence]:
    evidence = []
    for kiosk_id, venue_id, n, s, ss, bad in await _fetch(conn, _READINGS, bound):
        readings = Readings(int(n), int(s), int(ss), int(bad))
        kiosk = bound | {"kiosk": kiosk_id}
        samples = await _fetch(conn, _READING_SAMPLES, kiosk)
        (last,) = (await _fetch(conn, _LAST_READING, kiosk))[0]
        implausible = await _fetch(conn, _IMPLAUSIBLE, kiosk) if bad else []
        evidence.append(
            ReadingsEvidence(
                kiosk_id,
                venue_id,
                readings,
                [(ts, str(i)) for i, ts in samples],
                last,
                [(ts, str(i)) for i, ts in implausible],
            )
        )
    return evidence


async def _heartbeat_evidence(conn: Any, bound: dict[str, Any]) -> list[HeartbeatEvidence]:
    evidence = []
    for row in await _fetch(conn, _HEARTBEAT_EVIDENCE, bound):
        kiosk_id, venue_id, *columns = row
        for index, kind in enumerate(_HEARTBEAT_KINDS):
            n, first, last = columns[3 * index : 3 * index + 3]
            if n:
                evidence.append(HeartbeatEvidence(kiosk_id, venue_id, kind, n, first, last))
    return evidence


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
    return Evidence(
        await _entry_evidence(conn, bound),
        await _readings_evidence(conn, bound),
        await _heartbeat_evidence(conn, bound),
        [SilentEvidence(*row) for row in await _fetch(conn, _SILENT, bound)],
        [
            GapEvidence(k, v, int(n), first, last)
            for k, v, n, first, last in await _fetch(conn, _GAPS, bound)
        ],
    )
