"""Kiosk catch-up: a kiosk log with a 100,000-entry backlog and a collector that comes up.

    python bench/sync.py            # 100,000 entries, SQLite (and PostgreSQL when
                                    # KIOSK_TEST_PG_URL is set)
    python bench/sync.py --quick    # 5,000 entries: proves the benchmark still works

What runs is what runs at a door: the real `SyncService` (kiosk/door/sync.py) over the real
entry log file, in this process, and the real collector (`kiosk collector`) in another,
provisioned with `kiosk admin`. The backlog is written straight into the entry log's SQLite
format (appending 100,000 entries one committed transaction at a time would take minutes); the
first entries are checked against `kiosk.wire`'s canonical JSON and chain, and the log is then
opened by `EntryLog` like any other.

The sync service starts while the collector is still down (it backs off, as after a network
loss), then the collector comes up. Reported: the time from the collector listening to the
backlog drained (the goal: < 10 s), the reconnect delay inside it, entries/s over time, and a
check that the collector holds every entry once with every chain link verified.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    RESULTS,
    command_line,
    machine_lines,
    markdown_table,
    progress,
    tree_cpu_seconds,
    write_report,
)
from kiosk.door.app import ClockOffset, DoorRuntime
from kiosk.door.config import KioskConfig
from kiosk.door.knowledge import KnowledgeHolder, stale_knowledge
from kiosk.door.store import EntryLog
from kiosk.door.sync import SyncService
from kiosk.wire import (
    GENESIS_CHAIN,
    Entry,
    canonical_json,
    chain_link,
    format_rfc3339,
    new_uuid7,
)

KIOSK_ID = "k-bench-1"
VENUE_ID = "v-bench-1"
GOAL_S = 10.0
SAMPLE_EVERY_S = 0.25
RATE_WINDOW_S = 1.0  # entries/s over time is counted per window (a batch takes a fraction)
DOWN_FOR_S = 1.5  # the collector is down this long after sync starts
PACKAGES = ("aiohttp", "aiosqlite", "asyncpg", "pydantic", "rfc8785")


# -- the backlog ----------------------------------------------------------------------------


def _entry(seq: int, log_id: str, ts: float) -> dict[str, Any]:
    """A plausible decision: mostly allowed green codes, some denies, a few without a code."""
    kind = seq % 20
    allowed = kind < 16
    no_code = kind == 19
    return {
        "id": new_uuid7(round(ts * 1000)),
        "log_id": log_id,
        "seq": seq,
        "kiosk_id": KIOSK_ID,
        "venue_id": VENUE_ID,
        "ts": format_rfc3339(ts),
        "clock_offset_ms": -120 + seq % 7,
        "code_format": "none" if no_code else "vhc1",
        "code_verdict": "none" if no_code else "valid",
        "code_status": None if no_code else ("green" if allowed else "red"),
        "subject": None if no_code else hashlib.sha256(b"%d" % (seq % 5000)).hexdigest(),
        "subject_key_version": None if no_code else 1,
        "temperature_c": _number(round(36.0 + (seq % 13) / 10, 1)),
        "mask": "on",
        "decision": "allow" if allowed else "deny",
        "reasons": [] if allowed else (["no_code"] if no_code else ["status_red"]),
        "override": None,
        "policy_version": "default-1",
    }


def _number(value: float) -> float | int:
    # As the log stores it: RFC 8785 writes 36.0 as 36, which reads back as an integer.
    return int(value) if value.is_integer() else value


def _canonical(entry: dict[str, Any]) -> str:
    # RFC 8785 for these values (ASCII keys and strings, integers, plain decimals): sorted keys,
    # no spaces, shortest float form. Checked against kiosk.wire.canonical_json below.
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def build_backlog(path: Path, count: int) -> float:
    """Write `count` unsent entries into a new entry log at `path`; seconds it took."""
    started = time.perf_counter()
    entry_log = await EntryLog.open(path, kiosk_id=KIOSK_ID, venue_id=VENUE_ID)
    log_id = entry_log.log_id
    await entry_log.close()
    now = time.time()
    previous = GENESIS_CHAIN
    rows = []
    for seq in range(1, count + 1):
        ts = now - (count - seq) * 0.5
        entry = _entry(seq, log_id, ts)
        without_chain = _canonical(entry)
        chain = hashlib.sha256((previous + without_chain).encode()).hexdigest()
        # "chain" sorts before every other member, so it opens the canonical object.
        rows.append((seq, entry["id"], ts, f'{{"chain":"{chain}",{without_chain[1:]}'))
        if seq <= 50:  # the spec's own implementation agrees, and the collector's schema
            assert without_chain.encode() == canonical_json(entry)
            assert chain == chain_link(previous, entry)
            Entry.model_validate(entry | {"chain": chain})
        previous = chain
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        with db:
            db.executemany("INSERT INTO entries (seq, id, ts, body) VALUES (?, ?, ?, ?)", rows)
            db.executemany(
                "UPDATE meta SET value = ? WHERE key = ?",
                [(str(count), "last_seq"), (previous, "last_chain")],
            )
    finally:
        db.close()
    return time.perf_counter() - started


# -- the collector --------------------------------------------------------------------------


def kiosk_command() -> list[str]:
    script = Path(sys.executable).with_name("kiosk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kiosk"]


def admin(config: Path, *args: str) -> str:
    done = subprocess.run(
        [*kiosk_command(), "admin", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"kiosk admin {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Collector:
    """`kiosk collector` as a child process, stopped by its pid."""

    def __init__(self, config: Path, port: int) -> None:
        self.process = subprocess.Popen(
            [*kiosk_command(), "collector", "--config", str(config), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.listening = threading.Event()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "listening on" in line:
                self.listening.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Database:
    name: str  # "SQLite" or "PostgreSQL"
    url: str
    drop: str | None = None  # a PostgreSQL database to drop afterwards

    async def held(self) -> tuple[int, int, int]:
        """(entries held for the bench kiosk, distinct ids, links verified ok)."""
        sql = (
            "SELECT COUNT(*), COUNT(DISTINCT id), "
            "SUM(CASE WHEN link = 'ok' THEN 1 ELSE 0 END) FROM entries WHERE kiosk_id = $1"
        )
        if self.url.startswith("sqlite:"):
            path = self.url[len("sqlite:///") :]
            with contextlib.closing(sqlite3.connect(path)) as db:
                row = db.execute(sql.replace("$1", "?"), (KIOSK_ID,)).fetchone()
        else:
            import asyncpg

            conn = await asyncpg.connect(self.url)
            try:
                row = await conn.fetchrow(sql, KIOSK_ID)
            finally:
                await conn.close()
        return int(row[0]), int(row[1]), int(row[2] or 0)


@contextlib.asynccontextmanager
async def databases(folder: Path, wanted: str) -> AsyncIterator[list[Database]]:
    chosen = []
    if wanted in ("sqlite", "both"):
        chosen.append(Database("SQLite", f"sqlite:///{folder / 'collector.db'}"))
    pg_url = os.environ.get("KIOSK_TEST_PG_URL")
    if wanted in ("postgresql", "both") and pg_url:
        import asyncpg

        name = f"kiosk_bench_sync_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        base, _, _ = pg_url.rpartition("/")
        chosen.append(Database("PostgreSQL", f"{base}/{name}", drop=name))
    elif wanted == "postgresql":
        raise SystemExit("--database postgresql needs KIOSK_TEST_PG_URL")
    try:
        yield chosen
    finally:
        for database in chosen:
            if database.drop and pg_url:
                import asyncpg

                conn = await asyncpg.connect(pg_url)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{database.drop}" WITH (FORCE)')
                finally:
                    await conn.close()


# -- one run --------------------------------------------------------------------------------


@dataclass
class Run:
    database: str
    entries: int
    built_s: float
    total_s: float = math.nan  # collector listening -> backlog empty
    reconnect_s: float = math.nan  # collector listening -> first batch stored
    batches: int = 0
    held: tuple[int, int, int] = (0, 0, 0)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (s since listening, sent)
    kiosk_cpu_s: float = math.nan  # CPU time of this process (the kiosk's sync) while draining
    collector_cpu_s: float = math.nan  # the collector and its workers, while draining

    @property
    def drain_s(self) -> float:
        """First batch stored -> backlog empty: the time spent sending."""
        return self.total_s - self.reconnect_s

    @property
    def rate(self) -> float:
        return self.entries / self.drain_s if self.drain_s > 0 else math.nan

    def sent_at(self, moment: float) -> int:
        """Entries marked sent by `moment` (the last sample at or before it)."""
        sent = 0
        for at, count in self.samples:
            if at > moment:
                break
            sent = count
        return sent

    def window_rates(self) -> list[tuple[float, float]]:
        """(end of window, entries/s) over whole RATE_WINDOW_S windows since listening."""
        rates = []
        end = RATE_WINDOW_S
        while end <= self.total_s:
            sent = self.sent_at(end) - self.sent_at(end - RATE_WINDOW_S)
            rates.append((end, sent / RATE_WINDOW_S))
            end += RATE_WINDOW_S
        return rates

    def peak_rate(self) -> float:
        return max((rate for _, rate in self.window_rates()), default=math.nan)


def provision(database: Database, folder: Path) -> tuple[Path, Path]:
    """The collector's configuration and this kiosk's token file, made with `kiosk admin`."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "collector.toml"
    config_file.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = 0\n[database]\nurl = "{database.url}"\n'
    )
    progress(f"[{database.name}] provisioning with kiosk admin")
    admin(config_file, "add-venue", VENUE_ID, "--name", "Bench gate", "--region", "bench/d1")
    token_file = folder / "kiosk.token"
    token_file.write_text(admin(config_file, "add-kiosk", KIOSK_ID, "--venue", VENUE_ID) + "\n")
    return config_file, token_file


async def run_one(database: Database, folder: Path, count: int) -> Run:
    config_file, token_file = await asyncio.to_thread(provision, database, folder)
    state = folder / "kiosk-state"
    progress(f"[{database.name}] writing a backlog of {count:,} entries")
    built = await build_backlog(state / "entries.db", count)
    result = Run(database.name, count, built)

    port = free_port()
    kiosk = KioskConfig.model_validate(
        {
            "kiosk": {"id": KIOSK_ID, "venue_id": VENUE_ID, "state_dir": str(state)},
            "collector": {"url": f"http://127.0.0.1:{port}", "token_file": str(token_file)},
        }
    )
    entry_log = await EntryLog.open(state / "entries.db", kiosk_id=KIOSK_ID, venue_id=VENUE_ID)
    runtime = DoorRuntime(
        config=kiosk,
        entry_log=entry_log,
        knowledge=KnowledgeHolder(stale_knowledge(kiosk)),
        clock_offset=ClockOffset(),
        sensor_states=lambda: {"camera": "ok", "thermometer": "ok"},
    )
    assert (await entry_log.stats()).backlog == count
    service = SyncService(runtime)
    collector: Collector | None = None
    task = asyncio.create_task(service.run())
    try:
        await asyncio.sleep(DOWN_FOR_S)  # sync finds no collector and backs off
        progress(f"[{database.name}] collector coming up")
        collector = Collector(config_file, port)
        if not await asyncio.to_thread(collector.listening.wait, 60):
            raise SystemExit("the collector did not start:\n" + "".join(collector.lines)[-2000:])
        up = time.perf_counter()
        kiosk_cpu, collector_cpu = time.process_time(), tree_cpu_seconds(collector.process.pid)
        result.samples.append((0.0, 0))
        while service.status.sent < count:
            await asyncio.sleep(SAMPLE_EVERY_S / 5)
            now = time.perf_counter() - up
            if service.status.batches and math.isnan(result.reconnect_s):
                result.reconnect_s = now
            if now - result.samples[-1][0] >= SAMPLE_EVERY_S:
                result.samples.append((now, service.status.sent))
            if now > 600:
                raise SystemExit(f"not drained after 10 minutes: {service.status.as_dict()}")
        result.total_s = time.perf_counter() - up
        result.kiosk_cpu_s = time.process_time() - kiosk_cpu
        result.collector_cpu_s = tree_cpu_seconds(collector.process.pid) - collector_cpu
        result.samples.append((result.total_s, service.status.sent))
        result.batches = service.status.batches
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stats = await entry_log.stats()
        await entry_log.close()
        if collector is not None:
            await asyncio.to_thread(collector.stop)
    if stats.backlog != 0:
        raise SystemExit(f"backlog left: {stats.backlog}")
    result.held = await database.held()
    if result.held != (count, count, count):
        raise SystemExit(f"the collector holds {result.held} (entries, distinct, links ok)")
    progress(f"[{database.name}] drained {count:,} in {result.drain_s:.2f} s")
    return result


# -- the report -----------------------------------------------------------------------------


def report(runs: list[Run], quick: bool) -> str:
    rows = [
        (
            run.database,
            f"{run.entries:,}",
            f"{run.drain_s:.2f}",
            f"{run.rate:,.0f}",
            f"{run.peak_rate():,.0f}",
            f"{run.reconnect_s:.2f}",
            f"{run.total_s:.2f}",
            run.batches,
            f"{run.kiosk_cpu_s:.1f} / {run.collector_cpu_s:.1f}",
            f"{run.built_s:.1f}",
            "yes" if run.drain_s < GOAL_S else "**no**",
        )
        for run in runs
    ]
    headers = (
        "collector database",
        "backlog",
        "drain (s)",
        "entries/s",
        f"best {RATE_WINDOW_S:.0f} s (entries/s)",
        "reconnect (s)",
        "collector up → drained (s)",
        "batches",
        "CPU s: kiosk / collector",
        "backlog built in (s)",
        f"drain < {GOAL_S:.0f} s",
    )
    lines = [
        "# Kiosk catch-up: draining a backlog to a collector that comes up",
        "",
        f"Command: `{command_line()}`" + (" (quick: not the reference size)" if quick else ""),
        "",
        *machine_lines(PACKAGES),
        "",
        markdown_table(headers, rows),
        "",
        "The sync service (kiosk/door/sync.py, as in `kiosk run`) starts on a log with the whole "
        f"backlog unsent while the collector is down; {DOWN_FOR_S} s later `kiosk collector` "
        "starts. *Reconnect* runs from the collector listening to the first batch stored (the "
        "sync backoff's wait, then one request); *drain* from there to the last batch marked "
        "sent in the kiosk's log: the time the goal is about. Batches of 1,000 entries, one "
        "request at a time, each committed at the collector before its `200`; the kiosk marks "
        "one batch and reads the next while the following one is at the collector. Afterwards "
        "the collector holds every entry once, each chain link verified. *CPU s* is the CPU "
        "time each process used from the collector listening to the backlog drained.",
        "",
        *(bound(run) for run in runs),
        "",
        "Over time (seconds since the collector listens; entries marked sent, and entries/s "
        f"over the {RATE_WINDOW_S:.0f} s before):",
        "",
        over_time(runs),
    ]
    return "\n".join(lines) + "\n"


def bound(run: Run) -> str:
    """What bounds the drain, from where the CPU time went (a shared machine makes wall-clock
    time say little; CPU time still says which side does the work)."""
    if math.isnan(run.kiosk_cpu_s) or math.isnan(run.collector_cpu_s):
        return f"- {run.database}: CPU time not measured here."
    busier, cpu = max(("collector", run.collector_cpu_s), ("kiosk", run.kiosk_cpu_s), key=_cpu)
    cores = cpu / run.total_s if run.total_s > 0 else math.nan
    # The collector's CPU time counts its processes (the main one and its batch decoders), not
    # PostgreSQL's server: the rest of the drain's time is the database's, the network's, and
    # whatever else ran on the machine (the load average above says how much).
    return (
        f"- {run.database}: the {busier} did most of the work ({cpu:.1f} s of CPU for "
        f"{run.entries:,} entries, {run.entries / cpu:,.0f} entries per CPU second; the kiosk "
        f"{run.kiosk_cpu_s:.1f} s), {cores:.2f} cores on average over the drain."
    )


def _cpu(pair: tuple[str, float]) -> float:
    return pair[1]


def over_time(runs: list[Run], points: int = 12) -> str:
    longest = max(run.total_s for run in runs)
    step = max(RATE_WINDOW_S, math.ceil(longest / points))
    moments = [step * k for k in range(1, math.ceil(longest / step) + 1)]
    headers = ["s", *(f"{run.database} {what}" for run in runs for what in ("sent", "entries/s"))]
    rows = []
    for moment in moments:
        row: list[str] = [f"{moment:.0f}"]
        for run in runs:
            if moment - RATE_WINDOW_S >= run.total_s:
                row += ["", ""]
                continue
            now, before = run.sent_at(moment), run.sent_at(moment - RATE_WINDOW_S)
            row += [f"{now:,}", f"{(now - before) / RATE_WINDOW_S:,.0f}"]
        rows.append(row)
    return markdown_table(headers, rows)


def chart(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for run in runs:
        times = [t for t, _ in run.samples]
        top.plot(times, [sent for _, sent in run.samples], label=run.database)
        rates = run.window_rates()
        bottom.step(
            [end for end, _ in rates], [rate for _, rate in rates], where="pre", label=run.database
        )
    top.axvline(GOAL_S, color="grey", linestyle="--", linewidth=1, label=f"goal {GOAL_S:.0f} s")
    top.set_ylabel("entries sent (cumulative)")
    top.set_title(f"Kiosk catch-up of a {runs[0].entries:,}-entry backlog")
    top.legend()
    bottom.set_ylabel(f"entries/s (per {RATE_WINDOW_S:.0f} s)")
    bottom.set_xlabel("seconds since the collector is listening")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


async def main_async(args: argparse.Namespace) -> int:
    count = args.entries or (5_000 if args.quick else 100_000)
    runs = []
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-sync-") as tmp:
        folder = Path(tmp)
        async with databases(folder, args.database) as chosen:
            for database in chosen:
                runs.append(await run_one(database, folder / database.name.lower(), count))
    text = report(runs, args.quick)
    print(text)
    results = Path(args.results)
    path = write_report("sync", text, results)
    chart(runs, results / "sync.png")
    progress(f"wrote {path} and {results / 'sync.png'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 entries (make test)")
    parser.add_argument("--entries", type=int, help="backlog size (default 100,000)")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="collector database; PostgreSQL needs KIOSK_TEST_PG_URL (default: both if set)",
    )
    parser.add_argument("--results", default=str(RESULTS), help="folder for sync.md and sync.png")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
