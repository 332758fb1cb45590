"""The collector's storage: one narrow interface (`base.Storage`), SQLite and PostgreSQL.

Open with `open_storage(url, now=...)`: `sqlite:////abs/path.db` or `postgresql://user@host/db`.
Opening creates what is missing (folder, file, database when allowed), applies the versioned
migrations (`kiosk/collector/migrations/<dialect>/NNNN_*.sql`, recorded in `schema_version`) and
makes the deployment's pseudonym key at first start. Both dialects hold the same tables; times
are REAL Unix seconds in SQLite and `timestamptz` in PostgreSQL (Unix seconds at the interface).

Tables (columns in the migration files):

- `settings(key, value)`: `config_generation`, bumped by every change to some kiosk's
  configuration (policy, lists, unit status) in the same transaction; the ETag cache key.
- `pseudonym_keys(version, key, created_at)`: the deployment's subject pseudonym key(s).
- `venues(venue_id, name, region, venue_type, created_at, unit_status, status_note,
  status_set_by, status_set_at)`: units; `region` is a path like `harbin/daowai`.
  `unit_status_changes(venue_id, status, note, set_by, set_at)`: rectification history (part 2).
- `kiosks(kiosk_id, venue_id, provisioned_at)`.
- `principals(name, role, region, kiosk_id, token_hash, token_issued_at, token_revoked_at)`:
  one namespace for kiosks, inspectors and admins; only the SHA-256 hex of a token is stored;
  revoking sets `token_hash` NULL.
- `policies(publication_id, venue_type, policy_version, policy, max_trust_age_hours,
  published_at, published_by)`: every publication; the latest per type is in force, the
  built-in policy (kiosk.policies) where a type has none.
- `documents(name, body, updated_at, updated_by)`: the current trust list and revocation list.
- `audit(audit_id, at, actor, role, action, target, detail)`: admin changes and entry reads.
- `entries`: one row per accepted entry: `id`, `ts` (kiosk clock), `kiosk_id`, `venue_id`,
  `log_id`, `seq`, `received_at`, `decision`, `has_override`, `flags` (base.ENTRY_* bits),
  `subject`, `temperature_c`, `mask`, `code_format`, `code_verdict`, `code_status`,
  `policy_version`, `link` (ok / broken / unverified), `chain`, and `body`: the RFC 8785 JSON
  of the entry without `chain`, exactly the bytes the chain hashes (`StoredEntry.entry()`
  rebuilds what the kiosk sent). Indexes: `(kiosk_id, ts)`, `(log_id, seq)`,
  for code_reuse the allows (`WHERE decision = 'allow' AND subject IS NOT NULL`) by
  `(venue_id, subject, ts)` on PostgreSQL and by `(venue_id, CAST(ts AS INTEGER) / 600, subject,
  ts)` on SQLite (migration 0007: a bucket of time first keeps its inserts together), and
  `entries_flagged (kiosk_id, ts) WHERE flags <> 0` for the evidence
  of overrides, unchecked allows and broken links. PostgreSQL: partitioned by day of `ts`,
  primary key `(id, ts)`, plus `entry_ids(id, kiosk_id, ts)` keyed by id alone (partitions.py).
- `logs(log_id, kiosk_id, venue_id, first_received_at, last_received_at, max_seq, held, runs)`
  and `log_runs(log_id, first_seq, last_seq, last_chain)`: the stretches of consecutive seqs
  held per log. Missing seqs below a reported `last_seq` are the holes between runs, so log_gap
  never counts entries: `held` seqs in [1, L) = sum over runs of their overlap with [1, L).
- `kiosk_hours(kiosk_id, hour, venue_id, entries, allows, denies, overrides, no_code,
  no_temperature, mask_unchecked, unchecked, unchecked_with_mask, readings, readings_sum_dc,
  readings_sumsq_dc, implausible)`: rollups per kiosk and hour of entry `ts`, kept in the
  ingest transaction. `unchecked` counts allows lacking a code or a temperature,
  `unchecked_with_mask` also those with mask unchecked (pick by the policy's mask_required).
  Readings are in tenths of a degree, so sums are exact integers: the population variance in
  °C² is (readings*sumsq - sum²) / readings² / 100.
- `kiosk_hour_reasons(kiosk_id, hour, decision, reason, entries)`: counts by reason.
- `heartbeats(kiosk_id, venue_id, received_at, ts, offset_s, log_id, last_seq, backlog,
  policy_version, published_policy_version, max_trust_age_hours, camera, thermometer,
  trust_age_s, set_aside, storage_used_ratio, software, flags, gap_s, drift_since, body)`:
  every heartbeat with what was in force when it arrived; `flags` are base.HEARTBEAT_* bits,
  `gap_s` the time since the kiosk's previous heartbeat, `drift_since` the start of the current
  policy mismatch. Indexes `(kiosk_id, received_at)`, `heartbeats_flagged ... WHERE flags <> 0`,
  `(log_id, received_at)`.
- `kiosk_state(kiosk_id, ...)`: the latest heartbeat of each kiosk (unit page, silence).

Extension points for modules that add queries (findings, dashboard): `SqliteStorage.read(fn)` /
`.write(fn)` run a plain `fn(sqlite3.Connection)` in a transaction; `PostgresStorage.pool`,
`.transaction(fn)` and `.fetch(sql, *args)`. A write that admins or inspectors make calls
`record_audit(...)` of `sqlite_sql` / `postgres_sql` in its transaction, and one that changes
what kiosks are configured with (e.g. a unit's status) also `bump_config_generation(conn)`, so
kiosks see a new ETag. A new table or index is a new migration file in both dialects.
"""

from __future__ import annotations

from kiosk.collector.config import DatabaseUrl, parse_database_url
from kiosk.collector.storage.base import Storage, StorageError


async def open_storage(url: str, *, now: float, pool_size: int = 8) -> Storage:
    """The storage for `url`, migrated and ready."""
    database = url if isinstance(url, DatabaseUrl) else _parse(url)
    if database.dialect == "sqlite":
        from kiosk.collector.storage.sqlite import SqliteStorage

        return await SqliteStorage.open(database.sqlite_path, now=now)
    from kiosk.collector.storage.postgres import PostgresStorage

    return await PostgresStorage.open(str(database), now=now, pool_size=pool_size)


def _parse(url: str) -> DatabaseUrl:
    try:
        return parse_database_url(url)
    except Exception as exc:  # pydantic's error type is an implementation detail here
        raise StorageError(f"database url: {exc}") from None
