"""The findings engine: which units (venues) do not enforce the measures, with evidence.

The rules and their exact semantics are kiosk.findings (pure); this package counts them in the
database, one module per dialect (`sqlite`, `postgres`) holding the same statements. Nothing here
loads the entries of a window: the cost of a query grows with the kiosks, the hours of the
window, the entries of its two partial hours and the offending rows, never with the entries
stored. Statements aggregate before they join, and the region applies to the resulting rows of
evidence (a region's filter is a poor guide for a planner); the one-venue forms (unit page)
read the venue's kiosks' own indexes. What makes that possible is kept at ingest
(kiosk.collector.storage and the findings migrations, 0002 and later):

- override_entries, unchecked_entries, log_gap/broken_chain: entries carry `flags` set at ingest
  (or when a late predecessor lets a link be checked); a partial index on `ts` holds only the
  flagged ones, so the window's evidence is an index range.
- code_reuse: when allows arrive, the allows of their subjects at that venue in the 10 minutes
  from them are re-judged once per stored batch (SQLite: a statement of the ingest transaction
  on the `(venue_id, subject, ts)` index; PostgreSQL: a statement trigger over the venue's nearby
  allows) and each excess use is recorded in `code_reuse` (indexed by `ts`).
- thermometer_fault (stuck, implausible): exact integer sums of readings in tenths: for the
  window's whole hours the difference of two running totals per kiosk (`readings_running`, kept
  by triggers on the hourly rollups `kiosk_hours`; migrations sqlite 0006 / postgres 0005), for
  the partial hours at its two ends the entries themselves (an index of readings by `ts`); the
  kiosks that qualify then fetch their first and implausible readings on `(kiosk_id, ts)`.
- reported_fault, stale_trust, policy_drift, clock_skew: heartbeats carry `flags` judged at
  arrival against what was then in force; a trigger keeps hourly counts per kiosk and kind
  (`heartbeat_hours`, migration 0004) for the window's whole hours, and a partial index on
  `received_at` gives the flagged heartbeats of its two partial hours.
- silent_kiosk: a heartbeat after a gap longer than `silent_after` (in force when it arrived) is
  flagged with the gap (an index of those by time); the stretches before a kiosk's first and
  after its latest heartbeat come from `kiosks` and `kiosk_state` (one row per kiosk).
- log_gap/missing_seq: `logs` (highest held seq, held count) and `log_runs` (stretches of held
  seqs) name the few logs with a hole; only their heartbeats are read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from kiosk.collector.findings.model import Evidence, FindingsQuery, findings_of
from kiosk.collector.findings.units import UnitHeader, unit_headers
from kiosk.collector.storage.base import Storage, StorageError
from kiosk.collector.tokens import region_covers
from kiosk.findings import Finding, order_findings, unit_sort_key
from kiosk.policies import VENUE_TYPES, load_policy

__all__ = ["FindingsQuery", "UnitFindings", "evidence", "findings_by_venue", "no_mask_types"]


@dataclass(frozen=True, slots=True)
class UnitFindings:
    venue_id: str
    findings: list[Finding] = field(default_factory=list)
    header: UnitHeader | None = None  # name, region and status (None if the venue is gone)


async def evidence(storage: Storage, query: FindingsQuery) -> Evidence:
    """Everything the database shows for `query`, read as one snapshot."""
    if storage.dialect == "sqlite":
        from kiosk.collector.findings.sqlite import evidence as sqlite_evidence
        from kiosk.collector.storage.sqlite import SqliteStorage

        if not isinstance(storage, SqliteStorage):
            raise StorageError("findings need the collector's SQLite storage")
        return await storage.read(lambda conn: sqlite_evidence(conn, query))
    from kiosk.collector.findings.postgres import evidence as postgres_evidence
    from kiosk.collector.storage.postgres import PostgresStorage

    if not isinstance(storage, PostgresStorage):
        raise StorageError("findings need the collector's PostgreSQL storage")
    return await postgres_evidence(storage, query)


async def no_mask_types(storage: Storage) -> frozenset[str]:
    """Venue types whose policy in force (latest publication, else built-in) needs no mask."""
    published = (await storage.config_snapshot()).policies
    relaxed = {t for t, p in published.items() if not p.policy.get("mask_required", True)}
    relaxed |= {t for t in VENUE_TYPES if t not in published and not load_policy(t).mask_required}
    return frozenset(relaxed)


async def findings_by_venue(storage: Storage, query: FindingsQuery) -> list[UnitFindings]:
    """The units with at least one finding, most severe first, each with its findings in order.
    `query.no_mask_types` is filled in from the policies in force."""
    query = FindingsQuery(
        since=query.since,
        until=query.until,
        now=query.now,
        region=query.region,
        venue_id=query.venue_id,
        silent_after_s=query.silent_after_s,
        no_mask_types=await no_mask_types(storage),
        sample_size=query.sample_size,
    )
    grouped: dict[str, list[Finding]] = defaultdict(list)
    for venue_id, finding in findings_of(await evidence(storage, query), query.sample_size):
        grouped[venue_id].append(finding)
    # The evidence is of the whole city (or of one venue); the region applies to its few rows.
    headers = await unit_headers(storage, sorted(grouped))
    if query.region:
        grouped = {
            venue: found
            for venue, found in grouped.items()
            if venue in headers and region_covers(query.region, headers[venue].region)
        }
    venues = sorted(grouped, key=lambda venue: unit_sort_key(venue, grouped[venue]))
    return [
        UnitFindings(venue, order_findings(grouped[venue]), headers.get(venue)) for venue in venues
    ]
