"""The SQL of the PostgreSQL storage: the statements of each transaction, as plain coroutines
over an asyncpg connection (kiosk.collector.storage.postgres opens the transactions).
`record_audit` and `bump_config_generation` are for other modules' writes that change what is
audited or what kiosks are configured with (await them in the same transaction)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

from kiosk.collector.storage import plan as planning
from kiosk.collector.storage.base import (
    ENTRY_COLUMNS,
    Actor,
    ConfigSnapshot,
    HeartbeatRecord,
    IngestResult,
    PolicyPublication,
    PreparedBatch,
    Principal,
    StorageError,
)
from kiosk.collector.storage.heartbeat import heartbeat_judgement

LOG_LOCK_SEED = 0x6B696F73

Conn = Any  # asyncpg.Connection (asyncpg ships no type hints)


async def record_audit(
    conn: Conn, actor: Actor, action: str, target: str | None, detail: dict[str, Any], now: float
) -> None:
    await conn.execute(
        "INSERT INTO audit (at, actor, role, action, target, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        now, actor.name, actor.role, action, target, json.dumps(detail, sort_keys=True),
    )


async def bump_config_generation(conn: Conn) -> None:
    """Call in every transaction that changes some kiosk's configuration (the ETag cache)."""
    await conn.execute(
        "UPDATE settings SET value = (value::bigint + 1)::text WHERE key = 'config_generation'"
    )


_HOUR_COLUMNS = planning.HOUR_COLUMNS
_HOUR_TYPES = ["int"] * 10 + ["bigint", "bigint", "int"]

_UPSERT_HOURS = f"""
INSERT INTO kiosk_hours (kiosk_id, hour, venue_id, {", ".join(_HOUR_COLUMNS)})
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[],
    {", ".join(f"${i + 4}::{t}[]" for i, t in enumerate(_HOUR_TYPES))})
ON CONFLICT (kiosk_id, hour) DO UPDATE SET
    {", ".join(f"{c} = kiosk_hours.{c} + EXCLUDED.{c}" for c in _HOUR_COLUMNS)}
"""

PRINCIPAL = """
SELECT p.name, p.role, p.region, p.kiosk_id, k.venue_id, v.region AS venue_region
FROM principals p
LEFT JOIN kiosks k ON k.kiosk_id = p.kiosk_id
LEFT JOIN venues v ON v.venue_id = k.venue_id
"""


def principal(row: Any) -> Principal:
    kiosk = row["role"] == "kiosk"
    return Principal(
        name=row["name"],
        role=row["role"],
        region=row["venue_region"] if kiosk else row["region"],
        kiosk_id=row["kiosk_id"],
        venue_id=row["venue_id"],
    )


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


async def ensure_pseudonym_key(conn: Conn, now: float) -> None:
    await conn.execute(
        "INSERT INTO pseudonym_keys (version, key, created_at) VALUES (1, $1, $2) "
        "ON CONFLICT (version) DO NOTHING",
        secrets.token_urlsafe(32), now,
    )


async def ingest(conn: Conn, batch: PreparedBatch) -> IngestResult:
    first_use: dict[str, float] = {}
    for row in batch.rows:
        first_use.setdefault(row.id, row.ts)
    ids = sorted(first_use)  # one lock order for every transaction
    claimed = await conn.fetch(
        "INSERT INTO entry_ids (id, kiosk_id, ts) "
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) "
        "ON CONFLICT (id) DO NOTHING RETURNING id::text",
        ids, [batch.kiosk_id] * len(ids), [first_use[i] for i in ids],
    )
    fresh = {row[0] for row in claimed}
    held: dict[str, str] = {}
    if len(fresh) < len(ids):
        others = [i for i in ids if i not in fresh]
        for row in await conn.fetch(
            "SELECT id::text, kiosk_id FROM entry_ids WHERE id = ANY($1::uuid[])", others
        ):
            held[row[0]] = row[1]
    new, duplicates = planning.split_new(batch.rows, held)
    if not new:
        return IngestResult(0, duplicates)

    ranges = planning.run_ranges(new)
    logs = sorted(ranges)
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(l, $2)) FROM unnest($1::text[]) AS l",
        logs, LOG_LOCK_SEED,
    )
    runs: dict[str, list[planning.Run]] = {log: [] for log in logs}
    for row in await conn.fetch(
        "SELECT r.log_id::text, r.first_seq, r.last_seq, r.last_chain FROM log_runs r "
        "JOIN unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS q(log_id, low, high) "
        "ON r.log_id = q.log_id AND r.first_seq <= q.high AND r.last_seq >= q.low "
        "ORDER BY r.log_id, r.first_seq",
        logs, [ranges[log][0] for log in logs], [ranges[log][1] for log in logs],
    ):
        runs[row[0]].append(planning.Run(row[0], row[1], row[2], row[3]))
    neighbours: dict[tuple[str, int], planning.HeldEntry] = {}
    keys = sorted(planning.neighbour_keys(new, runs))
    if keys:
        for row in await conn.fetch(
            "SELECT DISTINCT ON (e.log_id, e.seq) e.id::text, e.log_id::text, e.seq, e.chain, "
            "e.body, e.link, e.flags FROM entries e "
            "JOIN unnest($1::uuid[], $2::bigint[]) AS q(log_id, seq) "
            "ON e.log_id = q.log_id AND e.seq = q.seq "
            "ORDER BY e.log_id, e.seq, e.received_at, e.id",
            [k[0] for k in keys], [k[1] for k in keys],
        ):
            neighbours[(row[1], row[2])] = planning.HeldEntry(*row)
    plan = planning.plan_ingest(new, runs, neighbours, batch)
    await write_plan(conn, batch, plan)
    return IngestResult(len(plan.new), duplicates, plan.broken_links, plan.unverified_links)


async def write_plan(conn: Conn, batch: PreparedBatch, plan: planning.IngestPlan) -> None:
    received = batch.received_at
    await conn.copy_records_to_table(
        "entries",
        columns=ENTRY_COLUMNS,
        records=[n.row.stored_values(received, n.flags, n.link) for n in plan.new],
    )
    if plan.relinks:
        await conn.execute(
            "UPDATE entries e SET link = q.link, flags = e.flags | q.add_flags "
            "FROM unnest($1::uuid[], $2::text[], $3::int[]) AS q(id, link, add_flags) "
            "WHERE e.id = q.id",
            [r.id for r in plan.relinks], [r.link for r in plan.relinks],
            [r.add_flags for r in plan.relinks],
        )
    if plan.runs_deleted:
        await conn.execute(
            "DELETE FROM log_runs r USING unnest($1::uuid[], $2::bigint[]) AS q(log_id, first) "
            "WHERE r.log_id = q.log_id AND r.first_seq = q.first",
            [r.log_id for r in plan.runs_deleted], [r.first_seq for r in plan.runs_deleted],
        )
    if plan.runs_inserted:
        await conn.execute(
            "INSERT INTO log_runs (log_id, first_seq, last_seq, last_chain) "
            "SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[])",
            *_columns(
                [(r.log_id, r.first_seq, r.last_seq, r.last_chain) for r in plan.runs_inserted], 4
            ),
        )
    await conn.execute(
        "INSERT INTO logs (log_id, kiosk_id, venue_id, first_received_at, last_received_at, "
        "max_seq, held, runs) SELECT q.log_id, q.kiosk_id, q.venue_id, $4, $4, q.max_seq, q.held, "
        "q.runs FROM unnest($1::uuid[], $2::text[], $3::text[], $5::bigint[], $6::bigint[], "
        "$7::int[]) AS q(log_id, kiosk_id, venue_id, max_seq, held, runs) "
        "ON CONFLICT (log_id) DO UPDATE SET last_received_at = EXCLUDED.last_received_at, "
        "max_seq = GREATEST(logs.max_seq, EXCLUDED.max_seq), held = logs.held + EXCLUDED.held, "
        "runs = logs.runs + EXCLUDED.runs",
        [d.log_id for d in plan.logs], [d.kiosk_id for d in plan.logs],
        [d.venue_id for d in plan.logs], received, [d.max_seq for d in plan.logs],
        [d.held_added for d in plan.logs], [d.runs_added for d in plan.logs],
    )
    await conn.execute(
        _UPSERT_HOURS,
        *_columns(
            [
                (h.kiosk_id, float(h.hour), h.venue_id, *(getattr(h, c) for c in _HOUR_COLUMNS))
                for h in plan.hours
            ],
            3 + len(_HOUR_COLUMNS),
        ),
    )
    if plan.reasons:
        await conn.execute(
            "INSERT INTO kiosk_hour_reasons (kiosk_id, hour, decision, reason, entries) "
            "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], "
            "$5::int[]) ON CONFLICT (kiosk_id, hour, decision, reason) DO UPDATE SET "
            "entries = kiosk_hour_reasons.entries + EXCLUDED.entries",
            *_columns([(k, float(h), d, r, c) for k, h, d, r, c in plan.reasons], 5),
        )


async def heartbeat(conn: Conn, beat: HeartbeatRecord) -> None:
    previous = await conn.fetchrow(
        "SELECT last_received_at, drift_since FROM kiosk_state WHERE kiosk_id = $1 FOR UPDATE",
        beat.kiosk_id,
    )
    judged = heartbeat_judgement(
        beat,
        previous_received_at=None if previous is None else previous[0],
        previous_drift_since=None if previous is None else previous[1],
    )
    body = json.dumps(judged.body, sort_keys=True)
    await conn.execute(
        """INSERT INTO heartbeats (kiosk_id, venue_id, received_at, ts, offset_s, log_id,
            last_seq, backlog, policy_version, published_policy_version, max_trust_age_hours,
            camera, thermometer, trust_age_s, set_aside, storage_used_ratio, software, flags,
            gap_s, drift_since, body)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20, $21::jsonb)""",
        beat.kiosk_id, beat.venue_id, beat.received_at, beat.ts, judged.offset_s, beat.log_id,
        beat.last_seq, beat.backlog, beat.policy_version, beat.published_policy_version,
        beat.max_trust_age_hours, beat.camera, beat.thermometer, beat.trust_age_s,
        beat.set_aside, beat.storage_used_ratio, beat.software, judged.flags, judged.gap_s,
        judged.drift_since, body,
    )
    await conn.execute(
        """INSERT INTO kiosk_state (kiosk_id, venue_id, first_received_at, last_received_at,
            last_ts, last_offset_s, log_id, last_seq, backlog, policy_version, drift_since,
            heartbeats, body)
        VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11::jsonb)
        ON CONFLICT (kiosk_id) DO UPDATE SET
            last_received_at = EXCLUDED.last_received_at, last_ts = EXCLUDED.last_ts,
            last_offset_s = EXCLUDED.last_offset_s, log_id = EXCLUDED.log_id,
            last_seq = EXCLUDED.last_seq, backlog = EXCLUDED.backlog,
            policy_version = EXCLUDED.policy_version, drift_since = EXCLUDED.drift_since,
            heartbeats = kiosk_state.heartbeats + 1, body = EXCLUDED.body""",
        beat.kiosk_id, beat.venue_id, beat.received_at, beat.ts, judged.offset_s, beat.log_id,
        beat.last_seq, beat.backlog, beat.policy_version, judged.drift_since, body,
    )


async def snapshot(conn: Conn) -> ConfigSnapshot:
    generation = await conn.fetchval("SELECT value FROM settings WHERE key = 'config_generation'")
    policies = {
        row[0]: PolicyPublication(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])
        for row in await conn.fetch(
            "SELECT DISTINCT ON (venue_type) venue_type, policy_version, policy::text, "
            "max_trust_age_hours, published_at, published_by FROM policies "
            "ORDER BY venue_type, publication_id DESC"
        )
    }
    documents = {
        row[0]: json.loads(row[1]) for row in await conn.fetch("SELECT name, body FROM documents")
    }
    key = await conn.fetchrow(
        "SELECT version, key FROM pseudonym_keys ORDER BY version DESC LIMIT 1"
    )
    if key is None:
        raise StorageError("no pseudonym key: the storage was not opened by open_storage")
    return ConfigSnapshot(
        generation=int(generation),
        policies=policies,
        trust_list=documents.get("trust_list"),
        revocation_list=documents.get("revocation_list"),
        pseudonym_key_version=int(key[0]),
        pseudonym_key=str(key[1]),
    )
