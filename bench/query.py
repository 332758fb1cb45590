"""The inspectors' queries: the non-compliant list of a whole city and of one district, and a
unit page, at 1,000 and 10,000 venues with 1 M entries, and how the time grows at 10 M.

    python bench/query.py                 # 1 M entries, 1,000 and 10,000 venues, both databases
    python bench/query.py --ten-million   # then 9 M older entries more, and again (a long run)
    python bench/query.py --ten-million --grow-venues 1000   # only the 1,000-venue city grows
    python bench/query.py --quick         # 10k entries, 100 venues: proves the benchmark works
    python bench/query.py --db sqlite --venues 1000 --entries 200000

A fresh collector database per city (SQLite in a temporary folder; PostgreSQL in a new
database on KIOSK_TEST_PG_URL), migrated by the collector's own storage, then filled by
bench/query_data.py with the rows its ingest would write. Each venue sees 100 entries a day,
so 1 M entries are one day of 10,000 venues or ten days of 1,000; `--ten-million` adds older
history (another log per kiosk) so the window's content stays and only the stored total grows.
Queries run through kiosk.collector.findings, the code the API and the dashboard use, at the
collector clock `NOW` (a half hour, so the 24-hour window cuts hours at both ends): after one
warm-up, `--repeats` runs each, median and p95. The goal (issue 7): the city-wide query under
200 ms, and at 10 M entries no more than 1.5 times its time at 1 M.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import query_data as data
from bench.common import (
    REPO,
    RESULTS,
    BarGroup,
    command_line,
    fmt_ms,
    grouped_bar_chart,
    machine_lines,
    markdown_table,
    median,
    percentile,
    progress,
    write_report,
)
from kiosk.collector.findings import FindingsQuery, findings_by_venue
from kiosk.collector.findings.units import unit_detail
from kiosk.collector.storage import open_storage
from kiosk.collector.storage.base import Storage
from kiosk.collector.storage.migrations import sqlite_statements

GOAL_MS = 200.0
GROWTH_GOAL = 1.5
CHUNK = 20_000
PACKAGES = ("aiosqlite", "asyncpg")


@dataclass
class Timing:
    runs_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # this process: SQLite's work, not PG's

    @property
    def median(self) -> float:
        return median(self.runs_ms)

    @property
    def p95(self) -> float:
        return percentile(self.runs_ms, 0.95)


@dataclass
class Measured:
    database: str
    venues: int
    entries: int
    days: float
    build_s: float
    city: Timing
    district: Timing
    unit: Timing
    units_found: int
    misbehaving: int
    rules: Counter[str]


# -- building a city ------------------------------------------------------------------------


class Loader:
    """Bulk inserts into one storage, the dialect's fast path."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.dialect = storage.dialect

    async def rows(
        self,
        table: str,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        *,
        upsert_on: tuple[str, ...] = (),
    ) -> None:
        if not rows:
            return
        if self.dialect == "sqlite":
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            if upsert_on:
                added = [c for c in columns if c not in upsert_on and c != "venue_id"]
                sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in added)
                sql += f" ON CONFLICT ({', '.join(upsert_on)}) DO UPDATE SET {sets}"
            await self.storage.write(lambda conn: conn.executemany(sql, rows))  # type: ignore[attr-defined]
            return
        async with self.storage.pool.acquire() as conn:  # type: ignore[attr-defined]
            if not upsert_on:
                await conn.copy_records_to_table(table, records=rows, columns=list(columns))
                return
            async with conn.transaction():
                await conn.execute(f"CREATE TEMP TABLE staging (LIKE {table}) ON COMMIT DROP")
                await conn.copy_records_to_table("staging", records=rows, columns=list(columns))
                added = [c for c in columns if c not in upsert_on and c != "venue_id"]
                sets = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in added)
                await conn.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} "
                    f"FROM staging ON CONFLICT ({', '.join(upsert_on)}) DO UPDATE SET {sets}"
                )

    async def execute(self, sql: str) -> None:
        if self.dialect == "sqlite":
            for statement in sqlite_statements(sql):
                await self.storage.write(lambda conn, s=statement: conn.execute(s))  # type: ignore[attr-defined,misc]
            return
        async with self.storage.pool.acquire() as conn:  # type: ignore[attr-defined]
            await conn.execute(sql)


async def provision(loader: Loader, venues: int) -> None:
    created = data.NOW - 400 * data.DAY_S
    await loader.rows(
        "venues",
        ("venue_id", "name", "region", "venue_type", "created_at"),
        [
            (data.venue_id(v), f"Venue {v}", data.region_of(v), "general", created)
            for v in range(venues)
        ],
    )
    await loader.rows(
        "kiosks",
        ("kiosk_id", "venue_id", "provisioned_at"),
        [(k, data.venue_id(v), created) for v in range(venues) for k in data.kiosks_of(v)],
    )


def _kiosks(venues: int) -> Iterator[tuple[str, int, int, int]]:
    """(kiosk id, kiosk number, venue, kiosks at the venue)."""
    number = 0
    for v in range(venues):
        kiosks = data.kiosks_of(v)
        for kiosk in kiosks:
            number += 1
            yield kiosk, number, v, len(kiosks)


async def load_phase(
    loader: Loader, venues: int, phase: data.Phase, *, heartbeat_every: float | None
) -> int:
    """Entries of every kiosk in the phase (and, for the latest phase, heartbeats)."""
    tables = data.Tables()
    days = (phase.end - phase.start) / data.DAY_S
    if loader.dialect == "postgresql":
        from kiosk.collector.storage.partitions import DailyPartitions, day_of

        async with loader.storage.pool.acquire() as conn:  # type: ignore[attr-defined]
            wanted = set(range(day_of(phase.start), day_of(phase.end) + 1))
            await DailyPartitions().ensure(conn, wanted, data.NOW)
    chunk: list[tuple[Any, ...]] = []
    written = 0

    async def flush(rows: list[tuple[Any, ...]]) -> None:
        await loader.rows("entries", data.ENTRY_COLUMNS, rows)
        if loader.dialect == "postgresql":
            await loader.rows(
                "entry_ids", ("id", "kiosk_id", "ts"), [(r[0], r[2], r[1]) for r in rows]
            )

    for kiosk, number, venue, at_venue in _kiosks(venues):
        n = round(data.PER_VENUE_DAY * days / at_venue)
        rows, log = data.kiosk_entries(kiosk, number, venue, phase, n, tables)
        for row in rows:
            chunk.append(row)
            if len(chunk) >= CHUNK:
                await flush(chunk)
                written += len(chunk)
                chunk = []
        if heartbeat_every is not None:
            data.heartbeats(log, heartbeat_every, tables)
        if len(tables.heartbeats) >= CHUNK:
            await loader.rows("heartbeats", data.HEARTBEAT_COLUMNS, tables.heartbeats)
            tables.heartbeats = []
    await flush(chunk)
    written += len(chunk)
    await loader.rows("heartbeats", data.HEARTBEAT_COLUMNS, tables.heartbeats)
    await loader.rows(
        "kiosk_hours", data.HOUR_COLUMNS, tables.hours, upsert_on=("kiosk_id", "hour")
    )
    await loader.rows(
        "kiosk_hour_reasons",
        data.REASON_COLUMNS,
        tables.reasons,
        upsert_on=("kiosk_id", "hour", "decision", "reason"),
    )
    await loader.rows("logs", data.LOG_COLUMNS, tables.logs)
    await loader.rows("log_runs", data.RUN_COLUMNS, tables.runs)
    await loader.rows("code_reuse", data.REUSE_COLUMNS, tables.reuse)
    await loader.rows("kiosk_state", data.STATE_COLUMNS, tables.states)
    return written


RUNNING_REBUILD = """
DELETE FROM readings_running;
INSERT INTO readings_running (kiosk_id, hour, venue_id, readings, sum_dc, sumsq_dc, implausible)
SELECT kiosk_id, hour, venue_id, sum(readings) OVER running, sum(readings_sum_dc) OVER running,
       sum(readings_sumsq_dc) OVER running, sum(implausible) OVER running
FROM kiosk_hours WHERE readings > 0
WINDOW running AS (PARTITION BY kiosk_id ORDER BY hour);
"""


def _running_triggers_sql() -> str:
    path = REPO / "kiosk" / "collector" / "migrations" / "sqlite"
    text = next(path.glob("*_findings_running_readings.sql")).read_text(encoding="utf-8")
    return "\n".join(s for s in sqlite_statements(text) if s.startswith("CREATE TRIGGER"))


async def build(
    loader: Loader, venues: int, phase: data.Phase, heartbeat_every: float | None
) -> int:
    """Load one phase as the ingest would leave it, with the triggers that keep derived tables
    off meanwhile: excess code uses come from the generator, and the running reading totals
    are rebuilt from the rollups at the end (a trigger adds an hour's change to every later
    hour of its kiosk: right for a batch, quadratic for 90 days of history loaded behind ten).
    Then the planner's statistics (and PostgreSQL's visibility map) are refreshed, as
    autovacuum and `PRAGMA optimize` would."""
    if loader.dialect == "postgresql":
        await loader.execute("ALTER TABLE entries DISABLE TRIGGER entries_code_reuse")
        await loader.execute("ALTER TABLE kiosk_hours DISABLE TRIGGER kiosk_hours_running")
    else:
        await loader.execute("DROP TRIGGER kiosk_hours_running_insert;")
        await loader.execute("DROP TRIGGER kiosk_hours_running_update;")
    written = await load_phase(loader, venues, phase, heartbeat_every=heartbeat_every)
    await loader.execute(RUNNING_REBUILD)
    if loader.dialect == "sqlite":
        await loader.execute(_running_triggers_sql())
        await loader.execute("ANALYZE;")
    else:
        await loader.execute("ALTER TABLE entries ENABLE TRIGGER entries_code_reuse")
        await loader.execute("ALTER TABLE kiosk_hours ENABLE TRIGGER kiosk_hours_running")
        await loader.execute("VACUUM ANALYZE")
    return written


# -- measuring -------------------------------------------------------------------------------


async def timed(fn: Callable[[], Awaitable[Any]], repeats: int) -> Timing:
    await fn()  # warm-up
    timing = Timing()
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        await fn()
        timing.runs_ms.append((time.perf_counter() - started) * 1000.0)
        timing.cpu_ms.append((time.process_time() - cpu) * 1000.0)
    return timing


def query(region: str = "harbin", venue: str | None = None) -> FindingsQuery:
    return FindingsQuery(
        since=data.NOW - data.DAY_S, until=data.NOW, now=data.NOW, region=region, venue_id=venue
    )


async def measure(
    storage: Storage,
    database: str,
    venues: int,
    entries: int,
    days: float,
    build_s: float,
    repeats: int,
) -> Measured:
    async def city() -> Any:
        return await findings_by_venue(storage, query())

    async def district() -> Any:
        return await findings_by_venue(storage, query("harbin/d03"))

    venue = data.venue_id(1)  # the first misbehaving venue

    async def unit() -> Any:
        await unit_detail(storage, query(venue=venue))
        await findings_by_venue(storage, query(venue=venue))

    units = await city()
    rules = Counter(f.rule.value for u in units for f in u.findings)
    misbehaving = sum(1 for v in range(venues) if data.profile(v) != "clean")
    return Measured(
        database,
        venues,
        entries,
        days,
        build_s,
        await timed(city, repeats),
        await timed(district, repeats),
        await timed(unit, repeats),
        len(units),
        misbehaving,
        rules,
    )


async def run_city(
    database: str,
    url: str,
    venues: int,
    entries: int,
    grow_to: int | None,
    repeats: int,
    heartbeat_every: float,
) -> list[Measured]:
    storage = await open_storage(url, now=data.NOW)
    results = []
    try:
        loader = Loader(storage)
        await provision(loader, venues)
        days = entries / (venues * data.PER_VENUE_DAY)
        recent = data.Phase(data.NOW - days * data.DAY_S, data.NOW, 2)
        progress(f"{database}: {venues:,} venues, {entries:,} entries ({days:g} days) ...")
        started = time.perf_counter()
        held = await build(loader, venues, recent, heartbeat_every)
        build_s = time.perf_counter() - started
        results.append(await measure(storage, database, venues, held, days, build_s, repeats))
        progress(f"  city {fmt_ms(results[-1].city.median)} ms")
        if grow_to:
            more = grow_to - held
            older_days = more / (venues * data.PER_VENUE_DAY)
            older = data.Phase(recent.start - older_days * data.DAY_S, recent.start, 1)
            progress(
                f"{database}: {venues:,} venues, {more:,} older entries ({older_days:g} days) ..."
            )
            started = time.perf_counter()
            held += await build(loader, venues, older, None)
            build_s = time.perf_counter() - started
            results.append(
                await measure(storage, database, venues, held, days + older_days, build_s, repeats)
            )
            progress(f"  city {fmt_ms(results[-1].city.median)} ms")
    finally:
        await storage.close()
    return results


async def with_database(
    kind: str, job: Callable[[str], Awaitable[list[Measured]]]
) -> list[Measured]:
    """A fresh database for `job`, removed afterwards unless KIOSK_BENCH_KEEP is set (to look
    at query plans later)."""
    keep = bool(os.environ.get("KIOSK_BENCH_KEEP"))
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="kiosk-bench-query-"))
        try:
            return await job(f"sqlite:///{folder}/collector.db")
        finally:
            if keep:
                progress(f"kept sqlite:///{folder}/collector.db")
            else:
                shutil.rmtree(folder, ignore_errors=True)
    import asyncpg

    admin = os.environ["KIOSK_TEST_PG_URL"]
    name = f"kiosk_bench_query_{secrets.token_hex(4)}"
    base_url = admin.rsplit("/", 1)[0]
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        try:
            return await job(f"{base_url}/{name}")
        finally:
            if keep:
                progress(f"kept {base_url}/{name}")
            else:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# -- the report ------------------------------------------------------------------------------


NOTES = """\
Each venue sees {per_day} entries a day; about 6% of venues misbehave in one way each \
(overrides, one code reused, allows without a temperature, stuck or implausible thermometers, \
a thermometer reported faulty, two silent hours, stale trust lists, an old policy, a skewed \
clock, entries never sent, an altered entry). Heartbeats every {every:g} s for the last 25 \
hours. The window is the 24 hours before the collector's clock, which stands at half past an \
hour. *city-wide*: an inspector of the whole city (`harbin`), every finding of every venue; \
*one district*: `harbin/d03`; *unit page*: counts by decision and reason, kiosks, status and \
findings of one venue. Times after one warm-up run, {repeats} runs each, measured while other \
work shared the machine (load average above). *units found* should equal the misbehaving \
venues; *vs base*: the city-wide median against the same city before the older history was \
added. *CPU ms*: the query's own CPU time (SQLite runs in this process), which other work on \
the machine does not inflate as it does wall time.

Where the time goes: per kiosk, two lookups of running reading totals (the window's whole \
hours) and one row of its latest heartbeat; the entries of the window's two partial hours \
(readings, by time); flagged rows only (overrides, unchecked allows, broken links, excess code \
uses, flagged heartbeats by hour); the runs and heartbeats of the few logs with holes. Never \
the entries of the whole window, and nothing that grows with the entries stored."""


def _row(r: Measured, first: Measured) -> tuple[str, ...]:
    growth = None if r is first else r.city.median / first.city.median
    met = r.city.p95 < GOAL_MS and (growth is None or growth <= GROWTH_GOAL)
    return (
        r.database,
        f"{r.venues:,}",
        f"{r.entries:,}",
        f"{r.days:g}",
        f"{r.build_s:.0f}",
        f"{fmt_ms(r.city.median)} / {fmt_ms(r.city.p95)}",
        fmt_ms(median(r.city.cpu_ms)) if r.database == "sqlite" else "–",
        f"{fmt_ms(r.district.median)} / {fmt_ms(r.district.p95)}",
        f"{fmt_ms(r.unit.median)} / {fmt_ms(r.unit.p95)}",
        f"{r.units_found} of {r.misbehaving}",
        "–" if growth is None else f"{growth:.2f}×",
        "yes" if met else "**no**",
    )


def report(results: list[Measured], args: argparse.Namespace) -> str:
    first_of: dict[tuple[str, int], Measured] = {}
    for r in results:
        first_of.setdefault((r.database, r.venues), r)
    headers = (
        "database",
        "venues",
        "entries stored",
        "days",
        "built (s)",
        "city-wide ms (median / p95)",
        "city-wide CPU ms",
        "one district ms",
        "unit page ms",
        "units found / misbehaving",
        "vs base",
        f"p95 < {GOAL_MS:.0f} ms, ≤ {GROWTH_GOAL}×",
    )
    rows = [_row(r, first_of[(r.database, r.venues)]) for r in results]
    quick = " (quick: not the reference size)" if args.quick else ""
    rules = ", ".join(f"{rule} {n}" for rule, n in sorted(results[0].rules.items()))
    notes = NOTES.format(
        per_day=data.PER_VENUE_DAY, every=args.heartbeat_every, repeats=args.repeats
    )
    return "\n".join(
        [
            "# Inspectors' queries: the non-compliant list and a unit page",
            "",
            f"Command: `{command_line()}`{quick}",
            "",
            *machine_lines(PACKAGES),
            "",
            markdown_table(headers, rows),
            "",
            notes,
            "",
            f"Findings by rule in the first row's city-wide answer: {rules}.",
        ]
    )


def chart(results: list[Measured], path: Path) -> None:
    sizes = sorted({r.entries for r in results})
    groups = []
    for database, venues in sorted({(r.database, r.venues) for r in results}):
        by_size = {r.entries: r for r in results if (r.database, r.venues) == (database, venues)}
        groups.append(
            BarGroup(
                f"{database}, {venues:,} venues",
                [by_size[s].city.median if s in by_size else float("nan") for s in sizes],
            )
        )
    grouped_bar_chart(
        path,
        title="Non-compliant query, whole city (median ms)",
        series=[f"{s:,} entries" for s in sizes],
        groups=groups,
        ylabel="ms",
    )


async def main_async(args: argparse.Namespace) -> int:
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in databases and not os.environ.get("KIOSK_TEST_PG_URL"):
        if args.db == "postgres":
            progress("bench/query.py: set KIOSK_TEST_PG_URL for PostgreSQL")
            return 2
        progress("no KIOSK_TEST_PG_URL: SQLite only")
        databases = ["sqlite"]
    results: list[Measured] = []
    # City by city, each on every database, so a long run stopped early compares both.
    for venues in args.venues:
        for database in databases:

            async def job(
                url: str, venues: int = venues, database: str = database
            ) -> list[Measured]:
                return await run_city(
                    database,
                    url,
                    venues,
                    args.entries,
                    args.grow_to if args.grow_venues in (None, venues) else None,
                    args.repeats,
                    args.heartbeat_every,
                )

            results += await with_database(database, job)
            # Written after each city, so a long run that is stopped keeps what it measured.
            write_report(args.report, report(results, args), Path(args.results))
    text = report(results, args)
    results_dir = Path(args.results)
    write_report(args.report, text, results_dir)
    chart(results, results_dir / f"{args.report}.png")
    print(text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k entries, 100 venues, 3 runs")
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries stored (1 M)")
    parser.add_argument("--venues", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--ten-million",
        action="store_true",
        help="then add older history up to 10 M entries and measure again",
    )
    parser.add_argument(
        "--grow-venues",
        type=int,
        default=None,
        help="with --ten-million, grow only the city of this many venues (default: every city)",
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--heartbeat-every", type=float, default=60.0, help="seconds (60)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the report and chart")
    parser.add_argument(
        "--report", default="query", help="name of the report and chart (query: query.md, .png)"
    )
    args = parser.parse_args()
    args.grow_to = 10_000_000 if args.ten_million else None
    if args.quick:
        args.entries, args.venues, args.repeats, args.heartbeat_every = 10_000, [100], 3, 300.0
        args.grow_to = 30_000 if args.ten_million else None
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
