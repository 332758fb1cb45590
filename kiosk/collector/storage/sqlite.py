"""The embedded storage: one SQLite file in WAL mode.

One writer connection on its own thread runs every write as a plain function `fn(conn)` inside
`BEGIN IMMEDIATE ... COMMIT` (the datasette pattern): a batch is one transaction with one
`executemany` per table, never an await per row. Reads run on a second connection and thread,
so token look-ups and reads never wait behind a batch. (aiosqlite runs a connection on a thread
the same way, but offers no public way to run a whole function there; a one-thread executor does.)

The writer does not checkpoint the WAL inside its commits (`wal_autocheckpoint=0`): after each
write a third connection on a third thread does (PASSIVE, so it never blocks the writer), because
copying the WAL back into the database inside a COMMIT made the writer, ingest's bottleneck, a
quarter slower. A WAL is only restarted from its start after a checkpoint has copied all of it,
which writes that never pause (a city's kiosks catching up) would never let happen: the WAL would
grow until the disk is full. So when a checkpoint finds more than `wal_limit_frames` in it, the
writer thread, before its next transaction, waits for any checkpoint under way and empties the
WAL itself (TRUNCATE); writes queued meanwhile wait their turn. (Running that TRUNCATE from the
checkpoint thread let the writer go on appending while it ran, and running it from the writer
without waiting met the background checkpoint's lock and failed at once, every time.)

`synchronous=FULL`: once `ingest_entries` returns, the batch survives a power cut, as the spec's
"committed before 200" asks. Several collector processes on one SQLite file are not the design:
use PostgreSQL for that (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal, TypeVar

from kiosk.collector.storage import sqlite_sql as sql
from kiosk.collector.storage.base import (
    Actor,
    AuditRecord,
    ConfigSnapshot,
    HeartbeatRecord,
    IngestResult,
    KioskInfo,
    LogSummary,
    PolicyPublication,
    PreparedBatch,
    Principal,
    Role,
    StorageError,
    StoredEntry,
    StoredHeartbeat,
    Venue,
)
from kiosk.collector.storage.migrations import apply_sqlite
from kiosk.collector.storage.rows import audit_record as _audit_record
from kiosk.collector.storage.rows import log_summary as _log_summary
from kiosk.collector.storage.rows import stored_heartbeat as _stored_heartbeat

T = TypeVar("T")
BUSY_TIMEOUT_S = 10.0
WAL_LIMIT_FRAMES = 16_384  # 64 MiB of 4 KiB pages

log = logging.getLogger(__name__)


class _Thread:
    """One connection owned by one thread; functions run there one at a time, in order."""

    def __init__(self, path: Path, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def _open(self, pragmas: Sequence[str]) -> None:
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        for pragma in pragmas:
            conn.execute(pragma)
        self._conn = conn

    async def open(self, pragmas: Sequence[str]) -> None:
        await self.call(lambda: self._open(pragmas))

    async def call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite {self._path}: {exc}") from exc

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.call(lambda: fn(self._connection()))

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue `fn(conn)` without waiting for it (errors stay in the returned future)."""
        return self._executor.submit(lambda: fn(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"SQLite {self._path}: the storage is closed")
        return self._conn

    async def close(self) -> None:
        def shut() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        try:
            await self.call(shut)
        finally:
            self._executor.shutdown(wait=False)


def _transaction(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    def run(conn: sqlite3.Connection) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    return run


def _read_transaction(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    # A deferred transaction: every read of `fn` sees one snapshot of the WAL.
    def run(conn: sqlite3.Connection) -> T:
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    return run


def _checkpoint(conn: sqlite3.Connection) -> int:
    """A PASSIVE checkpoint; the frames the WAL holds (0 where that is unknown)."""
    try:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error as exc:  # the next one will try again; the WAL only grows meanwhile
        log.warning("SQLite WAL checkpoint failed: %s", exc)
        return 0
    return max(0, int(row[1]))


def _prepare_folder(path: Path) -> bool:
    """Create the database's folder when missing; whether the database file is new."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise StorageError(f"cannot create the folder of {path}: {exc}") from None
    return not path.exists()


class SqliteStorage:
    """`Storage` on one SQLite file. Open with `SqliteStorage.open(path, now=...)`."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, path: Path, wal_limit_frames: int = WAL_LIMIT_FRAMES) -> None:
        self.path = path
        self._writer = _Thread(path, "collector-sqlite-writer")
        self._reader = _Thread(path, "collector-sqlite-reader")
        self._checkpointer = _Thread(path, "collector-sqlite-checkpoint")
        self._checkpoint: Future[int] | None = None
        self._wal_limit_frames = wal_limit_frames
        self._wal_frames = 0  # as the last checkpoint found it
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path, *, now: float, wal_limit_frames: int = WAL_LIMIT_FRAMES
    ) -> SqliteStorage:
        """Open (creating the file, its folder and the schema when missing) and migrate."""
        fresh = await asyncio.to_thread(_prepare_folder, path)
        storage = cls(path, wal_limit_frames)
        try:
            await storage._writer.open(
                (
                    "PRAGMA journal_mode=WAL",
                    "PRAGMA synchronous=FULL",
                    "PRAGMA foreign_keys=ON",
                    "PRAGMA wal_autocheckpoint=0",
                )
            )
            if fresh:
                os.chmod(path, 0o600)  # token hashes and the pseudonym key live here
            await storage._writer.run(lambda conn: apply_sqlite(conn, str(path), sql.iso_time(now)))
            await storage.write(lambda conn: sql.ensure_pseudonym_key(conn, now))
            await storage._reader.open(("PRAGMA query_only=ON",))
            await storage._checkpointer.open(("PRAGMA synchronous=FULL",))
        except BaseException:
            await storage.close()
            raise
        return storage

    # -- the extension points for other modules (findings, dashboard) --------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the writer connection inside one IMMEDIATE transaction."""
        try:
            return await self._writer.run(self._within_wal_bound(_transaction(fn)))
        finally:
            self._checkpoint_soon()

    def _within_wal_bound(
        self, run: Callable[[sqlite3.Connection], T]
    ) -> Callable[[sqlite3.Connection], T]:
        def bounded(conn: sqlite3.Connection) -> T:
            if self._wal_frames > self._wal_limit_frames:
                under_way = self._checkpoint
                if under_way is not None:
                    wait([under_way])  # one checkpoint at a time, or TRUNCATE finds it busy
                self._wal_frames = 0
                row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if row[0]:  # readers held on past the busy timeout: the next write tries again
                    log.warning("SQLite WAL over its bound and busy for %.0f s", BUSY_TIMEOUT_S)
            return run(conn)

        return bounded

    def _checkpoint_soon(self) -> None:
        # One at a time: frames written while one runs are copied by the next write's.
        if self._closed or (self._checkpoint is not None and not self._checkpoint.done()):
            return
        self._checkpoint = self._checkpointer.submit(_checkpoint)
        self._checkpoint.add_done_callback(self._note_wal_size)

    def _note_wal_size(self, done: Future[int]) -> None:
        # On the checkpoint's thread: one int, read by the writer's thread before each write.
        if not done.cancelled() and done.exception() is None:
            self._wal_frames = done.result()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the reader connection inside one read transaction (a snapshot)."""
        return await self._reader.run(_read_transaction(fn))

    # -- Storage --------------------------------------------------------------------------

    async def close(self) -> None:
        """Close both connections; closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        await self._checkpointer.close()
        await self._reader.close()
        await self._writer.close()

    async def ping(self) -> None:
        await self.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def maintain(self, now: float) -> None:
        await self._writer.run(lambda conn: conn.execute("PRAGMA optimize"))

    async def add_venue(self, venue: Venue, *, actor: Actor) -> None:
        await self.write(lambda conn: sql.add_venue(conn, venue, actor))

    async def add_kiosk(
        self, kiosk_id: str, venue_id: str, token_hash: str, *, actor: Actor, now: float
    ) -> None:
        await self.write(
            lambda conn: sql.add_kiosk(conn, kiosk_id, venue_id, token_hash, actor, now)
        )

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
        await self.write(
            lambda conn: sql.add_person(conn, name, role, region, token_hash, actor, now)
        )

    async def set_token(
        self, name: str, token_hash: str | None, *, actor: Actor, now: float
    ) -> Principal:
        return await self.write(lambda conn: sql.set_token(conn, name, token_hash, actor, now))

    async def principal_by_token(self, token_hash: str) -> Principal | None:
        def find(conn: sqlite3.Connection) -> Principal | None:
            row = conn.execute(sql.PRINCIPAL + " WHERE p.token_hash = ?", (token_hash,)).fetchone()
            return None if row is None else sql.principal(row)

        return await self._reader.run(find)

    async def venue(self, venue_id: str) -> Venue | None:
        def find(conn: sqlite3.Connection) -> Venue | None:
            row = conn.execute(
                "SELECT venue_id, name, region, venue_type, created_at, unit_status FROM venues "
                "WHERE venue_id = ?",
                (venue_id,),
            ).fetchone()
            return None if row is None else Venue(*row)

        return await self._reader.run(find)

    async def kiosk(self, kiosk_id: str) -> KioskInfo | None:
        def find(conn: sqlite3.Connection) -> KioskInfo | None:
            row = conn.execute(
                "SELECT k.kiosk_id, k.venue_id, k.provisioned_at, v.venue_type, v.region, "
                "v.unit_status FROM kiosks k JOIN venues v ON v.venue_id = k.venue_id "
                "WHERE k.kiosk_id = ?",
                (kiosk_id,),
            ).fetchone()
            return None if row is None else KioskInfo(*row)

        return await self._reader.run(find)

    async def ingest_entries(self, batch: PreparedBatch) -> IngestResult:
        return await self.write(lambda conn: sql.ingest(conn, batch))

    async def record_heartbeat(self, beat: HeartbeatRecord) -> None:
        await self.write(lambda conn: sql.heartbeat(conn, beat))

    async def config_generation(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT value FROM settings WHERE key = 'config_generation'"
            ).fetchone()
            return int(row[0])

        return await self._reader.run(read)

    async def config_snapshot(self) -> ConfigSnapshot:
        return await self.read(sql.snapshot)

    async def publish_policy(self, publication: PolicyPublication, *, actor: Actor) -> None:
        await self.write(lambda conn: sql.publish(conn, publication, actor))

    async def put_document(
        self,
        name: Literal["trust_list", "revocation_list"],
        body: dict[str, Any],
        summary: dict[str, Any],
        *,
        actor: Actor,
        now: float,
    ) -> None:
        await self.write(lambda conn: sql.put_document(conn, name, body, summary, actor, now))

    async def audit(
        self,
        actor: Actor,
        action: str,
        target: str | None,
        detail: dict[str, Any],
        *,
        now: float,
    ) -> None:
        await self.write(lambda conn: sql.record_audit(conn, actor, action, target, detail, now))

    async def audit_records(
        self, *, since: float, until: float, after_id: int, limit: int
    ) -> list[AuditRecord]:
        def read(conn: sqlite3.Connection) -> list[AuditRecord]:
            rows = conn.execute(
                "SELECT audit_id, at, actor, role, action, target, detail FROM audit "
                "WHERE at >= ? AND at < ? AND audit_id > ? ORDER BY audit_id LIMIT ?",
                (since, until, after_id, limit),
            ).fetchall()
            return [_audit_record(row) for row in rows]

        return await self._reader.run(read)

    async def entries_of_kiosk(
        self, kiosk_id: str, *, since: float, until: float, limit: int
    ) -> list[StoredEntry]:
        def read(conn: sqlite3.Connection) -> list[StoredEntry]:
            rows = conn.execute(
                "SELECT id, kiosk_id, log_id, seq, ts, received_at, link, flags, chain, body "
                "FROM entries WHERE kiosk_id = ? AND ts >= ? AND ts < ? "
                "ORDER BY ts, id LIMIT ?",
                (kiosk_id, since, until, limit),
            ).fetchall()
            return [StoredEntry(*row) for row in rows]

        return await self._reader.run(read)

    async def heartbeats_of_kiosk(
        self, kiosk_id: str, *, since: float, until: float, limit: int
    ) -> list[StoredHeartbeat]:
        def read(conn: sqlite3.Connection) -> list[StoredHeartbeat]:
            rows = conn.execute(
                "SELECT kiosk_id, received_at, ts, offset_s, log_id, last_seq, backlog, "
                "policy_version, flags, gap_s, drift_since, body FROM heartbeats "
                "WHERE kiosk_id = ? AND received_at >= ? AND received_at < ? "
                "ORDER BY received_at, row_id LIMIT ?",
                (kiosk_id, since, until, limit),
            ).fetchall()
            return [_stored_heartbeat(row) for row in rows]

        return await self._reader.run(read)

    async def log_summary(self, log_id: str) -> LogSummary | None:
        def read(conn: sqlite3.Connection) -> LogSummary | None:
            row = conn.execute(
                "SELECT log_id, kiosk_id, max_seq, held FROM logs WHERE log_id = ?",
                (log_id.lower(),),
            ).fetchone()
            if row is None:
                return None
            runs = conn.execute(
                "SELECT first_seq, last_seq FROM log_runs WHERE log_id = ? ORDER BY first_seq",
                (log_id.lower(),),
            ).fetchall()
            return _log_summary(row, runs)

        return await self.read(read)

    async def count_entries(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

        return await self._reader.run(read)
