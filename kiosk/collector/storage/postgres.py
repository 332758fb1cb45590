"""The city-scale storage: PostgreSQL through an asyncpg pool.

Collectors keep no state of their own here, so several can share one database behind a load
balancer. A batch is one transaction of a few set-based statements: ids claimed in `entry_ids`
(`INSERT ... ON CONFLICT DO NOTHING RETURNING` tells new ids from held ones, and makes two
collectors receiving the same retry agree), entries written with COPY into the day-partitioned
`entries`, then runs, log summaries and hourly rollups as `unnest` upserts. Row locks are taken
in a fixed order (ids sorted, then logs by advisory lock, then rollup keys sorted), so
concurrent batches cannot deadlock.

Times cross this boundary as Unix seconds: a `timestamptz` codec on every connection converts.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import asyncpg

from kiosk.collector.config import redact_url
from kiosk.collector.storage import postgres_sql as sql
from kiosk.collector.storage.base import (
    Actor,
    AlreadyExists,
    AuditRecord,
    ConfigSnapshot,
    HeartbeatRecord,
    IngestResult,
    KioskInfo,
    LogSummary,
    NotFound,
    PolicyPublication,
    PreparedBatch,
    Principal,
    Role,
    StorageError,
    StoredEntry,
    StoredHeartbeat,
    Venue,
)
from kiosk.collector.storage.migrations import (
    SCHEMA_VERSION_TABLE,
    check_not_newer,
    load_migrations,
)
from kiosk.collector.storage.partitions import AHEAD_DAYS, DailyPartitions, day_of
from kiosk.collector.storage.rows import audit_record as _audit_record
from kiosk.collector.storage.rows import log_summary as _log_summary
from kiosk.collector.storage.rows import stored_heartbeat as _stored_heartbeat

T = TypeVar("T")
PG_EPOCH = 946684800  # 2000-01-01T00:00:00Z, PostgreSQL's zero
MIGRATION_LOCK = 0x6B696F736B00

Conn = sql.Conn


async def _init_connection(conn: Conn) -> None:
    await conn.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=lambda t: (round((t - PG_EPOCH) * 1_000_000),),
        decoder=lambda value: value[0] / 1_000_000 + PG_EPOCH,
        format="tuple",
    )


class PostgresStorage:
    """`Storage` on PostgreSQL. Open with `PostgresStorage.open(url, now=...)`."""

    dialect: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, pool: Any, url: str) -> None:
        self.pool = pool  # the extension point for other modules (findings, dashboard)
        self._where = redact_url(url)
        self._partitions = DailyPartitions()

    @classmethod
    async def open(cls, url: str, *, now: float, pool_size: int = 8) -> PostgresStorage:
        """Connect (creating the database when the server allows it) and migrate."""
        pool = await _create_pool(url, pool_size)
        storage = cls(pool, url)
        try:
            await storage._migrate(now)
            await storage.transaction(lambda conn: sql.ensure_pseudonym_key(conn, now))
            await storage.maintain(now)
        except BaseException:
            await pool.close()
            raise
        return storage

    async def _migrate(self, now: float) -> None:
        migrations = load_migrations("postgres")
        async with self.pool.acquire() as conn:
            for migration in migrations:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                    await conn.execute(SCHEMA_VERSION_TABLE)
                    current = await conn.fetchval(
                        "SELECT COALESCE(MAX(version), 0) FROM schema_version"
                    )
                    check_not_newer(current, migrations, self._where)
                    if current < migration.version:
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_version (version, name, applied_at) "
                            "VALUES ($1, $2, now()::text)",
                            migration.version,
                            migration.name,
                        )

    # -- the extension points -----------------------------------------------------------

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn(conn)` inside one transaction on a pooled connection."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                return await fn(conn)
        except (asyncpg.PostgresError, OSError) as exc:
            raise _translate(exc, self._where) from exc

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        try:
            return list(await self.pool.fetch(query, *args))
        except (asyncpg.PostgresError, OSError) as exc:
            raise _translate(exc, self._where) from exc

    # -- Storage --------------------------------------------------------------------------

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> None:
        await self.fetch("SELECT 1")

    async def maintain(self, now: float) -> None:
        async def ahead(conn: Conn) -> None:
            today = day_of(now)
            await self._partitions.ensure(conn, set(range(today, today + AHEAD_DAYS)), now)

        try:
            async with self.pool.acquire() as conn:
                await ahead(conn)
        except (asyncpg.PostgresError, OSError) as exc:
            raise _translate(exc, self._where) from exc

    async def add_venue(self, venue: Venue, *, actor: Actor) -> None:
        async def run(conn: Conn) -> None:
            try:
                await conn.execute(
                    "INSERT INTO venues (venue_id, name, region, venue_type, created_at) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    venue.venue_id, venue.name, venue.region, venue.venue_type, venue.created_at,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"venue {venue.venue_id!r} already exists") from None
            detail = {"name": venue.name, "region": venue.region, "venue_type": venue.venue_type}
            await sql.record_audit(
                conn, actor, "add_venue", venue.venue_id, detail, venue.created_at
            )

        await self.transaction(run)

    async def add_kiosk(
        self, kiosk_id: str, venue_id: str, token_hash: str, *, actor: Actor, now: float
    ) -> None:
        async def run(conn: Conn) -> None:
            if await conn.fetchval("SELECT 1 FROM venues WHERE venue_id = $1", venue_id) is None:
                raise NotFound(f"no venue {venue_id!r}; add it first with `kiosk admin add-venue`")
            if await conn.fetchval("SELECT 1 FROM principals WHERE name = $1", kiosk_id):
                raise AlreadyExists(
                    f"{kiosk_id!r} already exists (kiosk ids and names share one list)"
                )
            try:
                await conn.execute(
                    "INSERT INTO kiosks (kiosk_id, venue_id, provisioned_at) VALUES ($1, $2, $3)",
                    kiosk_id, venue_id, now,
                )
                await conn.execute(
                    "INSERT INTO principals (name, role, kiosk_id, token_hash, token_issued_at, "
                    "created_at) VALUES ($1, 'kiosk', $1, $2, $3, $3)",
                    kiosk_id, token_hash, now,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"{kiosk_id!r} already exists") from None
            await sql.record_audit(conn, actor, "add_kiosk", kiosk_id, {"venue_id": venue_id}, now)

        await self.transaction(run)

    async def add_person(
        self,
        name: str,
        role: Role,
        region: str | None,
        token_hash: str,
        *,
        actor: Actor,
        now: float,
    ) -> None:
        async def run(conn: Conn) -> None:
            try:
                await conn.execute(
                    "INSERT INTO principals (name, role, region, token_hash, token_issued_at, "
                    "created_at) VALUES ($1, $2, $3, $4, $5, $5)",
                    name, role, region, token_hash, now,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(
                    f"{name!r} already exists (kiosk ids and names share one list)"
                ) from None
            await sql.record_audit(conn, actor, f"add_{role}", name, {"region": region}, now)

        await self.transaction(run)

    async def set_token(
        self, name: str, token_hash: str | None, *, actor: Actor, now: float
    ) -> Principal:
        async def run(conn: Conn) -> Principal:
            row = await conn.fetchrow(sql.PRINCIPAL + " WHERE p.name = $1 FOR UPDATE OF p", name)
            if row is None:
                raise NotFound(f"no kiosk, inspector or admin named {name!r}")
            if token_hash is None:
                await conn.execute(
                    "UPDATE principals SET token_hash = NULL, token_revoked_at = $2 "
                    "WHERE name = $1",
                    name, now,
                )
            else:
                await conn.execute(
                    "UPDATE principals SET token_hash = $2, token_issued_at = $3, "
                    "token_revoked_at = NULL WHERE name = $1",
                    name, token_hash, now,
                )
            action = "revoke_token" if token_hash is None else "rotate_token"
            await sql.record_audit(conn, actor, action, name, {"role": row["role"]}, now)
            return sql.principal(row)

        return await self.transaction(run)

    async def principal_by_token(self, token_hash: str) -> Principal | None:
        rows = await self.fetch(sql.PRINCIPAL + " WHERE p.token_hash = $1", token_hash)
        return sql.principal(rows[0]) if rows else None

    async def venue(self, venue_id: str) -> Venue | None:
        rows = await self.fetch(
            "SELECT venue_id, name, region, venue_type, created_at, unit_status FROM venues "
            "WHERE venue_id = $1",
            venue_id,
        )
        return Venue(*rows[0]) if rows else None

    async def kiosk(self, kiosk_id: str) -> KioskInfo | None:
        rows = await self.fetch(
            "SELECT k.kiosk_id, k.venue_id, k.provisioned_at, v.venue_type, v.region, "
            "v.unit_status FROM kiosks k JOIN venues v ON v.venue_id = k.venue_id "
            "WHERE k.kiosk_id = $1",
            kiosk_id,
        )
        return KioskInfo(*rows[0]) if rows else None

    async def ingest_entries(self, batch: PreparedBatch) -> IngestResult:
        try:
            async with self.pool.acquire() as conn:
                days = {day_of(row.ts) for row in batch.rows}
                await self._partitions.ensure(conn, days, batch.received_at)
                async with conn.transaction():
                    return await sql.ingest(conn, batch)
        except (asyncpg.PostgresError, OSError) as exc:
            raise _translate(exc, self._where) from exc

    async def record_heartbeat(self, beat: HeartbeatRecord) -> None:
        await self.transaction(lambda conn: sql.heartbeat(conn, beat))

    async def config_generation(self) -> int:
        rows = await self.fetch("SELECT value FROM settings WHERE key = 'config_generation'")
        return int(rows[0][0])

    async def config_snapshot(self) -> ConfigSnapshot:
        return await self.transaction(sql.snapshot)

    async def publish_policy(self, publication: PolicyPublication, *, actor: Actor) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO policies (venue_type, policy_version, policy, max_trust_age_hours, "
                "published_at, published_by) VALUES ($1, $2, $3::jsonb, $4, $5, $6)",
                publication.venue_type, publication.policy_version,
                json.dumps(publication.policy, sort_keys=True), publication.max_trust_age_hours,
                publication.published_at, actor.name,
            )
            await sql.bump_config_generation(conn)
            detail = {"policy_version": publication.policy_version, "policy": publication.policy}
            await sql.record_audit(
                conn, actor, "publish_policy", publication.venue_type, detail,
                publication.published_at,
            )

        await self.transaction(run)

    async def put_document(
        self,
        name: Literal["trust_list", "revocation_list"],
        body: dict[str, Any],
        summary: dict[str, Any],
        *,
        actor: Actor,
        now: float,
    ) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO documents (name, body, updated_at, updated_by) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body, "
                "updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
                name, json.dumps(body, separators=(",", ":")), now, actor.name,
            )
            await sql.bump_config_generation(conn)
            await sql.record_audit(conn, actor, f"put_{name}", name, summary, now)

        await self.transaction(run)

    async def audit(
        self,
        actor: Actor,
        action: str,
        target: str | None,
        detail: dict[str, Any],
        *,
        now: float,
    ) -> None:
        await self.transaction(
            lambda conn: sql.record_audit(conn, actor, action, target, detail, now)
        )

    async def audit_records(
        self, *, since: float, until: float, after_id: int, limit: int
    ) -> list[AuditRecord]:
        rows = await self.fetch(
            "SELECT audit_id, at, actor, role, action, target, detail::text FROM audit "
            "WHERE at >= $1 AND at < $2 AND audit_id > $3 ORDER BY audit_id LIMIT $4",
            since, until, after_id, limit,
        )
        return [_audit_record(row) for row in rows]

    async def entries_of_kiosk(
        self, kiosk_id: str, *, since: float, until: float, limit: int
    ) -> list[StoredEntry]:
        rows = await self.fetch(
            "SELECT id::text, kiosk_id, log_id::text, seq, ts, received_at, link, flags, chain, "
            "body FROM entries WHERE kiosk_id = $1 AND ts >= $2 AND ts < $3 "
            "ORDER BY ts, id LIMIT $4",
            kiosk_id, since, until, limit,
        )
        return [StoredEntry(*row) for row in rows]

    async def heartbeats_of_kiosk(
        self, kiosk_id: str, *, since: float, until: float, limit: int
    ) -> list[StoredHeartbeat]:
        rows = await self.fetch(
            "SELECT kiosk_id, received_at, ts, offset_s, log_id::text, last_seq, backlog, "
            "policy_version, flags, gap_s, drift_since, body::text FROM heartbeats "
            "WHERE kiosk_id = $1 AND received_at >= $2 AND received_at < $3 "
            "ORDER BY received_at, row_id LIMIT $4",
            kiosk_id, since, until, limit,
        )
        return [_stored_heartbeat(row) for row in rows]

    async def log_summary(self, log_id: str) -> LogSummary | None:
        async def run(conn: Conn) -> LogSummary | None:
            row = await conn.fetchrow(
                "SELECT log_id::text, kiosk_id, max_seq, held FROM logs WHERE log_id = $1",
                log_id,
            )
            if row is None:
                return None
            runs = await conn.fetch(
                "SELECT first_seq, last_seq FROM log_runs WHERE log_id = $1 ORDER BY first_seq",
                log_id,
            )
            return _log_summary(row, runs)

        return await self.transaction(run)

    async def count_entries(self) -> int:
        rows = await self.fetch("SELECT COUNT(*) FROM entries")
        return int(rows[0][0])


async def _create_pool(url: str, pool_size: int) -> Any:
    where = redact_url(url)
    for attempt in range(2):
        try:
            return await asyncpg.create_pool(
                url, min_size=1, max_size=pool_size, init=_init_connection, command_timeout=60
            )
        except asyncpg.InvalidCatalogNameError:
            if attempt:
                raise
            await _create_database(url)
        except (asyncpg.PostgresError, OSError) as exc:
            raise StorageError(f"cannot connect to {where}: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


async def _create_database(url: str) -> None:
    # `kiosk admin` works before anything else ran: make the database when the role may.
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    try:
        conn = await asyncpg.connect(maintenance)
    except (asyncpg.PostgresError, OSError) as exc:
        raise StorageError(
            f"database {name!r} does not exist and cannot be created ({exc}); "
            f"create it with: createdb {name}"
        ) from None
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"CREATE DATABASE {quoted}")
    except asyncpg.DuplicateDatabaseError:
        pass
    except asyncpg.PostgresError as exc:
        raise StorageError(
            f"database {name!r} does not exist and cannot be created ({exc}); "
            f"create it with: createdb {name}"
        ) from None
    finally:
        await conn.close()


def _translate(exc: BaseException, where: str) -> StorageError:
    return StorageError(f"PostgreSQL {where}: {type(exc).__name__}: {exc}")


