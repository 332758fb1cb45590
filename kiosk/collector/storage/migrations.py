"""Versioned schema migrations: `kiosk/collector/migrations/<dialect>/NNNN_name.sql`, applied in
order at start (by the server and by `kiosk admin`), each in its own transaction together with
its row in `schema_version`. A migration is never edited once released: add the next number."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from kiosk.collector.storage.base import StorageError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: Literal["sqlite", "postgres"]) -> list[Migration]:
    folder = resources.files("kiosk.collector").joinpath("migrations", dialect)
    found: list[Migration] = []
    for item in folder.iterdir():
        match = _NAME.match(item.name)
        if match is None:
            continue
        found.append(
            Migration(int(match.group(1)), match.group(2), item.read_text(encoding="utf-8"))
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StorageError(f"{dialect} migrations are not numbered 1, 2, 3...: {versions}")
    return found


def check_not_newer(current: int, known: list[Migration], where: str) -> None:
    latest = known[-1].version if known else 0
    if current > latest:
        raise StorageError(
            f"{where}: the database schema is version {current}, newer than this kiosk "
            f"release knows ({latest}); upgrade kiosk on this host"
        )


def sqlite_statements(script: str) -> list[str]:
    """The statements of an SQL script, split where SQLite says a statement is complete."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise StorageError(f"unterminated SQL statement in a migration: {pending[:60]!r}")
    return statements


def apply_sqlite(conn: sqlite3.Connection, where: str, applied_at: str) -> int:
    """Apply every pending migration on a connection in autocommit mode; the new version."""
    migrations = load_migrations("sqlite")
    conn.execute(SCHEMA_VERSION_TABLE)
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            current = int(row[0])
            check_not_newer(current, migrations, where)
            if current < migration.version:
                for statement in sqlite_statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, applied_at),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0])
