"""The kiosk's entry log write rate: one entry per committed transaction, as a door writes them.

    python bench/log_write.py               # 5,000 entries
    python bench/log_write.py --entries 500

`bench/door.py` runs this too and puts its table in door.md. What runs is the door's own
`EntryLog.append` (kiosk/door/store.py): the entry checked against the wire schema, chained,
written out in RFC 8785 form and committed (WAL, synchronous=FULL: an fsync per entry) before
the next one starts, as "no record, no entry" asks. The baseline in the same run: a bare
`sqlite3` insert of a row of the same size, one transaction each, same pragmas, same disk,
which no log on this disk can beat. Goal (issue 7): ≥ 4,000 entries/s.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_lines, markdown_table, progress
from kiosk.door.store import EntryDraft, EntryLog

GOAL_PER_S = 4_000.0
T0 = 1_765_000_000.0
DRAFT = EntryDraft(
    ts=T0,
    code_format="vhc1",
    code_verdict="valid",
    code_status="green",
    subject="5f" * 32,
    subject_key_version=1,
    temperature_c=36.6,
    mask="on",
    decision="allow",
    reasons=(),
    override=None,
    policy_version="default-1",
    clock_offset_ms=12,
)


@dataclass(frozen=True)
class LogWriteResult:
    entries: int
    log_per_s: float
    bare_per_s: float
    body_bytes: int

    @property
    def share(self) -> float:
        return self.log_per_s / self.bare_per_s

    @property
    def verdict(self) -> str:
        return "met" if self.log_per_s >= GOAL_PER_S else "missed"


async def _entry_log_rate(path: Path, count: int) -> tuple[float, int]:
    log = await EntryLog.open(path, kiosk_id="bench-kiosk", venue_id="bench-venue")
    try:
        first = await log.append(DRAFT)  # opens the WAL; not timed
        started = time.perf_counter()
        for index in range(1, count + 1):
            await log.append(replace(DRAFT, ts=T0 + index * 0.5))
        elapsed = time.perf_counter() - started
    finally:
        await log.close()
    return count / elapsed, len(str(first))


def _bare_rate(path: Path, count: int, body: str) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        conn.execute("INSERT INTO entries (body) VALUES (?)", (body,))
        started = time.perf_counter()
        for _ in range(count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO entries (body) VALUES (?)", (body,))
            conn.execute("COMMIT")
        return count / (time.perf_counter() - started)
    finally:
        conn.close()


def measure(folder: Path, count: int) -> LogWriteResult:
    """Both rates, the bare one first, each in a fresh file under `folder`."""
    progress(f"entry log: {count:,} bare sqlite3 inserts, then {count:,} EntryLog.append ...")
    bare = _bare_rate(folder / "bare.sqlite", count, "x" * 700)
    rate, body_bytes = asyncio.run(_entry_log_rate(folder / "entries.sqlite", count))
    return LogWriteResult(count, rate, bare, body_bytes)


def section(result: LogWriteResult) -> str:
    table = markdown_table(
        ["entries", "EntryLog.append (entries/s)", "bare sqlite3 insert (rows/s)", "ratio", "goal"],
        [
            [
                f"{result.entries:,}",
                f"{result.log_per_s:,.0f}",
                f"{result.bare_per_s:,.0f}",
                f"{result.share:.0%}",
                f"≥ {GOAL_PER_S:,.0f}/s: {result.verdict}",
            ]
        ],
    )
    return "\n\n".join(
        [
            "## Entry log writes: one entry per committed transaction (WAL, synchronous=FULL)",
            "`EntryLog.append` as the door calls it (schema check, chain link, RFC 8785 body of "
            f"about {result.body_bytes} bytes, INSERT and head update, COMMIT with its fsync), "
            "one after another; the baseline is a bare sqlite3 INSERT of a 700-byte row, one "
            "transaction each, same pragmas, same disk, in the same run.",
            table,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5_000, help="entries written (5,000)")
    args = parser.parse_args()
    if args.entries < 1:
        parser.error("--entries must be at least 1")
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-log-") as folder:
        result = measure(Path(folder), args.entries)
    print("\n".join(["# Entry log write rate", *machine_lines(("aiosqlite",))]))
    print()
    print(section(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
