"""The findings queries on SQLite: plain SQL over indexed columns, rollups and flags kept at
ingest. Every statement reads a bounded slice: flagged rows of the window (partial indexes by
time), hourly rollups of the window, one row per kiosk or log; never the entries of the window
as a whole. Run inside one read transaction, so the answer is one snapshot.

kiosk/collector/findings/__init__.py says what each part computes; the PostgreSQL module holds
the same statements in its dialect.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

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
)
from kiosk.findings import (
    IMPLAUSIBLE_MAX_SHARE,
    LOG_GAP_GRACE_S,
    PLAUSIBLE_MAX_C,
    PLAUSIBLE_MIN_C,
    STUCK_MAX_VARIANCE_TENTHS,
    STUCK_MIN_READINGS,
)

# Every statement comes in two forms: for the whole city (the region is applied afterwards, to
# the few rows of evidence, kiosk.collector.findings) and for one venue, whose kiosks' own
# indexes are then used. `{only(x)}` is empty or restricts table alias x to the venue's kiosks.
_KIOSKS_OF_VENUE = "(SELECT kiosk_id FROM kiosks WHERE venue_id = :venue)"


def _only(one_venue: bool) -> Callable[[str], str]:
    def restrict(alias: str) -> str:
        return f" AND {alias}.kiosk_id IN {_KIOSKS_OF_VENUE}" if one_venue else ""

    return restrict


def _entry_evidence_sql(one_venue: bool) -> str:
    only = _only(one_venue)
    by = "entries_flagged" if one_venue else "entries_flagged_ts"
    return f"""
WITH flagged AS MATERIALIZED (
    SELECT e.id, e.kiosk_id, e.venue_id, e.ts, e.flags FROM entries AS e INDEXED BY {by}
    WHERE e.flags <> 0 AND e.ts >= :since AND e.ts < :until{only("e")}
),
kinds AS (
    SELECT id, kiosk_id, venue_id, ts, 'override' AS kind FROM flagged
    WHERE flags & {ENTRY_OVERRIDE}
    UNION ALL
    SELECT id, kiosk_id, venue_id, ts, 'broken_chain' FROM flagged
    WHERE flags & {ENTRY_BROKEN_CHAIN}
    UNION ALL
    SELECT f.id, f.kiosk_id, f.venue_id, f.ts, 'unchecked' FROM flagged AS f
    WHERE f.flags & {ENTRY_NO_CODE | ENTRY_NO_TEMPERATURE}
       OR (f.flags & {ENTRY_MASK_UNCHECKED}
           AND (SELECT v.venue_type FROM venues AS v WHERE v.venue_id = f.venue_id)
               NOT IN (SELECT value FROM json_each(:no_mask_types)))
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
WHERE position <= :sample ORDER BY kiosk_id, kind, position
"""


# Readings per kiosk: the window's whole hours as the difference of two running totals (the
# latest `readings_running` row before each end: two lookups per kiosk), the partial hours at
# either end from the entries themselves (by time, or by the venue's kiosks).
def _readings_sql(one_venue: bool) -> str:
    only = _only(one_venue)
    by = "entries_kiosk_ts" if one_venue else "entries_readings_ts"

    def running(bound: str) -> str:
        return (
            "(SELECT max(r.hour) FROM readings_running AS r "
            f"WHERE r.kiosk_id = k.kiosk_id AND r.hour < {bound})"
        )

    def total(column: str) -> str:
        return f"u.{column} - coalesce(f.{column}, 0)"

    # The partial hours' readings go into the one GROUP BY one row each: grouping them apart
    # first sorted them in a temporary B-tree of their own (a quarter of the whole query at
    # 10,000 kiosks).
    tenths = "CAST(round(e.temperature_c * 10) AS INTEGER)"
    edge = f"""
    SELECT e.kiosk_id, e.venue_id, 1, {tenths}, {tenths} * {tenths},
           e.temperature_c < {PLAUSIBLE_MIN_C} OR e.temperature_c > {PLAUSIBLE_MAX_C}
    FROM entries AS e INDEXED BY {by}
    WHERE e.temperature_c IS NOT NULL{only("e")}"""
    return f"""
WITH bounds AS MATERIALIZED (
    SELECT k.kiosk_id, k.venue_id, {running(":full_until")} AS upto,
           {running(":full_from")} AS before
    FROM kiosks AS k WHERE 1{only("k")}
),
parts (kiosk_id, venue_id, n, s, ss, bad) AS (
    SELECT b.kiosk_id, b.venue_id, {total("readings")}, {total("sum_dc")},
           {total("sumsq_dc")}, {total("implausible")}
    FROM bounds AS b
    JOIN readings_running AS u ON u.kiosk_id = b.kiosk_id AND u.hour = b.upto
    LEFT JOIN readings_running AS f ON f.kiosk_id = b.kiosk_id AND f.hour = b.before
    WHERE b.upto >= :full_from
    UNION ALL
    {edge} AND e.ts >= :since AND e.ts < :head_until
    UNION ALL
    {edge} AND e.ts >= :tail_from AND e.ts < :until
)
SELECT kiosk_id, venue_id, sum(n), sum(s), sum(ss), sum(bad) FROM parts
GROUP BY kiosk_id, venue_id
HAVING (sum(n) >= {STUCK_MIN_READINGS}
        AND (sum(n) * sum(ss) - sum(s) * sum(s)) * {STUCK_MAX_VARIANCE_TENTHS.denominator}
            < {STUCK_MAX_VARIANCE_TENTHS.numerator} * sum(n) * sum(n))
    OR sum(bad) * {round(1 / IMPLAUSIBLE_MAX_SHARE)} > sum(n)
"""


_READING_SAMPLES = """
SELECT id, ts FROM entries INDEXED BY entries_kiosk_ts
WHERE kiosk_id = :kiosk AND ts >= :since AND ts < :until AND temperature_c IS NOT NULL
ORDER BY ts, id LIMIT :sample
"""
_LAST_READING = """
SELECT max(ts) FROM entries INDEXED BY entries_kiosk_ts
WHERE kiosk_id = :kiosk AND ts >= :since AND ts < :until AND temperature_c IS NOT NULL
"""
_IMPLAUSIBLE = f"""
SELECT id, ts FROM entries INDEXED BY entries_kiosk_ts
WHERE kiosk_id = :kiosk AND ts >= :since AND ts < :until
  AND (temperature_c < {PLAUSIBLE_MIN_C} OR temperature_c > {PLAUSIBLE_MAX_C})
ORDER BY ts, id
"""

_HEARTBEAT_KINDS = {
    "reported_fault": HEARTBEAT_THERMOMETER_FAULT,
    "stale": HEARTBEAT_STALE_TRUST,
    "drift": HEARTBEAT_POLICY_DRIFT,
    "skew": HEARTBEAT_CLOCK_SKEW,
}


_BITS = " UNION ALL ".join(f"SELECT {bit} AS bit" for bit in _HEARTBEAT_KINDS.values())


# Flagged heartbeats per kiosk and kind: whole hours from `heartbeat_hours` (kept by a trigger
# at arrival), the partial hours at either end from the flagged heartbeats themselves.
def _heartbeat_evidence_sql(one_venue: bool) -> str:
    only = _only(one_venue)
    hours = "" if one_venue else " INDEXED BY heartbeat_hours_hour"
    by = "heartbeats_flagged" if one_venue else "heartbeats_flagged_received"
    edge = f"""
    SELECT h.kiosk_id, h.venue_id, k.bit, 1, h.received_at, h.received_at
    FROM heartbeats AS h INDEXED BY {by} JOIN ({_BITS}) AS k ON h.flags & k.bit
    WHERE h.flags <> 0{only("h")}"""
    return f"""
WITH parts (kiosk_id, venue_id, kind, n, first, last) AS (
    SELECT b.kiosk_id, b.venue_id, b.kind, b.beats, b.first, b.last FROM heartbeat_hours AS b{hours}
    WHERE b.hour >= :full_from AND b.hour < :full_until{only("b")}
    UNION ALL
    {edge} AND h.received_at >= :since AND h.received_at < :head_until
    UNION ALL
    {edge} AND h.received_at >= :tail_from AND h.received_at < :until
)
SELECT kiosk_id, venue_id, kind, sum(n), min(first), max(last) FROM parts
GROUP BY kiosk_id, venue_id, kind
"""


# Stretches without a heartbeat: the gaps flagged at arrival, the stretch from provisioning to
# the first heartbeat (or to now, for a kiosk never heard), and the one from the latest
# heartbeat on. Each is cut to [max(since, provisioned_at), min(until, now)).
def _silent_sql(one_venue: bool) -> str:
    only = _only(one_venue)
    by = "heartbeats_flagged" if one_venue else "heartbeats_after_silence"
    return f"""
WITH stretches AS (
    SELECT h.kiosk_id, h.received_at - h.gap_s AS start, h.received_at AS stop
    FROM heartbeats AS h INDEXED BY {by}
    WHERE h.flags <> 0 AND h.flags & {HEARTBEAT_AFTER_SILENCE}
      AND h.received_at > :since + :silent_after
      AND h.received_at - h.gap_s < :end - :silent_after{only("h")}
    UNION ALL
    SELECT k.kiosk_id, k.provisioned_at, coalesce(st.first_received_at, :end)
    FROM kiosks AS k LEFT JOIN kiosk_state AS st ON st.kiosk_id = k.kiosk_id
    WHERE k.provisioned_at < :end - :silent_after{only("k")}
    UNION ALL
    SELECT st.kiosk_id, st.last_received_at, :end FROM kiosk_state AS st
    WHERE st.last_received_at < :end - :silent_after{only("st")}
),
cut AS (
    SELECT k.kiosk_id, k.venue_id, max(s.start, :since, k.provisioned_at) AS start,
           min(s.stop, :end) AS stop
    FROM stretches AS s JOIN kiosks AS k ON k.kiosk_id = s.kiosk_id
)
SELECT kiosk_id, venue_id, count(*), min(start), max(stop) FROM cut
WHERE stop - start > :silent_after
GROUP BY kiosk_id, venue_id
"""


# Logs that may miss a seq: a hole below their highest held seq, or a latest heartbeat that
# reports more than they hold. For those only: the highest last_seq reported by heartbeats of
# the window received at least an hour ago (a log's last_seq only grows: the latest one's), the
# seqs held below it (from the runs), the first missing seq, and the earliest and latest of
# those heartbeats that reported a last_seq above it. A few index lookups per log.
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
        SELECT h.last_seq FROM heartbeats AS h INDEXED BY heartbeats_log
        WHERE h.log_id = c.log_id AND h.received_at >= :since AND h.received_at < :until
          AND h.received_at <= :cutoff
        ORDER BY h.received_at DESC LIMIT 1) AS top
    FROM candidates AS c
),
holes AS (
    SELECT r.log_id, r.kiosk_id, r.venue_id, r.top,
           r.top - 1 - coalesce((
               SELECT sum(min(lr.last_seq, r.top - 1) - lr.first_seq + 1) FROM log_runs AS lr
               WHERE lr.log_id = r.log_id AND lr.first_seq < r.top), 0) AS missing,
           coalesce((SELECT lr.last_seq + 1 FROM log_runs AS lr
                     WHERE lr.log_id = r.log_id AND lr.first_seq = 1), 1) AS first_missing
    FROM reported AS r WHERE r.top IS NOT NULL
),
reporting AS (
    SELECT g.kiosk_id, g.venue_id, g.missing, (
        SELECT h.received_at FROM heartbeats AS h INDEXED BY heartbeats_log
        WHERE h.log_id = g.log_id AND h.received_at >= :since AND h.received_at < :until
          AND h.received_at <= :cutoff AND h.last_seq > g.first_missing
        ORDER BY h.received_at LIMIT 1) AS first, (
        SELECT h.received_at FROM heartbeats AS h INDEXED BY heartbeats_log
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


def params(query: FindingsQuery) -> dict[str, Any]:
    return {
        "venue": query.venue_id,
        "since": query.since,
        "until": query.until,
        "end": min(query.until, query.now),
        "cutoff": query.now - LOG_GAP_GRACE_S,
        "silent_after": query.silent_after_s,
        "sample": query.sample_size,
        "no_mask_types": json.dumps(sorted(query.no_mask_types)),
        **query.hours(),
    }


def entry_evidence(conn: sqlite3.Connection, query: FindingsQuery) -> list[EntryEvidence]:
    found: dict[tuple[str, str], EntryEvidence] = {}
    sql = _SQL[query.venue_id is not None]["entries"]
    for kiosk_id, venue_id, kind, n, first, last, entry_id in conn.execute(sql, params(query)):
        key = (kiosk_id, kind)
        if key not in found:
            found[key] = EntryEvidence(kiosk_id, venue_id, kind, n, first, last, [])
        found[key].sample_entry_ids.append(entry_id)
    return list(found.values())


def readings_evidence(conn: sqlite3.Connection, query: FindingsQuery) -> list[ReadingsEvidence]:
    bound = params(query)
    evidence = []
    sql = _SQL[query.venue_id is not None]["readings"]
    for kiosk_id, venue_id, n, s, ss, bad in conn.execute(sql, bound).fetchall():
        readings = Readings(n, s, ss, bad)
        kiosk = bound | {"kiosk": kiosk_id}
        samples = conn.execute(_READING_SAMPLES, kiosk).fetchall()
        (last,) = conn.execute(_LAST_READING, kiosk).fetchone()
        implausible = conn.execute(_IMPLAUSIBLE, kiosk).fetchall() if bad else []
        evidence.append(
            ReadingsEvidence(
                kiosk_id,
                venue_id,
                readings,
                [(ts, i) for i, ts in samples],
                last,
                [(ts, i) for i, ts in implausible],
            )
        )
    return evidence


def heartbeat_evidence(conn: sqlite3.Connection, query: FindingsQuery) -> list[HeartbeatEvidence]:
    kind_of = {bit: kind for kind, bit in _HEARTBEAT_KINDS.items()}
    sql = _SQL[query.venue_id is not None]["heartbeats"]
    return [
        HeartbeatEvidence(kiosk_id, venue_id, kind_of[bit], n, first, last)
        for kiosk_id, venue_id, bit, n, first, last in conn.execute(sql, params(query))
    ]


def silent_evidence(conn: sqlite3.Connection, query: FindingsQuery) -> list[SilentEvidence]:
    sql = _SQL[query.venue_id is not None]["silent"]
    return [SilentEvidence(*row) for row in conn.execute(sql, params(query))]


def gap_evidence(conn: sqlite3.Connection, query: FindingsQuery) -> list[GapEvidence]:
    sql = _SQL[query.venue_id is not None]["gaps"]
    return [GapEvidence(*row) for row in conn.execute(sql, params(query))]


def evidence(conn: sqlite3.Connection, query: FindingsQuery) -> Evidence:
    """All the evidence of one query, in one read transaction."""
    return Evidence(
        entry_evidence(conn, query),
        readings_evidence(conn, query),
        heartbeat_evidence(conn, query),
        silent_evidence(conn, query),
        gap_evidence(conn, query),
    )
