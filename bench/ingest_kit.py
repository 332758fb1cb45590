"""The parts bench/ingest.py is made of: kiosk logs that write valid chained entries, fresh
databases, provisioning, the collector as a child process, the sender processes, the raw
ceiling writers and the per-stage timing of the collector's own ingest code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import pid_cpu_seconds, progress, tree_cpu_seconds
from kiosk.canonical import canonical_bytes, entry_bytes
from kiosk.collector.storage.base import Actor, Venue
from kiosk.collector.storage.plan import LINK_OK, entry_flags
from kiosk.collector.tokens import new_token, token_hash
from kiosk.wire import GENESIS_CHAIN, format_rfc3339

ACTOR = Actor("cli:bench", "admin")
ENTRY_SPACING_S = 0.5  # between two entries of one kiosk (a busy door)


# --- kiosk logs --------------------------------------------------------------------------------


def uuid7(unix_ms: int, rng: random.Random) -> str:
    """A UUIDv7 (RFC 9562) for `unix_ms`, its random bits from `rng` (as kiosk.wire.new_uuid7
    lays them out; seeded here so the bench repeats itself)."""
    value = (unix_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64
    value |= 0b10 << 62 | rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass
class KioskLog:
    """One kiosk's entry log: ids (UUIDv7), seqs and chains exactly as sync-api.md says. Plain
    data, so a sender process can take it, write on, and hand it back."""

    kiosk_id: str
    venue_id: str
    token: str
    log_id: str
    ts: float
    seq: int = 0
    chain: str = GENESIS_CHAIN
    seed: int = 0
    random_ids: bool = False  # uuid4 ids instead of UUIDv7: the contrast in the 2 M test

    def entries(self, count: int) -> list[dict[str, Any]]:
        rng = random.Random(f"{self.log_id}:{self.seq}:{self.seed}")
        made = []
        for _ in range(count):
            self.seq += 1
            self.ts += ENTRY_SPACING_S
            entry = visit_entry(rng, self.kiosk_id, self.venue_id, self.log_id, self.seq, self.ts)
            if self.random_ids:
                entry["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            digest = hashlib.sha256(self.chain.encode("ascii"))
            digest.update(canonical_bytes(entry))
            entry["chain"] = self.chain = digest.hexdigest()
            made.append(entry)
        return made


def visit_entry(
    rng: random.Random, kiosk_id: str, venue_id: str, log_id: str, seq: int, ts: float
) -> dict[str, Any]:
    """A plausible door decision: mostly green codes allowed, some denied for a yellow or red
    code or a fever, a few people without a code."""
    roll = rng.random()
    celsius = round(rng.uniform(36.0, 37.2), 1)
    status, reasons, decision, code = "green", [], "allow", "vhc1"
    if roll < 0.04:
        status, reasons, decision = "yellow", ["status_yellow"], "deny"
    elif roll < 0.06:
        celsius, reasons, decision = round(rng.uniform(37.6, 39.0), 1), ["fever"], "deny"
    elif roll < 0.08:
        code, reasons, decision = "none", ["code_missing"], "deny"
    signed = code != "none"
    return {
        "id": uuid7(int(ts * 1000), rng),
        "log_id": log_id,
        "seq": seq,
        "kiosk_id": kiosk_id,
        "venue_id": venue_id,
        "ts": format_rfc3339(ts),
        "clock_offset_ms": rng.randint(-400, 400),
        "code_format": code,
        "code_verdict": "valid" if signed else "none",
        "code_status": status if signed else None,
        "subject": rng.randbytes(32).hex() if signed else None,
        "subject_key_version": 1 if signed else None,
        "temperature_c": celsius,
        "mask": "on",
        "decision": decision,
        "reasons": reasons,
        "override": None,
        "policy_version": "default-1",
    }


def batch_body(entries: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"entries": list(entries)}, separators=(",", ":")).encode()


# --- databases ---------------------------------------------------------------------------------


@dataclass
class Database:
    name: str  # "SQLite" or "PostgreSQL"
    url: str
    admin_url: str | None = None  # PostgreSQL: the server's URL to create and drop it with
    database: str | None = None

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url[len("sqlite:///") :])


@contextlib.asynccontextmanager
async def fresh_database(kind: str, folder: Path, label: str) -> AsyncIterator[Database]:
    """A new, empty SQLite file or PostgreSQL database (kiosk_bench_<label>_<random>), dropped
    afterwards."""
    if kind == "sqlite":
        path = folder / f"{label}.db"
        try:
            yield Database("SQLite", f"sqlite:///{path}")
        finally:
            await asyncio.to_thread(_remove_sqlite, path)
        return
    import asyncpg

    admin_url = os.environ["KIOSK_TEST_PG_URL"]
    name = f"kiosk_bench_{label}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_url.split("?", 1)[0].rsplit("/", 1)[0]
    try:
        yield Database("PostgreSQL", f"{base}/{name}", admin_url, name)
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            Path(f"{path}{suffix}").unlink()


async def provision(storage: Any, count: int, now: float, prefix: str = "k") -> list[KioskLog]:
    """`count` kiosks, each at its own venue with its own token and a fresh log whose entries
    start two days back (so they span a few daily partitions on PostgreSQL)."""
    logs = []
    for number in range(count):
        venue_id, kiosk_id = f"bench-v{number:03d}", f"{prefix}-bench-{number:03d}"
        if await storage.venue(venue_id) is None:
            venue = Venue(venue_id, f"Bench venue {number}", f"bench/d{number % 4}", "mall", now)
            await storage.add_venue(venue, actor=ACTOR)
        token = new_token()
        await storage.add_kiosk(kiosk_id, venue_id, token_hash(token), actor=ACTOR, now=now)
        log_id = uuid7(int(now * 1000), random.Random(kiosk_id))
        logs.append(KioskLog(kiosk_id, venue_id, token, log_id, ts=now - 2 * 86400))
    return logs


# --- the collector process ---------------------------------------------------------------------


def kiosk_command() -> list[str]:
    script = Path(sys.executable).with_name("kiosk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kiosk"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Collector:
    """`kiosk collector --config FILE --port N` as a child process, stopped by pid (SIGTERM)."""

    def __init__(self, database: Database, folder: Path) -> None:
        self.port = free_port()
        config = folder / f"collector-{database.name.lower()}.toml"
        config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'[database]\nurl = "{database.url}"\n',
            encoding="utf-8",
        )
        self.process = subprocess.Popen(
            [*kiosk_command(), "collector", "--config", str(config), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._listening = threading.Event()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "listening on" in line:
                self._listening.set()

    def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kiosk collector did not start: " + "".join(self.lines)[-1500:])

    def warm_decoders(self, log: KioskLog, batch: int, timeout: float = 60.0) -> None:
        """Post one batch of `batch` entries of `log` (a kiosk the bench uses for nothing else),
        which starts the batch-decoding workers, and wait until they are ready: a collector
        that has been running is past that, and the first timed cell should be too."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Authorization": f"Bearer {log.token}", "Content-Type": "application/json"}
        try:
            connection.request("POST", "/api/v1/entries", batch_body(log.entries(batch)), headers)
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"warm-up batch refused: {response.status} {answer[:300]!r}")
        started = time.monotonic()
        while not any("decoding worker(s) ready" in line for line in self.lines):
            waited = time.monotonic() - started
            starting = any("starting" in line and "decoding" in line for line in self.lines)
            if waited > 5 and not starting:
                return  # no pool started (decode_processes = 0, or a small body): no wait
            if self.process.poll() is not None or waited > timeout:
                raise RuntimeError("batch decoders not ready: " + "".join(self.lines)[-1500:])
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU time of the collector and of its live child processes (its batch decoders)."""
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling a process (all threads, waiting ones too) until stopped; collapsed stacks
    (flamegraph.pl / speedscope input) go to `output`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    command = [str(py_spy) if py_spy.exists() else "py-spy", "record", "--pid", str(pid)]
    command += ["--rate", "200", "--threads", "--idle", "--format", "raw", "-o", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait(10)


# --- senders (one process per kiosk) -----------------------------------------------------------


@dataclass
class SenderJob:
    log: KioskLog
    port: int
    batch: int
    batches: int


@dataclass
class SenderResult:
    log: KioskLog
    accepted: int
    started: float  # time.monotonic(): one clock for every process on the machine
    ended: float
    request_ms: list[float] = field(default_factory=list)
    error: str | None = None


def sender(job: SenderJob, start: Any, results: Any) -> None:
    """Build this kiosk's batches first, wait for the others at `start` (a Barrier), then post
    them one after another on one keep-alive connection, as a kiosk's sync does."""
    log = replace(job.log)
    bodies = [batch_body(log.entries(job.batch)) for _ in range(job.batches)]
    headers = {"Authorization": f"Bearer {log.token}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", job.port, timeout=120)
    accepted, times, error = 0, [], None
    start.wait()
    started = time.monotonic()
    try:
        for body in bodies:
            sent = time.perf_counter()
            connection.request("POST", "/api/v1/entries", body, headers)
            response = connection.getresponse()
            answer = response.read()
            times.append((time.perf_counter() - sent) * 1000)
            if response.status != 200:
                error = f"{response.status}: {answer[:300]!r}"
                break
            accepted += int(json.loads(answer)["accepted"])
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    ended = time.monotonic()
    connection.close()
    results.put(SenderResult(log, accepted, started, ended, times, error))


# --- the raw ceiling ---------------------------------------------------------------------------


def raw_row(entry: dict[str, Any], received_at: float) -> tuple[Any, ...]:
    """An `entries` row straight from an entry as sent: the columns the collector fills, the
    body as canonical JSON (the C encoder; these entries need nothing more)."""
    hashed = {key: value for key, value in entry.items() if key != "chain"}
    temperature = entry["temperature_c"]
    flags = entry_flags(
        decision=entry["decision"],
        has_override=entry["override"] is not None,
        code_format=entry["code_format"],
        temperature_c=temperature,
        mask=entry["mask"],
    )
    return (
        entry["id"], entry["kiosk_id"], entry["venue_id"], entry["log_id"], entry["seq"],
        datetime.fromisoformat(entry["ts"]).timestamp(), received_at, entry["decision"],
        entry["override"] is not None, flags, entry["subject"], temperature, entry["mask"],
        entry["code_format"], entry["code_verdict"], entry["code_status"],
        entry["policy_version"], LINK_OK, entry["chain"],
        json.dumps(hashed, sort_keys=True, separators=(",", ":")),
    )  # fmt: skip


_SQLITE_INSERT = (
    "INSERT INTO entries (id, kiosk_id, venue_id, log_id, seq, ts, received_at, decision, "
    "has_override, flags, subject, temperature_c, mask, code_format, code_verdict, code_status, "
    "policy_version, link, chain, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?)"
)


def sqlite_ceiling(path: Path, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
    """Seconds to write `batches` into `entries`, one transaction and one executemany each, on a
    connection set up as the collector's writer (WAL, synchronous=FULL); rows built inside."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL"):
            conn.execute(pragma)
        started = time.perf_counter()
        for batch in batches:
            received = time.time()
            rows = [raw_row(entry, received) for entry in batch]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_SQLITE_INSERT, rows)
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


PG_COLUMNS = (
    "id", "kiosk_id", "venue_id", "log_id", "seq", "ts", "received_at", "decision",
    "has_override", "flags", "subject", "temperature_c", "mask", "code_format", "code_verdict",
    "code_status", "policy_version", "link", "chain", "body",
)  # fmt: skip


async def pg_ceiling_writer(pool: Any, batches: Sequence[Sequence[dict[str, Any]]]) -> None:
    """One writer of the PostgreSQL ceiling: per batch, COPY into a temporary staging table,
    then one INSERT ... SELECT each into `entry_ids` and `entries`, in one transaction."""
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS staging "
            "(LIKE entries INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        columns = ", ".join(PG_COLUMNS)
        for batch in batches:
            received = time.time()
            rows = [raw_row(entry, received) for entry in batch]
            async with conn.transaction():
                await conn.copy_records_to_table("staging", columns=PG_COLUMNS, records=rows)
                await conn.execute(
                    "INSERT INTO entry_ids (id, kiosk_id, ts) SELECT id, kiosk_id, ts FROM staging"
                )
                await conn.execute(f"INSERT INTO entries ({columns}) SELECT {columns} FROM staging")


# --- where the time goes -----------------------------------------------------------------------

# In the batch decoders, then on the database writer (the collector's main process).
DECODER_STAGES = ("parse", "validate", "canonical JSON", "chain", "rollups")
WRITER_STAGES = ("runs", "database")
STAGES = DECODER_STAGES + WRITER_STAGES


@dataclass
class StageTimes:
    """CPU-bound seconds per stage of the collector's own ingest code, summed over batches."""

    entries: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def us_per_entry(self, stage: str) -> float:
        return self.seconds[stage] / max(1, self.entries) * 1e6

    @property
    def total_us(self) -> float:
        return sum(self.seconds.values()) / max(1, self.entries) * 1e6


async def time_stages(
    storage: Any, log: KioskLog, batch: int, batches: int, database: Database
) -> StageTimes:
    """Each step a `POST /api/v1/entries` takes, called one by one in this process on the same
    kind of batches. Where the collector's batch decoders run them: parse
    (bodies.parse_json), validate (batch.prepare_batch less the three below), canonical JSON
    (the RFC 8785 bytes of each entry), chain (SHA-256 of each link) and rollups (the hourly
    counts, storage.plan.rollups). On the database writer: runs (storage.plan.plan_ingest with
    the links and rollups already known) and database (the rest of storage.ingest_entries:
    reads, writes and the commit)."""
    from kiosk.collector.batch import prepare_batch
    from kiosk.collector.bodies import parse_json
    from kiosk.collector.storage import plan as planning

    # CPU time throughout, so that other work on the machine does not count: this thread's for
    # the stages it runs; for the database stage, this whole process's (SQLite's writer thread)
    # and the PostgreSQL server processes' of this database.
    clock = time.thread_time
    backends = postgres_backends(database)

    def wall() -> float:
        return time.process_time() + sum(pid_cpu_seconds(pid) for pid in backends)

    times = StageTimes()
    seconds = times.seconds
    # One batch first, untimed: partitions, caches, the first use of every code path.
    warm = batch_body(log.entries(batch))
    await storage.ingest_entries(
        prepare_batch(
            parse_json(warm), kiosk_id=log.kiosk_id, venue_id=log.venue_id, received_at=time.time()
        )
    )
    held = planning.Run(log.log_id, 1, log.seq, log.chain) if log.seq else None
    for _ in range(batches):
        body = batch_body(log.entries(batch))
        t0 = clock()
        document = parse_json(body)
        t1 = clock()
        prepared = prepare_batch(
            document, kiosk_id=log.kiosk_id, venue_id=log.venue_id, received_at=time.time()
        )
        t2 = clock()
        for raw in document["entries"]:
            entry_bytes(raw)
        t3 = clock()
        previous = held.last_chain if held is not None else GENESIS_CHAIN
        for row in prepared.rows:
            planning.chain_follows(previous, row.body, row.chain)
            previous = row.chain
        t4 = clock()
        planning.rollups(prepared.rows)
        t5 = clock()
        runs = {log.log_id: [held]} if held is not None else {}
        plan = planning.plan_ingest(prepared.rows, runs, {}, prepared)
        t6 = clock()
        w6 = wall()
        await storage.ingest_entries(prepared)
        w7 = wall()
        if plan.broken_links or plan.unverified_links:
            raise RuntimeError("the bench's own chain did not verify")
        seconds["parse"] += t1 - t0
        seconds["canonical JSON"] += t3 - t2
        seconds["chain"] += t4 - t3
        seconds["rollups"] += t5 - t4
        seconds["validate"] += max(0.0, (t2 - t1) - (t5 - t2))
        seconds["runs"] += t6 - t5
        seconds["database"] += max(0.0, (w7 - w6) - (t6 - t5))
        times.entries += len(prepared.rows)
        held = planning.Run(log.log_id, 1, log.seq, log.chain)
    return times


# --- filling a table ---------------------------------------------------------------------------

_FILL_BODY = (
    '{{"clock_offset_ms":-120,"code_format":"vhc1","code_status":"green","code_verdict":"valid",'
    '"decision":"allow","id":"{id}","kiosk_id":"{kiosk}","log_id":"{log}","mask":"on",'
    '"override":null,"policy_version":"default-1","reasons":[],"seq":{seq},'
    '"subject":"{subject}","subject_key_version":1,"temperature_c":36.6,"ts":"{ts}",'
    '"venue_id":"{venue}"}}'
)


def fill_rows(count: int, start: float, span_s: float, random_ids: bool, seed: int) -> list[Any]:
    """`count` stored-entry rows (allows of green codes, the common case) of 64 past kiosks,
    spread over `span_s` seconds from `start` in arrival order, with UUIDv7 or uuid4 ids and a
    body of the usual size. Written straight from a template: filling 2 M rows must not take
    the entries' full construction."""
    rng = random.Random(seed)
    rows = []
    step = span_s / max(1, count)
    for number in range(count):
        ts = start + number * step
        kiosk_number = number % 64
        kiosk, venue = f"past-{kiosk_number:02d}", f"past-v{kiosk_number:02d}"
        log = f"00000000-0000-7000-8000-{kiosk_number:012x}"
        seq = seed + number // 64 + 1
        if random_ids:
            entry_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        else:
            entry_id = uuid7(int(ts * 1000), rng)
        subject = f"{rng.getrandbits(256):064x}"
        body = _FILL_BODY.format(
            id=entry_id, kiosk=kiosk, log=log, seq=seq, subject=subject,
            ts=format_rfc3339(ts), venue=venue,
        )  # fmt: skip
        row = (
            entry_id, kiosk, venue, log, seq, ts, ts + 5, "allow", False, 0, subject, 36.6, "on",
            "vhc1", "valid", "green", "default-1", LINK_OK, f"{rng.getrandbits(256):064x}", body,
        )  # fmt: skip
        rows.append(row)
    return rows


async def fill_entries(
    storage: Any, database: Database, count: int, now: float, random_ids: bool
) -> None:
    """`count` entries held, written by the raw path in chunks (executemany / COPY), spread over
    the last ten days. On SQLite the per-arrival code_reuse trigger is left out while filling
    and put back after (the fill's subjects never repeat, so it would record nothing)."""
    chunk = 50_000
    start = now - 10 * 86400
    span = 10 * 86400 - 3600
    trigger = None
    if database.name == "PostgreSQL":
        from kiosk.collector.storage.partitions import DailyPartitions, day_of

        async with storage.pool.acquire() as conn:
            days = {day_of(start + span * i / 10) for i in range(11)}
            await DailyPartitions().ensure(conn, days, now)
    else:
        trigger = await storage.read(
            lambda conn: conn.execute(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name = 'entries'"
            ).fetchall()
        )
        for name, _ in trigger:
            await storage.write(lambda conn, name=name: conn.execute(f"DROP TRIGGER {name}"))
    for offset in range(0, count, chunk):
        size = min(chunk, count - offset)
        part_start = start + span * offset / count
        rows = await asyncio.to_thread(
            fill_rows, size, part_start, span * size / count, random_ids, offset
        )
        if database.name == "SQLite":
            await storage.write(lambda conn, rows=rows: conn.executemany(_SQLITE_INSERT, rows))
        else:
            async with storage.pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table(
                    "entry_ids", columns=("id", "kiosk_id", "ts"),
                    records=[(r[0], r[1], r[5]) for r in rows],
                )  # fmt: skip
                await conn.copy_records_to_table("entries", columns=PG_COLUMNS, records=rows)
        if (offset // chunk) % 10 == 9:
            progress(f"    {offset + size:,} held")
    for _, sql in trigger or ():
        await storage.write(lambda conn, sql=sql: conn.execute(sql))


# --- CPU time ------------------------------------------------------------------------------------


def postgres_backends(database: Database) -> set[int]:
    """The PostgreSQL server processes now connected to `database` (none for SQLite): their
    command line names the database (`postgres: 15/main: user dbname host(port) idle`)."""
    if database.database is None:
        return set()
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if command.startswith(b"postgres:") and f" {database.database} ".encode() in command:
            found.add(int(proc.name))
    return found


async def backend_pids(storage: Any) -> list[int]:
    """The PostgreSQL server processes serving this database (the server runs on this machine,
    so their CPU time can be read from /proc)."""
    rows = await storage.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    )
    return [int(row[0]) for row in rows]
