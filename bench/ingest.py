"""Collector ingest: `POST /api/v1/entries` from 1, 4 and 16 kiosks with batches of 1, 100 and
1,000 entries, on SQLite and PostgreSQL, against the raw ceiling of the same schema.

    python bench/ingest.py            # SQLite, and PostgreSQL when KIOSK_TEST_PG_URL is set
    python bench/ingest.py --at-2m    # also the insert rate with 2 M entries held (minutes)
    python bench/ingest.py --quick    # tiny sizes: proves the benchmark still works

What runs is what runs in a city: `kiosk collector` as its own process on 127.0.0.1, provisioned
kiosks each with its own token, and one sender process per kiosk (multiprocessing, so no client
shares the server's event loop) posting valid chained entries (UUIDv7 ids, RFC 8785 chains)
on one keep-alive connection, each batch after the previous one was answered, as a kiosk's
sync does. Every batch is validated, authenticated, chain-checked and committed by the
collector before its 200.

In the same run, the raw ceiling: the same kind of entries written straight into the same
schema, in a fresh database, with no HTTP and no checks: `executemany` in one transaction per
batch on SQLite (WAL, synchronous=FULL, as the collector), COPY into a staging table and
INSERT ... SELECT on PostgreSQL (4 writers), the rows built from the entries inside the timed
part. Then where the rest of the time goes: each stage of the collector's own code, called in
this process over the same kind of batches (parse, validate, canonical JSON, chain, runs and
rollups, database), against the time per entry over HTTP.

`--at-2m`: the collector's storage ingesting batches of 1,000 into an empty table and again
with 2,000,000 entries held (filled by the raw path), with UUIDv7 ids (and `--contrast`: also
with random uuid4 ids).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    RESULTS,
    command_line,
    fmt_ms,
    machine_lines,
    markdown_table,
    percentile,
    progress,
    write_report,
)
from bench.ingest_kit import (
    DECODER_STAGES,
    STAGES,
    WRITER_STAGES,
    Collector,
    Database,
    KioskLog,
    SenderJob,
    SenderResult,
    StageTimes,
    fresh_database,
    pg_ceiling_writer,
    pid_cpu_seconds,
    postgres_backends,
    provision,
    sender,
    sqlite_ceiling,
    start_profiler,
    stop_profiler,
    time_stages,
)
from kiosk.collector.storage import open_storage

PACKAGES = ("aiohttp", "pydantic", "pydantic-core", "asyncpg", "rfc8785")
BATCHES = (1, 100, 1000)
GOALS = {  # (database, kiosks, batch) -> entries/s (issue 7)
    ("SQLite", 4, 100): 20_000,
    ("SQLite", 4, 1000): 40_000,
    ("PostgreSQL", 4, 1000): 75_000,
}
PG_CEILING_SHARE = 0.5
AT_2M_SHARE = 0.8


@dataclass(frozen=True)
class Sizes:
    kiosks: tuple[int, ...]
    entries: dict[int, int]  # batch size -> entries per cell (all kiosks together)
    stage_batches: int  # batches per size for the stage timing
    ceiling_writers: int = 4
    batches: tuple[int, ...] = BATCHES

    def batches_per_kiosk(self, batch: int, kiosks: int) -> int:
        return max(1, math.ceil(self.entries[batch] / kiosks / batch))


FULL = Sizes(kiosks=(1, 4, 16), entries={1: 1_500, 100: 40_000, 1000: 160_000}, stage_batches=20)
QUICK = Sizes(
    kiosks=(2,), entries={1: 20, 100: 400, 1000: 2_000}, stage_batches=1, ceiling_writers=2
)


@dataclass
class Cell:
    database: str
    kiosks: int
    batch: int
    entries: int = 0
    seconds: float = math.nan
    request_ms: list[float] = field(default_factory=list)
    collector_cpu_s: float = math.nan  # CPU time of the collector process in the cell
    database_cpu_s: float = 0.0  # of the PostgreSQL server processes of its database

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else math.nan

    @property
    def collector_cores(self) -> float:
        return self.collector_cpu_s / self.seconds

    def cpu_us(self, seconds: float) -> float:
        return seconds / self.entries * 1e6


@dataclass(frozen=True)
class Rate:
    per_s: float
    cpu_us: float  # CPU per entry: this process (SQLite works in it) and PostgreSQL's backends


@dataclass
class DatabaseRun:
    name: str
    cells: list[Cell] = field(default_factory=list)
    ceiling: dict[int, float] = field(default_factory=dict)  # batch -> rows/s
    stages: dict[int, StageTimes] = field(default_factory=dict)
    # ids -> (empty, at 2 M): entries/s, and CPU µs per entry (this process and PostgreSQL's)
    at_2m: dict[str, tuple[Rate, Rate]] = field(default_factory=dict)

    def cell(self, kiosks: int, batch: int) -> Cell | None:
        return next((c for c in self.cells if (c.kiosks, c.batch) == (kiosks, batch)), None)


# --- over HTTP ---------------------------------------------------------------------------------


def run_cell(
    context: Any,
    collector: Collector,
    logs: list[KioskLog],
    batch: int,
    sizes: Sizes,
    database: Database,
) -> tuple[Cell, list[KioskLog]]:
    """One sender process per kiosk; returns the cell and the logs as the senders left them."""
    per_kiosk = sizes.batches_per_kiosk(batch, len(logs))
    start = context.Barrier(len(logs))
    results = context.Queue()
    processes = [
        context.Process(
            target=sender, args=(SenderJob(log, collector.port, batch, per_kiosk), start, results)
        )
        for log in logs
    ]
    db = database.name
    cpu_before = collector.cpu_seconds()
    backends = postgres_backends(database)
    db_before = sum(pid_cpu_seconds(pid) for pid in backends)
    for process in processes:
        process.start()
    done: list[SenderResult] = []
    try:
        for _ in processes:
            done.append(results.get(timeout=900))
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    cpu_used = collector.cpu_seconds() - cpu_before
    db_used = sum(pid_cpu_seconds(pid) for pid in backends | postgres_backends(database))
    db_used -= db_before
    errors = [r.error for r in done if r.error]
    if errors:
        raise RuntimeError(f"{db}, {len(logs)} kiosks, batch {batch}: {errors[0]}")
    cell = Cell(db, len(logs), batch)
    cell.entries = sum(r.accepted for r in done)
    cell.seconds = max(r.ended for r in done) - min(r.started for r in done)
    cell.request_ms = [ms for r in done for ms in r.request_ms]
    # While the senders build their batches the collector idles: its CPU time falls within the
    # posting window.
    cell.collector_cpu_s, cell.database_cpu_s = cpu_used, db_used
    if cell.entries != len(logs) * per_kiosk * batch:
        raise RuntimeError(f"{db}: {cell.entries} entries accepted of {per_kiosk * batch} each")
    by_kiosk = {r.log.kiosk_id: r.log for r in done}
    return cell, [by_kiosk[log.kiosk_id] for log in logs]


async def over_http(
    kind: str, workdir: Path, sizes: Sizes, run: DatabaseRun, profile_dir: Path | None = None
) -> None:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bench.ingest_kit"])
    async with fresh_database(kind, workdir, "ingest") as database:
        now = time.time()
        storage = await open_storage(database.url, now=now)
        try:
            logs = await provision(storage, max(sizes.kiosks), now)
            stage_log = (await provision(storage, 1, now, prefix="stages"))[0]
            warm_log = (await provision(storage, 1, now, prefix="warm"))[0]
        finally:
            await storage.close()
        collector = Collector(database, workdir)
        try:
            collector.wait_listening()
            await asyncio.to_thread(collector.warm_decoders, warm_log, max(sizes.batches))
            for batch in sizes.batches:
                for kiosks in sizes.kiosks:
                    progress(f"[{run.name}] {kiosks} kiosk(s), batches of {batch} ...")
                    profiler = None
                    if profile_dir is not None:
                        name = f"{run.name.lower()}-{kiosks}k-batch{batch}.txt"
                        profiler = start_profiler(collector.process.pid, profile_dir / name)
                    try:
                        cell, logs[:kiosks] = await asyncio.to_thread(
                            run_cell, context, collector, logs[:kiosks], batch, sizes, database
                        )
                    finally:
                        if profiler is not None:
                            stop_profiler(profiler)
                    run.cells.append(cell)
                    progress(f"    {cell.rate:,.0f} entries/s")
        finally:
            collector.stop()
        progress(f"[{run.name}] timing each stage in this process ...")
        storage = await open_storage(database.url, now=time.time())
        try:
            for batch in (b for b in sizes.batches if b >= 100):
                run.stages[batch] = await time_stages(
                    storage, stage_log, batch, sizes.stage_batches, database
                )
        finally:
            await storage.close()


# --- the raw ceiling ---------------------------------------------------------------------------


async def ceiling(kind: str, workdir: Path, sizes: Sizes, run: DatabaseRun) -> None:
    async with fresh_database(kind, workdir, "ceiling") as database:
        now = time.time()
        storage = await open_storage(database.url, now=now)
        try:
            logs = await provision(storage, sizes.ceiling_writers, now, prefix="ceiling")
            for batch in sizes.batches:
                entries = sizes.entries[batch]
                per_writer = sizes.batches_per_kiosk(batch, len(logs))
                work = [[log.entries(batch) for _ in range(per_writer)] for log in logs]
                progress(f"[{run.name}] raw ceiling, batches of {batch} ...")
                if kind == "sqlite":
                    await storage.close()
                    flat = [b for writer in work for b in writer]
                    seconds = await asyncio.to_thread(sqlite_ceiling, database.sqlite_path, flat)
                    storage = await open_storage(database.url, now=now)
                else:
                    await ensure_partitions(storage, work)
                    started = time.perf_counter()
                    await asyncio.gather(*(pg_ceiling_writer(storage.pool, w) for w in work))
                    seconds = time.perf_counter() - started
                entries = sum(len(b) for writer in work for b in writer)
                run.ceiling[batch] = entries / seconds
                progress(f"    {run.ceiling[batch]:,.0f} rows/s")
        finally:
            await storage.close()


async def ensure_partitions(storage: Any, work: list[list[list[dict[str, Any]]]]) -> None:
    """The daily partitions the collector would have made for these entries (not timed)."""
    from kiosk.collector.storage.partitions import DailyPartitions, day_of
    from kiosk.wire import parse_rfc3339

    days = {day_of(parse_rfc3339(e["ts"])) for w in work for b in w for e in (b[0], b[-1])}
    async with storage.pool.acquire() as conn:
        await DailyPartitions().ensure(conn, days, time.time())


# --- 2 M entries -------------------------------------------------------------------------------


async def at_2m(kind: str, workdir: Path, run: DatabaseRun, held: int, random_ids: bool) -> None:
    """Ingest rate of the collector's storage into an empty table and with `held` entries."""
    from bench.ingest_kit import fill_entries

    label = "uuid4" if random_ids else "uuid7"
    held_label = f"{held / 1e6:g} M" if held >= 1e6 else f"{held:,}"
    label = f"{label}, {held_label} held" if held != 2_000_000 else label
    async with fresh_database(kind, workdir, f"fill_{label[:5]}") as database:
        now = time.time()
        storage = await open_storage(database.url, now=now)
        try:
            logs = await provision(storage, 8, now, prefix=f"fill-{label[:5]}")
            for log in logs:
                log.random_ids = random_ids
            progress(f"[{run.name}] {label}: ingest into the empty table ...")
            empty = await storage_rate(storage, logs[:4])
            progress(f"[{run.name}] {label}: filling to {held:,} entries ...")
            await fill_entries(storage, database, held, now, random_ids)
            progress(f"[{run.name}] {label}: ingest with {held:,} held ...")
            full = await storage_rate(storage, logs[4:])
            run.at_2m[label] = (empty, full)
            progress(f"    {empty.per_s:,.0f} → {full.per_s:,.0f} entries/s")
        finally:
            await storage.close()


async def storage_rate(storage: Any, logs: list[KioskLog], batches: int = 10) -> Rate:
    """Entries/s of storage.ingest_entries, batches of 1,000 from each of `logs` in turn
    (validated and prepared beforehand: this is the database's part only), and the CPU time it
    took per entry, which other work on the machine does not change."""
    from bench.ingest_kit import backend_pids, batch_body, pid_cpu_seconds
    from kiosk.collector.batch import prepare_batch
    from kiosk.collector.bodies import parse_json

    prepared = [
        prepare_batch(
            parse_json(batch_body(log.entries(1000))),
            kiosk_id=log.kiosk_id,
            venue_id=log.venue_id,
            received_at=time.time(),
        )
        for _ in range(batches)
        for log in logs
    ]
    await storage.ingest_entries(prepared[0])  # partitions, caches
    backends = await backend_pids(storage) if storage.dialect == "postgresql" else []
    cpu_before = time.process_time() + sum(pid_cpu_seconds(pid) for pid in backends)
    started = time.perf_counter()
    for batch in prepared[1:]:
        await storage.ingest_entries(batch)
    seconds = time.perf_counter() - started
    cpu = time.process_time() + sum(pid_cpu_seconds(pid) for pid in backends) - cpu_before
    entries = sum(len(b.rows) for b in prepared[1:])
    return Rate(entries / seconds, cpu / entries * 1e6)


# --- report ------------------------------------------------------------------------------------


def cpu_text(run: DatabaseRun, cell: Cell) -> str:
    collector = f"{cell.cpu_us(cell.collector_cpu_s):.0f}"
    if run.name == "SQLite":  # SQLite works inside the collector process
        return collector
    return f"{collector} + {cell.cpu_us(cell.database_cpu_s):.0f}"


def rate_text(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:,.0f}"


def report(runs: list[DatabaseRun], sizes: Sizes, quick: bool, notes: list[str]) -> str:
    rows = []
    for run in runs:
        for cell in run.cells:
            top = run.ceiling.get(cell.batch, math.nan)
            goal = GOALS.get((run.name, cell.kiosks, cell.batch))
            verdict = "" if goal is None else "met" if cell.rate >= goal else "missed"
            if goal is not None and run.name == "PostgreSQL" and top == top:
                share_met = "met" if cell.rate >= PG_CEILING_SHARE * top else "missed"
                verdict += f"; ≥ {PG_CEILING_SHARE:.0%} of ceiling: {share_met}"
            rows.append(
                [
                    run.name,
                    cell.kiosks,
                    cell.batch,
                    f"{cell.entries:,}",
                    rate_text(cell.rate),
                    f"{cell.rate / top:.0%}" if top == top else "–",
                    fmt_ms(percentile(cell.request_ms, 0.5)),
                    fmt_ms(percentile(cell.request_ms, 0.95)),
                    f"{cell.collector_cores:.2f}",
                    cpu_text(run, cell),
                    "" if goal is None else f"≥ {goal:,}: {verdict}",
                ]
            )
    http_table = markdown_table(
        [
            "database",
            "kiosks",
            "batch",
            "entries",
            "entries/s",
            "of ceiling",
            "request p50 ms",
            "p95 ms",
            "collector cores",
            "CPU µs/entry",
            "goal",
        ],
        rows,
    )
    ceiling_table = markdown_table(
        ["database", *(f"batch {b}" for b in sizes.batches), "how"],
        [
            [
                run.name,
                *(rate_text(run.ceiling.get(b, math.nan)) for b in sizes.batches),
                "executemany, 1 writer (SQLite allows one)"
                if run.name == "SQLite"
                else f"COPY to staging + INSERT SELECT, {sizes.ceiling_writers} writers",
            ]
            for run in runs
        ],
    )
    stage_rows = []
    for run in runs:
        for batch, times in sorted(run.stages.items()):
            cells = [c for c in run.cells if c.batch == batch]
            fewest = min(cells, key=lambda c: c.kiosks) if cells else None
            http_us = (
                fewest.cpu_us(fewest.collector_cpu_s + fewest.database_cpu_s)
                if fewest is not None
                else math.nan
            )
            stage_rows.append(
                [
                    run.name,
                    batch,
                    *(f"{times.us_per_entry(stage):.1f}" for stage in STAGES),
                    f"{sum(times.us_per_entry(stage) for stage in DECODER_STAGES):.1f}",
                    f"{sum(times.us_per_entry(stage) for stage in WRITER_STAGES):.1f}",
                    f"{times.total_us:.1f}",
                    f"{http_us:.1f}",
                    f"{http_us - times.total_us:.1f}",
                ]
            )
    stage_table = markdown_table(
        [
            "database",
            "batch",
            *STAGES,
            "in decoders",
            "on the writer",
            "sum",
            "over HTTP",
            "HTTP, auth, hand-offs",
        ],
        stage_rows,
    )
    parts = [
        "# Collector ingest benchmark" + (" (quick)" if quick else ""),
        "\n".join(
            [
                f"- Command: `{command_line()}`",
                *machine_lines(PACKAGES),
                *(f"- {note}" for note in notes),
            ]
        ),
    ]
    parts += (
        []
        if not any(run.cells for run in runs)
        else [
            "## Over HTTP (one sender process per kiosk, keep-alive, one batch in flight each)",
            http_table,
            "## Raw ceiling: the same rows into the same schema, no HTTP, no checks (rows/s)",
            ceiling_table,
            "## Where the time goes: CPU µs per entry, each stage alone in one thread",
            "In the collector's batch-decoding worker processes (bodies of 32 KiB and more): "
            "parse, `bodies.parse_json`; validate, `batch.prepare_batch` (pydantic over the "
            "whole batch, scope, the rows) less the next three; canonical JSON, the RFC 8785 "
            "bytes the chain covers (`canonical.entry_bytes`); chain, SHA-256 of each link "
            "against its predecessor in the batch; rollups, the hourly counts "
            "(`plan.rollups`). On the database writer, in the collector's main process: runs, "
            "`plan_ingest` with links and rollups known; database, the rest of "
            "`ingest_entries` (reads, writes, commit). All CPU time: this thread's, and for the "
            "database part this process's (SQLite's writer thread) and the PostgreSQL server "
            "processes'. Over HTTP: the CPU time per entry of the collector process with its "
            "batch-decoding worker processes (and PostgreSQL's) with the fewest kiosks; the "
            "last column is what the HTTP path adds: aiohttp, the token check, handing bodies "
            "to the workers and rows back (pickling), the hand-offs between threads.",
            stage_table,
        ]
    )
    if any(run.at_2m for run in runs):
        rows_2m = []
        for run in runs:
            for label, (empty, full) in sorted(run.at_2m.items(), reverse=True):
                share = full.per_s / empty.per_s
                verdict = f"≥ {AT_2M_SHARE:.0%}: {'met' if share >= AT_2M_SHARE else 'missed'}"
                rows_2m.append(
                    [
                        run.name,
                        label,
                        rate_text(empty.per_s),
                        rate_text(full.per_s),
                        f"{share:.0%}",
                        f"{empty.cpu_us:.0f} → {full.cpu_us:.0f}",
                        f"{empty.cpu_us / full.cpu_us:.0%}",
                        verdict if label.startswith("uuid7") else "(contrast)",
                    ]
                )
        parts += [
            "## Insert rate with 2,000,000 entries held vs an empty table "
            "(storage.ingest_entries, batches of 1,000)",
            markdown_table(
                [
                    "database",
                    "ids",
                    "empty: entries/s",
                    "at 2 M: entries/s",
                    "ratio",
                    "CPU µs/entry",
                    "ratio by CPU",
                    "goal",
                ],
                rows_2m,
            ),
        ]
    return "\n\n".join(parts)


def chart(runs: list[DatabaseRun], sizes: Sizes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=[3, 2])
    groups = [(run, batch) for run in runs for batch in sizes.batches]
    series = [*(f"{k} kiosk{'s' if k > 1 else ''}" for k in sizes.kiosks), "raw ceiling"]
    width = 0.8 / len(series)
    for index, name in enumerate(series):
        values = []
        for run, batch in groups:
            if index < len(sizes.kiosks):
                cell = run.cell(sizes.kiosks[index], batch)
                values.append(cell.rate if cell is not None else 0.0)
            else:
                values.append(run.ceiling.get(batch, 0.0))
        offsets = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        left.bar(offsets, values, width=width, label=name)
    for position, (run, batch) in enumerate(groups):
        goal = GOALS.get((run.name, 4, batch))
        if goal:
            left.hlines(goal, position - 0.45, position + 0.45, colors="red", linestyles="--")
    left.set_xticks(range(len(groups)))
    left.set_xticklabels([f"{run.name}\nbatch {batch}" for run, batch in groups], fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("entries/s (log scale; red: goal at 4 kiosks)")
    left.set_title("Collector ingest over HTTP vs the raw ceiling")
    left.grid(axis="y", alpha=0.3)
    left.legend(fontsize=8)
    bottoms: list[float] = []
    stacks = [(run.name, b, times) for run in runs for b, times in sorted(run.stages.items())]
    for stage in STAGES:
        values = [times.us_per_entry(stage) for _, _, times in stacks]
        if not bottoms:
            bottoms = [0.0] * len(values)
        right.bar(range(len(stacks)), values, bottom=bottoms, label=stage)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    labels = [f"{name}\nbatch {batch}" for name, batch, _ in stacks]
    right.set_xticks(range(len(stacks)))
    right.set_xticklabels(labels, fontsize=8)
    right.set_ylabel("µs per entry, one thread")
    right.set_title("Where the time goes")
    right.grid(axis="y", alpha=0.3)
    right.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


async def main_async(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    if args.kiosks:
        sizes = replace(sizes, kiosks=tuple(int(k) for k in args.kiosks.split(",")))
    if args.batches:
        sizes = replace(sizes, batches=tuple(int(b) for b in args.batches.split(",")))
    kinds = ["sqlite"]
    notes = []
    if os.environ.get("KIOSK_TEST_PG_URL") and args.database in ("both", "postgresql"):
        kinds.append("postgresql")
    elif args.database != "sqlite":
        notes.append("PostgreSQL skipped: set KIOSK_TEST_PG_URL to include it.")
    if args.database == "postgresql":
        kinds.remove("sqlite")
    runs = []
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-ingest-", dir=args.workdir) as folder:
        workdir = Path(folder)
        notes.append(
            f"Databases: SQLite files under {workdir.parent}; "
            "PostgreSQL at KIOSK_TEST_PG_URL, a fresh database per part, dropped after."
        )
        for kind in kinds:
            run = DatabaseRun("SQLite" if kind == "sqlite" else "PostgreSQL")
            runs.append(run)
            if not args.only_2m:
                await over_http(kind, workdir, sizes, run, args.py_spy)
                await ceiling(kind, workdir, sizes, run)
            if args.at_2m or args.only_2m:
                for random_ids in (False, True) if args.contrast else (False,):
                    await at_2m(kind, workdir, run, args.held, random_ids)
    text = report(runs, sizes, args.quick, notes)
    print(text)
    if not args.quick or args.results != RESULTS:  # a quick run never replaces the figures
        if args.only_2m:
            path = write_report("ingest-2m", text, args.results)
        else:
            path = write_report("ingest", text, args.results)
            chart(runs, sizes, args.results / "ingest.png")
        progress(f"wrote {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (make test)")
    parser.add_argument(
        "--database", choices=("both", "sqlite", "postgresql"), default="both", help="which"
    )
    parser.add_argument("--kiosks", help="kiosk counts, e.g. 4 (default 1,4,16; quick 2)")
    parser.add_argument("--batches", help="batch sizes, e.g. 1000 (default 1,100,1000)")
    parser.add_argument("--at-2m", action="store_true", help="also the 2 M entries test")
    parser.add_argument("--held", type=int, default=2_000_000, help="entries held for --at-2m")
    parser.add_argument(
        "--only-2m",
        action="store_true",
        help="the 2 M entries test alone, written to ingest-2m.md (it takes a while)",
    )
    parser.add_argument(
        "--contrast", action="store_true", help="--at-2m also with random (uuid4) ids"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where .md and .png go")
    parser.add_argument("--workdir", type=Path, default=None, help="where the SQLite files go")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="sample the collector with py-spy during each HTTP cell; collapsed stacks go to DIR",
    )
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
