"""The door's local entry log: "no record, no entry".

One SQLite file, one aiosqlite connection, WAL with `synchronous=FULL`, so an entry is on disk
before `append` returns and before the door may open. Each entry is stored as the canonical JSON
(RFC 8785) it was chained over, so what is sent is byte for byte what was hashed, plus the columns
the sync loop and retention need (seq, id, ts, sent, set_aside).

Every failure surfaces as a `StoreError` with a short `reason`; `append` raises its subclass
`NotRecorded`, and the door then lets nobody in. A failed append consumes no `seq`: the head
(last seq and chain) moves only after a commit, and is re-read from disk after any failure.

The log holds at most `max_entries`. At the bound the oldest entries the collector already holds
make room; entries only this log has are never dropped: the door then says "not recorded"
(`storage_full`). `storage_used_ratio` counts those entries (unsent and set aside) against the
bound, so the heartbeat and the attendant's view warn while there is still time.

A database found corrupt at open is never deleted: the file and its -wal/-shm are renamed to
`<name>.corrupt-<UTC time>` (the pair keeps working together for a human to salvage), a warning
is logged, and a fresh log with a new `log_id` starts, so the door keeps working and the
collector sees the break as a new log. `EntryLog.recovered_from` names the moved file so the app
can raise an alert.

A database that lost its tail (a disk that acknowledged writes it did not keep, a -wal file lost
or deleted, an older copy put back) opens cleanly but would issue seqs again that were already
shown, and perhaps sent, under the same `log_id`. The head mark catches this: a small file beside
the database (`<name>.head`) holding the log_id and last seq, rewritten in place after every
commit. Written after SQLite's own synced commit, it can only ever name a seq that is already
durable, so it needs no fsync of its own (an fsync per entry would halve the append rate): after
an honest power cut it is at most behind, never ahead. At open, a mark ahead of the database for
the same log_id means entries were lost: the entries that are left keep their bodies (and are
still sent), renumbered in the `seq` column below 1 so they stay first in order, and a new log
starts with a new `log_id` at seq 1 (sync-api.md: a recovered database gets a new one).
`EntryLog.lost_tail` says what happened so the app can raise an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import sqlite3
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from pydantic import ValidationError

from kiosk.wire import GENESIS_CHAIN, Entry, chained_body, format_rfc3339, new_uuid7

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_ID_CHUNK = 500  # ids per statement, well under SQLite's bound-variable limit
_ROOM_BATCH = 500  # sent entries deleted at a time when the bound is reached

# `entries.seq` is the entry's seq in the current log; the entries of a log retired because the
# database lost its tail keep their place in the order below 1 (each body keeps its own seq).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    set_aside TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_unsent ON entries(seq) WHERE sent = 0 AND set_aside IS NULL;
CREATE INDEX IF NOT EXISTS entries_set_aside ON entries(seq) WHERE set_aside IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_ts ON entries(ts);
CREATE INDEX IF NOT EXISTS entries_override_of ON entries(json_extract(body, '$.override.entry_id'))
    WHERE json_extract(body, '$.override.entry_id') IS NOT NULL;
"""

# The head (last seq and chain) moves in the same implicit transaction as the INSERT of an entry,
# so an append is one statement: one round trip to the connection's thread instead of four
# (BEGIN, INSERT, UPDATE, COMMIT), which doubled the append rate. A process's first append
# creates it when missing, so logs written before it get it too; entries retired below seq 1
# never move the head.
_HEAD_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS entries_head AFTER INSERT ON entries WHEN NEW.seq >= 1
BEGIN
    UPDATE meta SET value = CAST(NEW.seq AS TEXT) WHERE key = 'last_seq';
    UPDATE meta SET value = json_extract(NEW.body, '$.chain') WHERE key = 'last_chain';
END
"""


class StoreError(Exception):
    """The entry log failed. `reason`: disk_full, read_only, corrupt, storage_full, invalid, io."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class NotRecorded(StoreError):
    """An entry could not be committed; the door must not open. `invalid` means the draft would
    not make a valid sync-api entry (a bug, or an attendant's note over 200 characters)."""


@dataclass(frozen=True)
class EntryDraft:
    """A decision, before the log gives it an id, seq and chain. `ts` is Unix seconds."""

    ts: float
    code_format: str
    code_verdict: str
    code_status: str | None
    subject: str | None
    subject_key_version: int | None
    temperature_c: float | None
    mask: str
    decision: str
    reasons: tuple[str, ...]
    override: dict[str, Any] | None
    policy_version: str
    clock_offset_ms: int | None


@dataclass(frozen=True)
class LogStats:
    log_id: str
    last_seq: int
    backlog: int
    set_aside: int
    entries: int
    storage_used_ratio: float


@dataclass(frozen=True)
class LostTail:
    """Log `old_log_id` was found ending at `kept_seq` although `written_seq` had been written;
    the entries left were retired and a new log started."""

    old_log_id: str
    kept_seq: int
    written_seq: int


HEAD_MARK_SUFFIX = ".head"
_MARK_MAGIC = "kiosk-entry-log-head 1"


def head_mark_path(path: Path) -> Path:
    """Where the head mark of the database at `path` is kept."""
    return path.with_name(path.name + HEAD_MARK_SUFFIX)


def _mark_record(log_id: str, seq: int) -> bytes:
    text = f"{_MARK_MAGIC} {log_id} {seq:020d}"
    return f"{text} {zlib.crc32(text.encode('ascii')):08x}\n".encode("ascii")


def read_head_mark(path: Path) -> tuple[str, int] | None:
    """(log_id, last seq) of the head mark beside the database at `path`; None when there is
    none or it cannot be read (then nothing can be checked against it: warned, not fatal)."""
    mark = head_mark_path(path)
    try:
        line = mark.read_bytes().split(b"\n", 1)[0]
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the entry log's head mark %s (%s)", mark, exc.strerror or exc)
        return None
    try:
        text, crc = line.decode("ascii").rsplit(" ", 1)
        if int(crc, 16) != zlib.crc32(text.encode("ascii")):
            raise ValueError("checksum mismatch")
        magic, version, log_id, seq = text.split(" ")
        if f"{magic} {version}" != _MARK_MAGIC:
            raise ValueError("not a head mark")
        return log_id, int(seq)
    except ValueError as exc:
        log.warning(
            "the entry log's head mark %s is unreadable (%s); a lost tail cannot be detected "
            "at this start",
            mark,
            exc,
        )
        return None


class _HeadMark:
    """Writes the head mark in place (one small pwrite per entry, no fsync: see the module's
    docstring). A failing write is warned once and never fails an append: the entry is
    committed, and a mark left behind can only miss a lost tail, never invent one."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd
        self._warned = fd is None

    @classmethod
    def open(cls, database: Path) -> _HeadMark:
        path = head_mark_path(database)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning("cannot keep the entry log's head mark %s (%s)", path, exc.strerror or exc)
            return cls(path, None)
        return cls(path, fd)

    def write(self, log_id: str, seq: int) -> None:
        if self._fd is None:
            return
        record = _mark_record(log_id, seq)
        try:
            # In place and on the event loop: a write of ~90 bytes into the page cache, cheaper
            # than a hop to a thread and back.
            os.pwrite(self._fd, record, 0)
            if seq == 0:  # a new log: a longer record of another layout must not linger
                os.ftruncate(self._fd, len(record))
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot update the entry log's head mark %s (%s)", self.path, exc.strerror
                )

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def error_reason(exc: BaseException, where: Path | None = None) -> str:
    """The StoreError reason of a database or file-system error on the log at `where`."""
    reason = _error_reason(exc)
    if reason == "io" and where is not None:
        # SQLite says only "disk I/O error" when the kernel has turned the file system
        # read-only under an open log (ext4 errors=remount-ro, after an I/O error), or when a
        # full disk has no room for the -wal or -shm of a log being opened.
        if _read_only_fs(where.parent):
            return "read_only"
        with contextlib.suppress(OSError):
            if os.statvfs(where.parent).f_bavail == 0:
                return "disk_full"
    return reason


def _read_only_fs(folder: Path) -> bool:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
        # ext4's emergency read-only state is not in the mount flags: only a write attempt
        # (here the folder's times, on this failure path only) tells.
        os.utime(folder)
    except OSError as exc:
        return exc.errno == errno.EROFS
    return False


def _error_reason(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            primary = code & 0xFF
            if primary == sqlite3.SQLITE_FULL:
                return "disk_full"
            if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
                return "read_only"
            if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                return "corrupt"
            if primary == sqlite3.SQLITE_CONSTRAINT:
                return "invalid"
        text = str(exc).lower()
        if "is full" in text:
            return "disk_full"
        if "readonly" in text or "read-only" in text:
            return "read_only"
        if "malformed" in text or "not a database" in text:
            return "corrupt"
        return "io"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "disk_full"
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "read_only"
    return "io"


def _corrupt_suffix() -> str:
    return datetime.now(tz=UTC).strftime("corrupt-%Y%m%dT%H%M%SZ")


def _move_aside(path: Path) -> Path:
    base = path.with_name(f"{path.name}.{_corrupt_suffix()}")
    target, n = base, 1
    while target.exists():
        n += 1
        target = base.with_name(f"{base.name}.{n}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(target.with_name(target.name + suffix))
    return target


class EntryLog:
    """Use `await EntryLog.open(...)`; every operation is serialized on one connection."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        *,
        kiosk_id: str,
        venue_id: str,
        max_entries: int,
        log_id: str,
        last_seq: int,
        last_chain: str,
        entries: int,
        recovered_from: Path | None,
        lost_tail: LostTail | None = None,
        head_mark: _HeadMark | None = None,
        unwritable: str | None = None,
    ) -> None:
        self._db: aiosqlite.Connection | None = db
        self.path = path
        self.kiosk_id = kiosk_id
        self.venue_id = venue_id
        self.max_entries = max_entries
        self.log_id = log_id
        self.recovered_from = recovered_from
        self.lost_tail = lost_tail
        # Why a test write failed at open (disk_full, read_only), or None: the log opened
        # writable. Later writes say for themselves (NotRecorded).
        self.unwritable_at_open = unwritable
        self._head_mark = head_mark
        self._last_seq = last_seq
        self._last_chain = last_chain
        self._entries = entries
        # One lock for reads too: a read between an append's BEGIN and COMMIT on the shared
        # connection would see an entry that may yet be rolled back.
        self._lock = asyncio.Lock()
        # Whether this process has made sure of _HEAD_TRIGGER (a log on a read-only disk may
        # open without it; the first append creates it, or fails as the INSERT would have).
        self._head_trigger = False

    # -- opening and closing --------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        kiosk_id: str,
        venue_id: str,
        max_entries: int = 1_000_000,
        check: bool = False,
    ) -> EntryLog:
        """Open or create the log at `path`. `check` runs `PRAGMA quick_check` first (slow on a
        big log; worth it after an append reported `corrupt`). Raises StoreError when the file
        cannot be used and is not corrupt (read-only, I/O)."""
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        recovered_from: Path | None = None
        for _attempt in range(2):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = await aiosqlite.connect(path, isolation_level=None)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(error_reason(exc, path), f"{path}: {exc}") from exc
            try:
                head = await _initialise(db, check=check)
            except (OSError, sqlite3.Error, _Corrupt) as exc:
                await db.close()
                reason = "corrupt" if isinstance(exc, _Corrupt) else error_reason(exc, path)
                if reason != "corrupt" or recovered_from is not None:
                    raise StoreError(reason, f"{path}: {exc}") from exc
                recovered_from = _move_aside(path)
                log.warning(
                    "entry log %s is corrupt (%s): moved it to %s and started a new log; "
                    "its unsent entries are still in that file",
                    path,
                    exc,
                    recovered_from,
                )
                continue
            log_id, last_seq, last_chain, entries = head
            unwritable: str | None = None
            try:
                await _check_writable(db)
            except (OSError, sqlite3.Error) as exc:
                # SQLite opens and reads a log on a full or read-only disk without a word. The
                # door may start on it (its screen says "not recorded" from the first moment,
                # and it records again once a write works); any other failure is fatal.
                unwritable = error_reason(exc, path)
                if unwritable not in ("disk_full", "read_only"):
                    await db.close()
                    raise StoreError(unwritable, f"{path}: cannot write: {exc}") from exc
                log.error(
                    "the entry log %s cannot be written now (%s): nobody can be recorded, so "
                    "nobody is admitted, until it can",
                    path,
                    unwritable,
                )
            lost_tail: LostTail | None = None
            mark = read_head_mark(path)
            if mark is not None and mark[0] == log_id and mark[1] > last_seq:
                try:
                    log_id, last_seq, last_chain = await _retire_log(db)
                except (OSError, sqlite3.Error) as exc:
                    await db.close()
                    raise StoreError(
                        error_reason(exc, path), f"{path}: cannot start a new log: {exc}"
                    ) from exc
                lost_tail = LostTail(mark[0], head[1], mark[1])
                log.error(
                    "entry log %s lost its tail: log %s ends at seq %d, but seq %d had been "
                    "written; its %d entries left are kept (and still sent), and new log %s "
                    "starts so that no seq is issued twice",
                    path,
                    mark[0],
                    head[1],
                    mark[1],
                    entries,
                    log_id,
                )
            head_mark = _HeadMark.open(path)
            head_mark.write(log_id, last_seq)
            return cls(
                db,
                path,
                kiosk_id=kiosk_id,
                venue_id=venue_id,
                max_entries=max_entries,
                log_id=log_id,
                last_seq=last_seq,
                last_chain=last_chain,
                entries=entries,
                recovered_from=recovered_from,
                lost_tail=lost_tail,
                head_mark=head_mark,
                unwritable=unwritable,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()
            if self._head_mark is not None:
                self._head_mark.close()

    def _conn(self, error: type[StoreError] = StoreError) -> aiosqlite.Connection:
        if self._db is None:
            raise error("io", "the entry log is closed")
        return self._db

    # -- writing --------------------------------------------------------------------------

    async def append(self, draft: EntryDraft, *, entry_id: str | None = None) -> dict[str, Any]:
        """Give the draft an id, the next seq and its chain, commit it, return the wire entry."""
        async with self._lock:
            db = self._conn(NotRecorded)
            if self._entries >= self.max_entries and not await self._make_room(db):
                raise NotRecorded(
                    "storage_full",
                    f"{self._entries} entries held, none of them at the collector yet; the "
                    f"bound is {self.max_entries}: send or purge before more can be written",
                )
            seq = self._last_seq + 1
            entry: dict[str, Any] = {
                "id": entry_id if entry_id is not None else new_uuid7(round(draft.ts * 1000)),
                "log_id": self.log_id,
                "seq": seq,
                "kiosk_id": self.kiosk_id,
                "venue_id": self.venue_id,
                "ts": format_rfc3339(draft.ts),
                "clock_offset_ms": draft.clock_offset_ms,
                "code_format": draft.code_format,
                "code_verdict": draft.code_verdict,
                "code_status": draft.code_status,
                "subject": draft.subject,
                "subject_key_version": draft.subject_key_version,
                "temperature_c": draft.temperature_c,
                "mask": draft.mask,
                "decision": draft.decision,
                "reasons": list(draft.reasons),
                "override": dict(draft.override) if draft.override is not None else None,
                "policy_version": draft.policy_version,
            }
            try:
                # The collector applies the same schema; an entry it would refuse must not be
                # chained into the log (it would be set aside and leave a gap in the story).
                Entry.model_validate(entry | {"chain": GENESIS_CHAIN})
            except ValidationError as exc:
                raise NotRecorded("invalid", _first_problem(exc)) from None
            try:
                entry["chain"], body = chained_body(self._last_chain, entry)
            except (TypeError, ValueError) as exc:  # rfc8785 refuses NaN and the like
                raise NotRecorded("invalid", str(exc)) from None
            try:
                if not self._head_trigger:
                    await db.execute(_HEAD_TRIGGER)
                    self._head_trigger = True
                # Autocommit: the INSERT and the trigger's head update commit together.
                await db.execute(
                    "INSERT INTO entries (seq, id, ts, body) VALUES (?, ?, ?, ?)",
                    (seq, entry["id"], draft.ts, body.decode("utf-8")),
                )
            except (OSError, sqlite3.Error) as exc:
                await self._recover(db)
                raise NotRecorded(error_reason(exc, self.path), str(exc)) from exc
            self._last_seq = seq
            self._last_chain = entry["chain"]
            self._entries += 1
            if self._head_mark is not None:
                self._head_mark.write(self.log_id, seq)
            return entry

    async def mark_sent(self, ids: Sequence[str]) -> None:
        """The collector answered 200 for these entries (accepted or duplicate)."""
        await self._write_many("UPDATE entries SET sent = 1 WHERE id IN ({})", ids)

    async def set_aside(self, entry_id: str, why: str) -> None:
        """The collector refused this entry (400 at its index): never send it again."""
        async with self._lock:
            db = self._conn()
            try:
                await db.execute(
                    "UPDATE entries SET set_aside = ? WHERE id = ?", (why or "rejected", entry_id)
                )
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(error_reason(exc, self.path), str(exc)) from exc

    async def purge(self, *, older_than: float, only_sent: bool, batch: int = 500) -> int:
        """Delete entries with ts before `older_than` (only sent ones when `only_sent`), in
        batches of `batch` so appends are never held up for long; returns how many."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        condition = "ts < ? AND sent = 1" if only_sent else "ts < ?"
        sql = (
            "DELETE FROM entries WHERE seq IN "
            f"(SELECT seq FROM entries WHERE {condition} ORDER BY seq LIMIT ?)"
        )
        total = 0
        while True:
            async with self._lock:
                db = self._conn()
                try:
                    cursor = await db.execute(sql, (older_than, batch))
                    deleted = cursor.rowcount
                    await cursor.close()
                except (OSError, sqlite3.Error) as exc:
                    raise StoreError(error_reason(exc, self.path), str(exc)) from exc
                self._entries -= deleted
                total += deleted
            if deleted < batch:
                return total
            await asyncio.sleep(0)  # let a waiting append in between batches

    # -- reading --------------------------------------------------------------------------

    async def get(self, entry_id: str) -> dict[str, Any] | None:
        rows = await self._read("SELECT body FROM entries WHERE id = ?", (entry_id,))
        return json.loads(rows[0][0]) if rows else None

    async def override_of(self, entry_id: str) -> str | None:
        """The id of the override entry that points at the deny `entry_id`, if there is one."""
        rows = await self._read(
            "SELECT id FROM entries WHERE json_extract(body, '$.override.entry_id') = ? LIMIT 1",
            (entry_id,),
        )
        return str(rows[0][0]) if rows else None

    async def get_body(self, entry_id: str) -> str | None:
        """The stored canonical JSON of an entry, exactly the bytes its chain covers."""
        rows = await self._read("SELECT body FROM entries WHERE id = ?", (entry_id,))
        return str(rows[0][0]) if rows else None

    async def unsent(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` entries not yet sent nor set aside, lowest seq first."""
        rows = await self._read(
            "SELECT body FROM entries WHERE sent = 0 AND set_aside IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [json.loads(row[0]) for row in rows]

    async def unsent_bodies(self, limit: int) -> list[tuple[str, str]]:
        """(id, stored canonical JSON) of up to `limit` entries not yet sent nor set aside, lowest
        seq first: what sync sends, byte for byte, without parsing or re-serialising it."""
        rows = await self._read(
            "SELECT id, body FROM entries WHERE sent = 0 AND set_aside IS NULL "
            "ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    async def stats(self) -> LogStats:
        rows = await self._read(
            "SELECT (SELECT COUNT(*) FROM entries WHERE sent = 0 AND set_aside IS NULL), "
            "(SELECT COUNT(*) FROM entries WHERE set_aside IS NOT NULL)",
            (),
        )
        backlog, set_aside = int(rows[0][0]), int(rows[0][1])
        return LogStats(
            log_id=self.log_id,
            last_seq=self._last_seq,
            backlog=backlog,
            set_aside=set_aside,
            entries=self._entries,
            # What fills the bound for good: entries the collector does not hold (sent ones
            # make room when the bound is reached).
            storage_used_ratio=min(1.0, (backlog + set_aside) / self.max_entries),
        )

    # -- internals ------------------------------------------------------------------------

    async def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        async with self._lock:
            db = self._conn()
            try:
                return list(await db.execute_fetchall(sql, params))
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(error_reason(exc, self.path), str(exc)) from exc

    async def _write_many(self, sql: str, ids: Sequence[str]) -> None:
        async with self._lock:
            db = self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE")
                for start in range(0, len(ids), _ID_CHUNK):
                    chunk = list(ids[start : start + _ID_CHUNK])
                    await db.execute(sql.format(",".join("?" * len(chunk))), chunk)
                await db.execute("COMMIT")
            except (OSError, sqlite3.Error) as exc:
                await self._recover(db)
                raise StoreError(error_reason(exc, self.path), str(exc)) from exc

    async def _make_room(self, db: aiosqlite.Connection) -> int:
        """At the bound, the oldest entries the collector already holds go first (1% of the
        bound at a time): the bound is for entries only this log has. Returns how many went."""
        batch = max(1, min(_ROOM_BATCH, self.max_entries // 100))
        try:
            cursor = await db.execute(
                "DELETE FROM entries WHERE seq IN "
                "(SELECT seq FROM entries WHERE sent = 1 ORDER BY seq LIMIT ?)",
                (batch,),
            )
            deleted = cursor.rowcount
            await cursor.close()
        except (OSError, sqlite3.Error) as exc:
            raise NotRecorded(error_reason(exc, self.path), str(exc)) from exc
        self._entries -= deleted
        return deleted

    async def _recover(self, db: aiosqlite.Connection) -> None:
        """After a failed write: end the transaction and take the head from disk again, so the
        next seq follows what is really committed."""
        try:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            head = await _read_head(db)
        except (OSError, sqlite3.Error, _Corrupt):
            return  # the next write fails the same way and says why
        self._last_seq, self._last_chain = head[1], head[2]


class _Corrupt(Exception):
    pass


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    return f"{key} = {error.get('input')!r}: {error['msg']}"


async def _initialise(db: aiosqlite.Connection, *, check: bool) -> tuple[str, int, str, int]:
    """Settings, schema and head of a newly opened connection: (log_id, last_seq, last_chain,
    entries). Raises _Corrupt when the file is a database that is not a sound entry log."""
    await db.execute("PRAGMA busy_timeout = 5000")
    mode = await db.execute_fetchall("PRAGMA journal_mode = WAL")
    if next(iter(mode))[0] != "wal":
        raise sqlite3.OperationalError("cannot switch the entry log to WAL mode")
    await db.execute("PRAGMA synchronous = FULL")
    if check:
        result = [row[0] for row in await db.execute_fetchall("PRAGMA quick_check")]
        if result != ["ok"]:
            raise _Corrupt("; ".join(str(r) for r in result[:3]))
    version = next(iter(await db.execute_fetchall("PRAGMA user_version")))[0]
    if version == 0:
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                await db.execute(statement)
            await db.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("log_id", str(uuid.uuid4())),
                    ("created_at", format_rfc3339(time.time())),
                    ("last_seq", "0"),
                    ("last_chain", GENESIS_CHAIN),
                ],
            )
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
    elif version != SCHEMA_VERSION:
        raise sqlite3.OperationalError(
            f"entry log schema version {version}; this kiosk knows version {SCHEMA_VERSION}"
        )
    return await _read_head(db)


async def _check_writable(db: aiosqlite.Connection) -> None:
    """One real (and synced) write that changes nothing."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute("UPDATE meta SET value = value WHERE key = 'log_id'")
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise


async def _retire_log(db: aiosqlite.Connection) -> tuple[str, int, str]:
    """Start a new log in this database: the entries there are moved below seq 1 (in order,
    bodies untouched), the head restarts at seq 0 under a new log_id. One transaction."""
    log_id = str(uuid.uuid4())
    await db.execute("BEGIN IMMEDIATE")
    try:
        low, high = next(iter(await db.execute_fetchall("SELECT MIN(seq), MAX(seq) FROM entries")))
        if high is not None and high >= 1:
            high = int(high)
            if int(low) <= 0:
                # Entries retired before move down by `high` to make room, by way of a range
                # apart from both ends: no row of an UPDATE lands on one not yet moved.
                far = high - int(low) + 1
                await db.execute("UPDATE entries SET seq = seq - ? WHERE seq <= 0", (far,))
                await db.execute("UPDATE entries SET seq = seq + ? WHERE seq <= 0", (far - high,))
            await db.execute("UPDATE entries SET seq = seq - ? WHERE seq >= 1", (high,))
        await db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [
                ("log_id", log_id),
                ("created_at", format_rfc3339(time.time())),
                ("last_seq", "0"),
                ("last_chain", GENESIS_CHAIN),
            ],
        )
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise
    return log_id, 0, GENESIS_CHAIN


async def _read_head(db: aiosqlite.Connection) -> tuple[str, int, str, int]:
    rows = await db.execute_fetchall("SELECT key, value FROM meta")
    meta: dict[str, str] = {str(row[0]): str(row[1]) for row in rows}
    try:
        log_id, last_seq, last_chain = meta["log_id"], int(meta["last_seq"]), meta["last_chain"]
    except (KeyError, ValueError) as exc:
        raise _Corrupt(f"meta table incomplete ({exc})") from None
    top = next(iter(await db.execute_fetchall("SELECT MAX(seq), COUNT(*) FROM entries")))
    # Only an entry beyond the head is inconsistent: retention may have removed the newest one.
    if top[0] is not None and int(top[0]) > last_seq:
        raise _Corrupt(f"last entry has seq {top[0]} but the log's head says {last_seq}")
    return log_id, last_seq, last_chain, int(top[1])
