"""The SQL of the SQLite storage: each write a plain function `fn(conn)` that the writer thread
runs inside one transaction (kiosk.collector.storage.sqlite). `record_audit` and
`bump_config_generation` are for other modules' writes that change what is audited or what
kiosks are configured with (run them in the same transaction as the change)."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from kiosk.collector.storage import plan as planning
from kiosk.collector.storage.base import (
    ENTRY_COLUMNS,
    Actor,
    AlreadyExists,
    ConfigSnapshot,
    HeartbeatRecord,
    IngestResult,
    NotFound,
    PolicyPublication,
    PreparedBatch,
    Principal,
    Role,
    StorageError,
    Venue,
)
from kiosk.collector.storage.heartbeat import heartbeat_judgement

_ID_CHUNK = 500  # ids per statement, well under SQLite's bound-variable limit


def iso_time(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).isoformat()


def record_audit(
    conn: sqlite3.Connection,
    actor: Actor,
    action: str,
    target: str | None,
    detail: dict[str, Any],
    now: float,
) -> None:
    conn.execute(
        "INSERT INTO audit (at, actor, role, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (now, actor.name, actor.role, action, target, json.dumps(detail, sort_keys=True)),
    )


def bump_config_generation(conn: sqlite3.Connection) -> None:
    """Call in every transaction that changes some kiosk's configuration (the ETag cache)."""
    conn.execute(
        "UPDATE settings SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
        "WHERE key = 'config_generation'"
    )


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_INSERT_ENTRY = (
    f"INSERT INTO entries ({', '.join(ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)})"
)

_UPSERT_LOG = """
INSERT INTO logs (log_id, kiosk_id, venue_id, first_received_at, last_received_at, max_seq,
    held, runs)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (log_id) DO UPDATE SET
    last_received_at = excluded.last_received_at,
    max_seq = max(logs.max_seq, excluded.max_seq),
    held = logs.held + excluded.held,
    runs = logs.runs + excluded.runs
"""

_HOUR_COLUMNS = planning.HOUR_COLUMNS

_UPSERT_HOUR = f"""
INSERT INTO kiosk_hours (kiosk_id, hour, venue_id, {", ".join(_HOUR_COLUMNS)})
VALUES (?, ?, ?, {", ".join("?" for _ in _HOUR_COLUMNS)})
ON CONFLICT (kiosk_id, hour) DO UPDATE SET
    {", ".join(f"{c} = kiosk_hours.{c} + excluded.{c}" for c in _HOUR_COLUMNS)}
"""

_UPSERT_REASON = """
INSERT INTO kiosk_hour_reasons (kiosk_id, hour, decision, reason, entries) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (kiosk_id, hour, decision, reason) DO UPDATE SET
    entries = kiosk_hour_reasons.entries + excluded.entries
"""


# code_reuse (migrations 0005, 0007): the batch's new allows that give their subject 4 or more
# allows at their venue within 600 s either side re-judge that subject's allows in the 600 s
# from them; an allow with 3 others of its subject before it (by ts, then id) less than 600 s
# earlier is an excess use. One statement per batch, the arrivals first (rows after `?`).
# Every look-up goes through entries_allowed_bucket (venue, bucket, subject, ts): one seek by
# subject in the allow's bucket and in the one either side, then the exact time bounds. The
# bucket, CAST(ts AS INTEGER) / 600 in integers, never decreases as ts grows and moves by at
# most one over 600 s (for times before 1970 too), so those three hold every allow in reach.
# The expression must be the index's (migration 0007) to the letter, or SQLite will not use it.


def _bucket(alias: str) -> str:
    return f"CAST({alias}.ts AS INTEGER) / 600"


def _near(alias: str, of: str) -> str:
    """`alias` in the bucket of `of`, or in the one either side."""
    b = _bucket(of)
    return f"{_bucket(alias)} IN ({b} - 1, {b}, {b} + 1)"


_CODE_REUSE = f"""
WITH arrived AS MATERIALIZED (
    SELECT n.venue_id, n.subject, n.ts FROM entries AS n
    WHERE n.row_id > ? AND n.decision = 'allow' AND n.subject IS NOT NULL
      AND (SELECT count(*) FROM entries AS c INDEXED BY entries_allowed_bucket
           WHERE c.venue_id = n.venue_id
             AND {_near("c", "n")}
             AND c.subject = n.subject AND c.decision = 'allow'
             AND c.ts > n.ts - 600 AND c.ts < n.ts + 600) >= 4
)
INSERT OR IGNORE INTO code_reuse (entry_id, kiosk_id, venue_id, ts)
SELECT a.id, a.kiosk_id, a.venue_id, a.ts
FROM arrived AS n
CROSS JOIN entries AS a INDEXED BY entries_allowed_bucket
WHERE a.venue_id = n.venue_id
  AND {_near("a", "n")}
  AND a.subject = n.subject AND a.decision = 'allow'
  AND a.ts >= n.ts AND a.ts < n.ts + 600
  AND (SELECT count(*) FROM entries AS b INDEXED BY entries_allowed_bucket
       WHERE b.venue_id = a.venue_id
         AND {_near("b", "a")}
         AND b.subject = a.subject AND b.decision = 'allow'
         AND b.ts > a.ts - 600 AND b.ts <= a.ts AND (b.ts < a.ts OR b.id <= a.id)) >= 4
"""


def ingest(conn: sqlite3.Connection, batch: PreparedBatch) -> IngestResult:
    ids = sorted({row.id for row in batch.rows})
    held: dict[str, str] = {}
    for chunk in _chunks(ids, _ID_CHUNK):
        marks = ",".join("?" * len(chunk))
        for entry_id, kiosk_id in conn.execute(
            f"SELECT id, kiosk_id FROM entries WHERE id IN ({marks})", chunk
        ):
            held[entry_id] = kiosk_id
    new, duplicates = planning.split_new(batch.rows, held)
    if not new:
        return IngestResult(0, duplicates)

    runs: dict[str, list[planning.Run]] = {}
    for log_id, (low, high) in planning.run_ranges(new).items():
        runs[log_id] = [
            planning.Run(log_id, first, last, chain)
            for first, last, chain in conn.execute(
                "SELECT first_seq, last_seq, last_chain FROM log_runs "
                "WHERE log_id = ? AND first_seq <= ? AND last_seq >= ? ORDER BY first_seq",
                (log_id, high, low),
            )
        ]
    neighbours: dict[tuple[str, int], planning.HeldEntry] = {}
    for log_id, seq in planning.neighbour_keys(new, runs):
        found = conn.execute(
            "SELECT id, chain, body, link, flags FROM entries WHERE log_id = ? AND seq = ? "
            "ORDER BY row_id LIMIT 1",
            (log_id, seq),
        ).fetchone()
        if found is not None:
            neighbours[(log_id, seq)] = planning.HeldEntry(
                found[0], log_id, seq, found[1], found[2], found[3], found[4]
            )
    plan = planning.plan_ingest(new, runs, neighbours, batch)

    received = batch.received_at
    # New rows get row ids above the highest one (one writer, appended in this transaction).
    (last_row,) = conn.execute("SELECT coalesce(max(row_id), 0) FROM entries").fetchone()
    conn.executemany(
        _INSERT_ENTRY, [n.row.stored_values(received, n.flags, n.link) for n in plan.new]
    )
    if any(n.row.decision == "allow" and n.row.subject is not None for n in plan.new):
        conn.execute(_CODE_REUSE, (last_row,))
    if plan.relinks:
        conn.executemany(
            "UPDATE entries SET link = ?, flags = flags | ? WHERE id = ?",
            [(r.link, r.add_flags, r.id) for r in plan.relinks],
        )
    conn.executemany(
        "DELETE FROM log_runs WHERE log_id = ? AND first_seq = ?",
        [(r.log_id, r.first_seq) for r in plan.runs_deleted],
    )
    conn.executemany(
        "INSERT INTO log_runs (log_id, first_seq, last_seq, last_chain) VALUES (?, ?, ?, ?)",
        [(r.log_id, r.first_seq, r.last_seq, r.last_chain) for r in plan.runs_inserted],
    )
    conn.executemany(
        _UPSERT_LOG,
        [
            (d.log_id, d.kiosk_id, d.venue_id, received, received, d.max_seq, d.held_added,
             d.runs_added)
            for d in plan.logs
        ],
    )
    conn.executemany(
        _UPSERT_HOUR,
        [
            (h.kiosk_id, h.hour, h.venue_id, *(getattr(h, c) for c in _HOUR_COLUMNS))
            for h in plan.hours
        ],
    )
    if plan.reasons:
        conn.executemany(_UPSERT_REASON, plan.reasons)
    return IngestResult(len(plan.new), duplicates, plan.broken_links, plan.unverified_links)


def heartbeat(conn: sqlite3.Connection, beat: HeartbeatRecord) -> None:
    previous = conn.execute(
        "SELECT last_received_at, drift_since FROM kiosk_state WHERE kiosk_id = ?",
        (beat.kiosk_id,),
    ).fetchone()
    judged = heartbeat_judgement(
        beat,
        previous_received_at=None if previous is None else previous[0],
        previous_drift_since=None if previous is None else previous[1],
    )
    body = json.dumps(judged.body, sort_keys=True)
    conn.execute(
        """INSERT INTO heartbeats (kiosk_id, venue_id, received_at, ts, offset_s, log_id,
            last_seq, backlog, policy_version, published_policy_version, max_trust_age_hours,
            camera, thermometer, trust_age_s, set_aside, storage_used_ratio, software, flags,
            gap_s, drift_since, body)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            beat.kiosk_id, beat.venue_id, beat.received_at, beat.ts, judged.offset_s,
            beat.log_id, beat.last_seq, beat.backlog, beat.policy_version,
            beat.published_policy_version, beat.max_trust_age_hours, beat.camera,
            beat.thermometer, beat.trust_age_s, beat.set_aside, beat.storage_used_ratio,
            beat.software, judged.flags, judged.gap_s, judged.drift_since, body,
        ),
    )
    conn.execute(
        """INSERT INTO kiosk_state (kiosk_id, venue_id, first_received_at, last_received_at,
            last_ts, last_offset_s, log_id, last_seq, backlog, policy_version, drift_since,
            heartbeats, body)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
        ON CONFLICT (kiosk_id) DO UPDATE SET
            last_received_at = excluded.last_received_at, last_ts = excluded.last_ts,
            last_offset_s = excluded.last_offset_s, log_id = excluded.log_id,
            last_seq = excluded.last_seq, backlog = excluded.backlog,
            policy_version = excluded.policy_version, drift_since = excluded.drift_since,
            heartbeats = kiosk_state.heartbeats + 1, body = excluded.body""",
        (
            beat.kiosk_id, beat.venue_id, beat.received_at, beat.received_at, beat.ts,
            judged.offset_s, beat.log_id, beat.last_seq, beat.backlog, beat.policy_version,
            judged.drift_since, body,
        ),
    )


def principal_exists(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM principals WHERE name = ?", (name,)).fetchone()
    return found is not None


def add_venue(conn: sqlite3.Connection, venue: Venue, actor: Actor) -> None:
    found = conn.execute("SELECT 1 FROM venues WHERE venue_id = ?", (venue.venue_id,)).fetchone()
    if found is not None:
        raise AlreadyExists(f"venue {venue.venue_id!r} already exists")
    conn.execute(
        "INSERT INTO venues (venue_id, name, region, venue_type, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (venue.venue_id, venue.name, venue.region, venue.venue_type, venue.created_at),
    )
    detail = {"name": venue.name, "region": venue.region, "venue_type": venue.venue_type}
    record_audit(conn, actor, "add_venue", venue.venue_id, detail, venue.created_at)


def add_kiosk(
    conn: sqlite3.Connection,
    kiosk_id: str,
    venue_id: str,
    token_hash: str,
    actor: Actor,
    now: float,
) -> None:
    if conn.execute("SELECT 1 FROM venues WHERE venue_id = ?", (venue_id,)).fetchone() is None:
        raise NotFound(f"no venue {venue_id!r}; add it first with `kiosk admin add-venue`")
    if principal_exists(conn, kiosk_id):
        raise AlreadyExists(f"{kiosk_id!r} already exists (kiosk ids and names share one list)")
    conn.execute(
        "INSERT INTO kiosks (kiosk_id, venue_id, provisioned_at) VALUES (?, ?, ?)",
        (kiosk_id, venue_id, now),
    )
    conn.execute(
        "INSERT INTO principals (name, role, kiosk_id, token_hash, token_issued_at, created_at) "
        "VALUES (?, 'kiosk', ?, ?, ?, ?)",
        (kiosk_id, kiosk_id, token_hash, now, now),
    )
    record_audit(conn, actor, "add_kiosk", kiosk_id, {"venue_id": venue_id}, now)


def add_person(
    conn: sqlite3.Connection,
    name: str,
    role: Role,
    region: str | None,
    token_hash: str,
    actor: Actor,
    now: float,
) -> None:
    if principal_exists(conn, name):
        raise AlreadyExists(f"{name!r} already exists (kiosk ids and names share one list)")
    conn.execute(
        "INSERT INTO principals (name, role, region, token_hash, token_issued_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (name, role, region, token_hash, now, now),
    )
    record_audit(conn, actor, f"add_{role}", name, {"region": region}, now)


PRINCIPAL = """
SELECT p.name, p.role, p.region, p.kiosk_id, k.venue_id, v.region
FROM principals p
LEFT JOIN kiosks k ON k.kiosk_id = p.kiosk_id
LEFT JOIN venues v ON v.venue_id = k.venue_id
"""


def principal(row: Sequence[Any]) -> Principal:
    name, role, region, kiosk_id, venue_id, venue_region = row
    return Principal(
        name=name,
        role=role,
        region=venue_region if role == "kiosk" else region,
        kiosk_id=kiosk_id,
        venue_id=venue_id,
    )


def set_token(
    conn: sqlite3.Connection, name: str, token_hash: str | None, actor: Actor, now: float
) -> Principal:
    row = conn.execute(PRINCIPAL + " WHERE p.name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no kiosk, inspector or admin named {name!r}")
    if token_hash is None:
        conn.execute(
            "UPDATE principals SET token_hash = NULL, token_revoked_at = ? WHERE name = ?",
            (now, name),
        )
    else:
        conn.execute(
            "UPDATE principals SET token_hash = ?, token_issued_at = ?, token_revoked_at = NULL "
            "WHERE name = ?",
            (token_hash, now, name),
        )
    action = "revoke_token" if token_hash is None else "rotate_token"
    record_audit(conn, actor, action, name, {"role": row[1]}, now)
    return principal(row)


def snapshot(conn: sqlite3.Connection) -> ConfigSnapshot:
    generation = conn.execute(
        "SELECT value FROM settings WHERE key = 'config_generation'"
    ).fetchone()[0]
    policies = {
        row[0]: PolicyPublication(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])
        for row in conn.execute(
            """SELECT venue_type, policy_version, policy, max_trust_age_hours, published_at,
                published_by FROM policies
            WHERE publication_id IN
                (SELECT MAX(publication_id) FROM policies GROUP BY venue_type)"""
        )
    }
    documents = {
        name: json.loads(body) for name, body in conn.execute("SELECT name, body FROM documents")
    }
    key = conn.execute(
        "SELECT version, key FROM pseudonym_keys ORDER BY version DESC LIMIT 1"
    ).fetchone()
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


def publish(conn: sqlite3.Connection, publication: PolicyPublication, actor: Actor) -> None:
    conn.execute(
        """INSERT INTO policies (venue_type, policy_version, policy, max_trust_age_hours,
            published_at, published_by) VALUES (?, ?, ?, ?, ?, ?)""",
        (
            publication.venue_type, publication.policy_version,
            json.dumps(publication.policy, sort_keys=True), publication.max_trust_age_hours,
            publication.published_at, actor.name,
        ),
    )
    bump_config_generation(conn)
    detail = {"policy_version": publication.policy_version, "policy": publication.policy}
    record_audit(
        conn, actor, "publish_policy", publication.venue_type, detail, publication.published_at
    )


def put_document(
    conn: sqlite3.Connection,
    name: str,
    body: dict[str, Any],
    summary: dict[str, Any],
    actor: Actor,
    now: float,
) -> None:
    conn.execute(
        """INSERT INTO documents (name, body, updated_at, updated_by) VALUES (?, ?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at,
            updated_by = excluded.updated_by""",
        (name, json.dumps(body, separators=(",", ":")), now, actor.name),
    )
    bump_config_generation(conn)
    record_audit(conn, actor, f"put_{name}", name, summary, now)


def ensure_pseudonym_key(conn: sqlite3.Connection, now: float) -> None:
    # Made once, at the first start of anything that opens the database; the same for every
    # kiosk of the deployment. Never logged.
    conn.execute(
        "INSERT OR IGNORE INTO pseudonym_keys (version, key, created_at) VALUES (1, ?, ?)",
        (secrets.token_urlsafe(32), now),
    )


