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

# The venues asked about: a region (by whole path segments) or one venue.
_SCOPED = """
scoped AS (
    SELECT venue_id, venue_type FROM venues
    WHERE (:region = '' OR region = :region
           OR substr(region, 1, length(:region) + 1) = :region || '/')
      AND (:venue IS NULL OR venue_id = :venue)
)"""

_ENTRY_EVIDENCE = f"""
WITH {_SCOPED},
flagged AS MATERIALIZED (
    SELECT e.id, e.kiosk_id, e.venue_id, e.ts, e.flags, s.venue_type
    FROM entries AS e INDEXED BY entries_flagged_ts
    JOIN scoped AS s ON s.venue_id = e.venue_id
    WHERE e.flags <> 0 AND e.ts >= :since AND e.ts < :until
),
kinds AS (
    SELECT id, kiosk_id, venue_id, ts, 'override' AS kind FROM flagged
    WHERE flags & {ENTRY_OVERRIDE}
    UNION ALL
    SELECT id, kiosk_id, venue_id, ts, 'broken_chain' FROM flagged
    WHERE flags & {ENTRY_BROKEN_CHAIN}
    UNION ALL
    SELECT id, kiosk_id, venue_id, ts, 'unchecked' FROM flagged
    WHERE flags & {ENTRY_NO_CODE | ENTRY_NO_TEMPERATURE}
       OR (flags & {ENTRY_MASK_UNCHECKED}
           AND venue_type NOT IN (SELECT value FROM json_each(:no_mask_types)))
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
WHERE position <= :sample ORDER BY kiosk_id, kind, position
"""

# Readings per kiosk: whole hours from the rollups, the partial hours at either end from the
# entries themselves (an index on readings by time).
_READINGS = f"""
WITH {_SCOPED},
edges AS (
    SELECT e.kiosk_id, e.venue_id, e.temperature_c AS c FROM entries AS e
    INDEXED BY entries_readings_ts JOIN scoped USING (venue_id)
    WHERE e.temperature_c IS NOT NULL AND e.ts >= :since AND e.ts < :head_until
    UNION ALL
    SELECT e.kiosk_id, e.venue_id, e.temperature_c FROM entries AS e
    INDEXED BY entries_readings_ts JOIN scoped USING (venue_id)
    WHERE e.temperature_c IS NOT NULL AND e.ts >= :tail_from AND e.ts < :until
),
parts AS (
    SELECT h.kiosk_id, h.venue_id, h.readings AS n, h.readings_sum_dc AS s,
           h.readings_sumsq_dc AS ss, h.implausible AS bad
    FROM kiosk_hours AS h JOIN scoped USING (venue_id)
    WHERE h.hour >= :full_from AND h.hour < :full_until AND h.readings > 0
    UNION ALL
    SELECT kiosk_id, venue_id, 1, t, t * t, c < {PLAUSIBLE_MIN_C} OR c > {PLAUSIBLE_MAX_C}
    FROM (SELECT kiosk_id, venue_id, c, CAST(round(c * 10) AS INTEGER) AS t FROM edges)
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


def _beat_kind(bit: int) -> str:
    return f"""
    sum((flags & {bit}) <> 0), min(CASE WHEN flags & {bit} THEN received_at END),
    max(CASE WHEN flags & {bit} THEN received_at END)"""


_HEARTBEAT_KINDS = {
    "reported_fault": HEARTBEAT_THERMOMETER_FAULT,
    "stale": HEARTBEAT_STALE_TRUST,
    "drift": HEARTBEAT_POLICY_DRIFT,
    "skew": HEARTBEAT_CLOCK_SKEW,
}
_HEARTBEAT_EVIDENCE = f"""
WITH {_SCOPED}
SELECT h.kiosk_id, h.venue_id, {", ".join(_beat_kind(bit) for bit in _HEARTBEAT_KINDS.values())}
FROM heartbeats AS h INDEXED BY heartbeats_flagged_received JOIN scoped USING (venue_id)
WHERE h.flags <> 0 AND h.received_at >= :since AND h.received_at < :until
  AND h.flags & {sum(_HEARTBEAT_KINDS.values())}
GROUP BY h.kiosk_id, h.venue_id
"""

# Stretches without a heartbeat: the gaps flagged at arrival, the stretch from provisioning to
# the first heartbeat (or to now, for a kiosk never heard), and the one from the latest
# heartbeat on. Each is cut to [max(since, provisioned_at), min(until, now)).
_SILENT = f"""
WITH {_SCOPED},
stretches AS (
    SELECT h.kiosk_id, h.received_at - h.gap_s AS start, h.received_at AS stop
    FROM heartbeats AS h INDEXED BY heartbeats_flagged_received JOIN scoped USING (venue_id)
    WHERE h.flags <> 0 AND h.flags & {HEARTBEAT_AFTER_SILENCE}
      AND h.received_at > :since + :silent_after AND h.received_at - h.gap_s < :end - :silent_after
    UNION ALL
    SELECT k.kiosk_id, k.provisioned_at, coalesce(st.first_received_at, :end)
    FROM kiosks AS k JOIN scoped USING (venue_id)
    LEFT JOIN kiosk_state AS st ON st.kiosk_id = k.kiosk_id
    UNION ALL
    SELECT st.kiosk_id, st.last_received_at, :end
    FROM kiosk_state AS st JOIN scoped USING (venue_id)
    WHERE st.last_received_at < :end - :silent_after
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
# the window received at least an hour ago, the seqs held below it (from the runs), the first
# missing seq, and the heartbeats that reported a last_seq above it.
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
    FROM candidates AS c JOIN heartbeats AS h INDEXED BY heartbeats_log ON h.log_id = c.log_id
    WHERE h.received_at >= :since AND h.received_at < :until AND h.received_at <= :cutoff
    GROUP BY c.log_id, c.kiosk_id, c.venue_id
),
holes AS (
    SELECT r.log_id, r.kiosk_id, r.venue_id, r.top,
           r.top - 1 - coalesce((
               SELECT sum(min(lr.last_seq, r.top - 1) - lr.first_seq + 1) FROM log_runs AS lr
               WHERE lr.log_id = r.log_id AND lr.first_seq < r.top), 0) AS missing,
           coalesce((SELECT lr.last_seq + 1 FROM log_runs AS lr
                     WHERE lr.log_id = r.log_id AND lr.first_seq = 1), 1) AS first_missing
    FROM reported AS r
)
SELECT o.kiosk_id, o.venue_id, sum(o.missing), min(b.first), max(b.last)
FROM holes AS o JOIN (
    SELECT g.log_id, min(h.received_at) AS first, max(h.received_at) AS last
    FROM holes AS g JOIN heartbeats AS h INDEXED BY heartbeats_log ON h.log_id = g.log_id
    WHERE g.missing > 0 AND h.received_at >= :since AND h.received_at < :until
      AND h.received_at <= :cutoff AND h.last_seq > g.first_missing
    GROUP BY g.log_id
) AS b ON b.log_id = o.log_id
WHERE o.missing > 0
GROUP BY o.kiosk_id, o.venue_id
"""


def params(query: FindingsQuery) -> dict[str, Any]:
    return {
        "region": query.region,
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
    for kiosk_id, venue_id, kind, n, first, last, entry_id in conn.execute(
        _ENTRY_EVIDENCE, params(query)
    ):
        key = (kiosk_id, kind)
        if key not in found:
            found[key] = EntryEvidence(kiosk_id, venue_id, kind, n, first, last, [])
        found[key].sample_entry_ids.append(entry_id)
    return list(found.values())


def readings_evidence(conn: sqlite3.Connection, query: FindingsQuery) -> list[ReadingsEvidence]:
    bound = params(query)
    evidence = []
    for kiosk_id, venue_id, n, s, ss, bad in conn.execute(_READINGS, bound).fetchall():
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
    evidence = []
    for row in conn.execute(_HEARTBEAT_EVIDENCE, params(query)):
        kiosk_id, venue_id, *columns = row
        for index, kind in enumerate(_HEARTBEAT_KINDS):
            n, first, last = columns[3 * index : 3 * index + 3]
            if n:
                evidence.append(HeartbeatEvidence(kiosk_id, venue_id, kind, n, first, last))
    return evidence


def silent_evidence(conn: sqlite3.Connection, query: FindingsQuery) -> list[SilentEvidence]:
    return [SilentEvidence(*row) for row in conn.execute(_SILENT, params(query))]


def gap_evidence(conn: sqlite3.Connection, query: FindingsQuery) -> list[GapEvidence]:
    return [GapEvidence(*row) for row in conn.execute(_GAPS, params(query))]


def evidence(conn: sqlite3.Connection, query: FindingsQuery) -> Evidence:
    """All the evidence of one query, in one read transaction."""
    return Evidence(
        entry_evidence(conn, query),
        readings_evidence(conn, query),
        heartbeat_evidence(conn, query),
        silent_evidence(conn, query),
        gap_evidence(conn, query),
    )
