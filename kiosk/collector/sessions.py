"""Dashboard sign-in sessions, kept in the collector's database.

An inspector signs in once with a token; the token is exchanged for a session and then
forgotten. The browser holds only a random session id (32 bytes, base64url) in an HttpOnly
cookie; the database holds the SHA-256 of that id (a copy of the table lets no one in) and the
SHA-256 of the token it was made from, never the token. Every request looks the token's hash up
again (`Storage.principal_by_token`), so revoking or rotating a token ends its sessions at once,
on every collector process: sessions live in the shared database, not in one process, so any
request can still go to any collector (docs/scaling.md).

A session ends when it expires (`SESSION_LIFETIME_S` after sign-in, a working day; no sliding
renewal, so a read costs no write), at sign-out, or when its token stops being valid. Expired
rows are deleted at the next sign-in.

The CSRF token of a session is derived from its id (an HMAC), so it needs no storage, differs
per session, and cannot be turned back into the id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from kiosk.collector.storage.base import Storage, StorageError
from kiosk.collector.storage.postgres import PostgresStorage
from kiosk.collector.storage.sqlite import SqliteStorage
from kiosk.collector.tokens import looks_like_token

SESSION_LIFETIME_S = 8 * 3600
_CSRF_LABEL = b"kiosk dashboard csrf v1"


@dataclass(frozen=True, slots=True)
class Session:
    key: str  # SHA-256 hex of the session id: the row's key
    token_hash: str
    principal: str
    created_at: float
    expires_at: float


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def csrf_token(session_id: str) -> str:
    """The token a session's forms carry (derived, so nothing more is stored)."""
    return hmac.new(session_id.encode("ascii"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_matches(session_id: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(session_id), presented)


def looks_like_session_id(text: str) -> bool:
    return looks_like_token(text)  # the same shape: 32 random bytes in base64url


class SessionStore:
    """The `dashboard_sessions` table (migration 0003_dashboard_sessions) on either database."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def create(
        self, token_hash: str, principal: str, *, now: float, lifetime: float = SESSION_LIFETIME_S
    ) -> tuple[str, Session]:
        """A new session for the token with SHA-256 `token_hash`; returns its id (for the
        cookie, never stored) and the stored row. Deletes the expired sessions on the way."""
        session_id = new_session_id()
        session = Session(session_key(session_id), token_hash, principal, now, now + lifetime)
        if self._storage.dialect == "sqlite":
            await _sqlite(self._storage).write(lambda conn: _sqlite_create(conn, session))
        else:
            await _postgres(self._storage).transaction(
                lambda conn: _postgres_create(conn, session)
            )
        return session_id, session

    async def find(self, session_id: str, *, now: float) -> Session | None:
        """The live session with this id, or None (unknown, malformed or expired)."""
        if not looks_like_session_id(session_id):
            return None
        key = session_key(session_id)
        if self._storage.dialect == "sqlite":
            row = await _sqlite(self._storage).read(
                lambda conn: conn.execute(
                    "SELECT session_key, token_hash, principal, created_at, expires_at "
                    "FROM dashboard_sessions WHERE session_key = ? AND expires_at > ?",
                    (key, now),
                ).fetchone()
            )
        else:
            rows = await _postgres(self._storage).fetch(
                "SELECT session_key, token_hash, principal, "
                "extract(epoch FROM created_at)::float8, extract(epoch FROM expires_at)::float8 "
                "FROM dashboard_sessions WHERE session_key = $1 AND expires_at > to_timestamp($2)",
                key,
                now,
            )
            row = rows[0] if rows else None
        if row is None:
            return None
        return Session(str(row[0]), str(row[1]), str(row[2]), float(row[3]), float(row[4]))

    async def end(self, session_id: str) -> None:
        """Delete the session (sign-out, or its token no longer valid); unknown ids are fine."""
        if not looks_like_session_id(session_id):
            return
        key = session_key(session_id)
        if self._storage.dialect == "sqlite":
            await _sqlite(self._storage).write(
                lambda conn: conn.execute(
                    "DELETE FROM dashboard_sessions WHERE session_key = ?", (key,)
                )
            )
        else:
            await _postgres(self._storage).fetch(
                "DELETE FROM dashboard_sessions WHERE session_key = $1", key
            )


def _sqlite_create(conn: sqlite3.Connection, session: Session) -> None:
    conn.execute("DELETE FROM dashboard_sessions WHERE expires_at <= ?", (session.created_at,))
    conn.execute(
        "INSERT INTO dashboard_sessions "
        "(session_key, token_hash, principal, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (
            session.key,
            session.token_hash,
            session.principal,
            session.created_at,
            session.expires_at,
        ),
    )


async def _postgres_create(conn: Any, session: Session) -> None:
    await conn.execute(
        "DELETE FROM dashboard_sessions WHERE expires_at <= to_timestamp($1)", session.created_at
    )
    await conn.execute(
        "INSERT INTO dashboard_sessions "
        "(session_key, token_hash, principal, created_at, expires_at) "
        "VALUES ($1, $2, $3, to_timestamp($4), to_timestamp($5))",
        session.key,
        session.token_hash,
        session.principal,
        session.created_at,
        session.expires_at,
    )


def _sqlite(storage: Storage) -> SqliteStorage:
    if not isinstance(storage, SqliteStorage):
        raise StorageError("dashboard sessions need the collector's SQLite storage")
    return storage


def _postgres(storage: Storage) -> PostgresStorage:
    if not isinstance(storage, PostgresStorage):
        raise StorageError("dashboard sessions need the collector's PostgreSQL storage")
    return storage
