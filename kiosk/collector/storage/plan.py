"""What one batch changes, worked out in plain Python between the database's reads and writes.

Both storage implementations run the same steps inside their ingest transaction:

1. `split_new`: which entries are new, which are duplicates (id held for the same kiosk), and
   whether any id is held for another kiosk (then the batch is refused).
2. `run_ranges`: the seq range of each log the batch touches, to fetch the held runs around it.
3. `neighbour_keys`: held entries that must be read to check a link (rare: a late predecessor
   arriving after its successor, or a reused seq).
4. `plan_ingest`: link status and flags of each new entry, links of held successors now
   checkable, the runs to replace, the per-log summary and the hourly rollup deltas.

No I/O and no clock here, so this is where the chain and seq rules are tested.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from kiosk.collector.storage.base import (
    ENTRY_BROKEN_CHAIN,
    ENTRY_MASK_UNCHECKED,
    ENTRY_NO_CODE,
    ENTRY_NO_TEMPERATURE,
    ENTRY_OVERRIDE,
    ENTRY_SEQ_REUSED,
    LINK_BROKEN,
    LINK_OK,
    LINK_UNVERIFIED,
    EntryRow,
    ForeignEntryId,
    PreparedBatch,
)
from kiosk.findings import PLAUSIBLE_MAX_C, PLAUSIBLE_MIN_C
from kiosk.wire import GENESIS_CHAIN, chain_after

HOUR_S = 3600


@dataclass(frozen=True, slots=True)
class Run:
    """A stretch of consecutive seqs held for one log; `last_chain` is the chain at last_seq."""

    log_id: str
    first_seq: int
    last_seq: int
    last_chain: str


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """A held entry read back to check a link."""

    id: str
    log_id: str
    seq: int
    chain: str
    body: str
    link: str
    flags: int


@dataclass(frozen=True, slots=True)
class NewEntry:
    row: EntryRow
    link: str
    flags: int


@dataclass(frozen=True, slots=True)
class Relink:
    """A held entry whose link became checkable now that its predecessor arrived."""

    id: str
    log_id: str
    seq: int
    link: str
    add_flags: int


@dataclass(frozen=True, slots=True)
class LogDelta:
    log_id: str
    kiosk_id: str
    venue_id: str
    max_seq: int
    held_added: int
    runs_added: int  # may be negative: runs merged away


@dataclass(slots=True)
class HourDelta:
    """Additions to one row of `kiosk_hours` (see the storage package docstring)."""

    kiosk_id: str
    hour: int
    venue_id: str
    entries: int = 0
    allows: int = 0
    denies: int = 0
    overrides: int = 0
    no_code: int = 0
    no_temperature: int = 0
    mask_unchecked: int = 0
    unchecked: int = 0
    unchecked_with_mask: int = 0
    readings: int = 0
    readings_sum_dc: int = 0
    readings_sumsq_dc: int = 0
    implausible: int = 0


# The counters of kiosk_hours, in column order.
HOUR_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(HourDelta) if f.name not in ("kiosk_id", "hour", "venue_id")
)


@dataclass(frozen=True, slots=True)
class Rollups:
    """The `kiosk_hours` additions and the per-hour reason counts of some rows."""

    hours: list[HourDelta]
    reasons: list[tuple[str, int, str, str, int]]


@dataclass(slots=True)
class IngestPlan:
    new: list[NewEntry] = field(default_factory=list)
    relinks: list[Relink] = field(default_factory=list)
    runs_deleted: list[Run] = field(default_factory=list)
    runs_inserted: list[Run] = field(default_factory=list)
    logs: list[LogDelta] = field(default_factory=list)
    hours: list[HourDelta] = field(default_factory=list)
    reasons: list[tuple[str, int, str, str, int]] = field(default_factory=list)

    @property
    def broken_links(self) -> int:
        return sum(1 for n in self.new if n.link == LINK_BROKEN) + sum(
            1 for r in self.relinks if r.link == LINK_BROKEN
        )

    @property
    def unverified_links(self) -> int:
        return sum(1 for n in self.new if n.link == LINK_UNVERIFIED)


def entry_flags(
    *, decision: str, has_override: bool, code_format: str, temperature_c: float | None, mask: str
) -> int:
    flags = ENTRY_OVERRIDE if has_override else 0
    if decision == "allow":
        if code_format == "none":
            flags |= ENTRY_NO_CODE
        if temperature_c is None:
            flags |= ENTRY_NO_TEMPERATURE
        if mask == "unchecked":
            flags |= ENTRY_MASK_UNCHECKED
    return flags


def chain_follows(previous_chain: str, body: str, chain: str) -> bool:
    """Whether `chain` is SHA-256 of the previous chain's hex and this entry's body."""
    return chain_after(previous_chain, body.encode("utf-8")) == chain


def split_new(
    rows: Sequence[EntryRow], held: Mapping[str, str]
) -> tuple[list[EntryRow], int]:
    """(new rows, duplicate count). `held` maps ids already stored to their kiosk. An id held
    for another kiosk raises ForeignEntryId with the index of its first use in the batch."""
    new: list[EntryRow] = []
    seen: set[str] = set()
    duplicates = 0
    for row in rows:
        owner = held.get(row.id)
        if owner is not None and owner != row.kiosk_id:
            raise ForeignEntryId(row.position, row.id)
        if owner is not None or row.id in seen:
            duplicates += 1
            continue
        seen.add(row.id)
        new.append(row)
    return new, duplicates


def run_ranges(rows: Iterable[EntryRow]) -> dict[str, tuple[int, int]]:
    """Per log, the seq range whose held runs matter: one beyond the batch on each side."""
    ranges: dict[str, tuple[int, int]] = {}
    for row in rows:
        low, high = ranges.get(row.log_id, (row.seq, row.seq))
        ranges[row.log_id] = (min(low, row.seq), max(high, row.seq))
    return {log: (low - 1, high + 1) for log, (low, high) in ranges.items()}


def neighbour_keys(
    rows: Sequence[EntryRow], runs: Mapping[str, Sequence[Run]]
) -> set[tuple[str, int]]:
    """Held entries to read before planning: successors whose link only this batch can check,
    and predecessors inside a run (of a reused seq). Usually none."""
    seqs_of: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        seqs_of[row.log_id].add(row.seq)
    keys: set[tuple[str, int]] = set()
    for log_id, seqs in seqs_of.items():
        log_runs = list(runs.get(log_id, ()))
        if not log_runs:
            continue
        starts = {run.first_seq for run in log_runs}
        ends = {run.last_seq for run in log_runs}
        held = _held_test(log_runs, min(seqs) - 1, max(seqs))
        for seq in seqs:
            if seq + 1 in starts and seq + 1 not in seqs:
                keys.add((log_id, seq + 1))
            previous = seq - 1
            if previous >= 1 and previous not in seqs and previous not in ends and held(previous):
                keys.add((log_id, previous))
    return keys


def plan_ingest(
    rows: Sequence[EntryRow],
    runs: Mapping[str, Sequence[Run]],
    neighbours: Mapping[tuple[str, int], HeldEntry],
    batch: PreparedBatch | None = None,
) -> IngestPlan:
    """Everything the new `rows` change. `runs` holds, per log, the held runs that overlap or
    touch `run_ranges(rows)`; `neighbours` the entries `neighbour_keys` asked for; `batch`,
    when given, the prepared batch the rows came from (its rollups serve when it held no
    duplicates: the new rows are then all of its rows)."""
    plan = IngestPlan()
    by_log: dict[str, list[EntryRow]] = defaultdict(list)
    for row in rows:
        by_log[row.log_id].append(row)
    for log_id in sorted(by_log):
        _plan_log(plan, log_id, by_log[log_id], list(runs.get(log_id, ())), neighbours)
    known = batch.rollups if batch is not None and len(rows) == len(batch.rows) else None
    done = known if known is not None else rollups(rows)
    plan.hours, plan.reasons = done.hours, done.reasons
    return plan


def _held_test(runs: list[Run], low: int, high: int) -> Callable[[int], bool]:
    """Whether a seq is inside a held run; constant False when no run overlaps [low, high]
    (the usual batch: new seqs after the held ones)."""
    overlapping = [r for r in runs if r.first_seq <= high and r.last_seq >= low]
    if not overlapping:
        return lambda seq: False
    return lambda seq: any(r.first_seq <= seq <= r.last_seq for r in overlapping)


def _plan_log(
    plan: IngestPlan,
    log_id: str,
    rows: list[EntryRow],
    runs: list[Run],
    neighbours: Mapping[tuple[str, int], HeldEntry],
) -> None:
    first_of_seq: dict[int, EntryRow] = {}
    for row in sorted(rows, key=lambda r: (r.seq, r.position)):
        first_of_seq.setdefault(row.seq, row)
    low, high = min(first_of_seq), max(first_of_seq)
    held = _held_test(runs, low, high)
    run_ending = {run.last_seq: run.last_chain for run in runs}

    def chain_at(seq: int) -> str | None:
        if seq == 0:
            return GENESIS_CHAIN
        in_batch = first_of_seq.get(seq)
        if in_batch is not None and not held(seq):
            return in_batch.chain
        chain = run_ending.get(seq)
        if chain is not None:
            return chain
        neighbour = neighbours.get((log_id, seq))
        return neighbour.chain if neighbour is not None else None

    for row in rows:  # batch order
        flags = row.flags
        if first_of_seq[row.seq] is not row or held(row.seq):
            flags |= ENTRY_SEQ_REUSED
        previous = chain_at(row.seq - 1)
        if previous is None:
            link = LINK_UNVERIFIED
        elif previous == row.checked_previous or chain_follows(previous, row.body, row.chain):
            link = LINK_OK
        else:
            link = LINK_BROKEN
            flags |= ENTRY_BROKEN_CHAIN
        plan.new.append(NewEntry(row, link, flags))

    for (held_log, seq), successor in neighbours.items():
        before = first_of_seq.get(seq - 1)
        if held_log != log_id or before is None or seq in first_of_seq:
            continue
        if successor.link != LINK_UNVERIFIED or held(seq - 1):
            continue
        if chain_follows(before.chain, successor.body, successor.chain):
            plan.relinks.append(Relink(successor.id, log_id, seq, LINK_OK, 0))
        else:
            plan.relinks.append(Relink(successor.id, log_id, seq, LINK_BROKEN, ENTRY_BROKEN_CHAIN))

    new_seqs = [seq for seq in sorted(first_of_seq) if not held(seq)]
    merged = _merge_runs(log_id, runs, _stretches(new_seqs, first_of_seq))
    kept = set(runs) & set(merged)
    plan.runs_deleted.extend(run for run in runs if run not in kept)
    plan.runs_inserted.extend(run for run in merged if run not in kept)
    head = rows[0]
    plan.logs.append(
        LogDelta(
            log_id=log_id,
            kiosk_id=head.kiosk_id,
            venue_id=head.venue_id,
            max_seq=high,
            held_added=len(new_seqs),
            runs_added=len(merged) - len(runs),
        )
    )


def _stretches(
    seqs: list[int], first_of_seq: Mapping[int, EntryRow]
) -> list[tuple[int, int, str]]:
    """Sorted seqs as (first, last, chain at last) stretches of consecutive numbers."""
    stretches: list[tuple[int, int, str]] = []
    start = previous = None
    for seq in seqs:
        if previous is not None and seq == previous + 1:
            previous = seq
            continue
        if start is not None and previous is not None:
            stretches.append((start, previous, first_of_seq[previous].chain))
        start = previous = seq
    if start is not None and previous is not None:
        stretches.append((start, previous, first_of_seq[previous].chain))
    return stretches


def _merge_runs(
    log_id: str, runs: list[Run], stretches: list[tuple[int, int, str]]
) -> list[Run]:
    pieces = sorted([(r.first_seq, r.last_seq, r.last_chain) for r in runs] + stretches)
    merged: list[Run] = []
    for first, last, chain in pieces:
        if merged and first <= merged[-1].last_seq + 1:
            current = merged[-1]
            if last > current.last_seq:
                merged[-1] = Run(log_id, current.first_seq, last, chain)
            continue
        merged.append(Run(log_id, first, last, chain))
    return merged


def hour_of(ts: float) -> int:
    return math.floor(ts / HOUR_S) * HOUR_S


def rollups(rows: Sequence[EntryRow]) -> Rollups:
    """What `rows` add to the hourly rollups: a function of the rows alone."""
    hours: dict[tuple[str, int], HourDelta] = {}
    reasons: dict[tuple[str, int, str, str], int] = defaultdict(int)
    plausible_low = round(PLAUSIBLE_MIN_C * 10)
    plausible_high = round(PLAUSIBLE_MAX_C * 10)
    for row in rows:
        hour = hour_of(row.ts)
        key = (row.kiosk_id, hour)
        delta = hours.get(key)
        if delta is None:
            delta = hours[key] = HourDelta(row.kiosk_id, hour, row.venue_id)
        delta.entries += 1
        if row.decision == "allow":
            delta.allows += 1
        else:
            delta.denies += 1
        flags = row.flags
        if flags & ENTRY_OVERRIDE:
            delta.overrides += 1
        if flags & ENTRY_NO_CODE:
            delta.no_code += 1
        if flags & ENTRY_NO_TEMPERATURE:
            delta.no_temperature += 1
        if flags & ENTRY_MASK_UNCHECKED:
            delta.mask_unchecked += 1
        if flags & (ENTRY_NO_CODE | ENTRY_NO_TEMPERATURE):
            delta.unchecked += 1
        if flags & (ENTRY_NO_CODE | ENTRY_NO_TEMPERATURE | ENTRY_MASK_UNCHECKED):
            delta.unchecked_with_mask += 1
        if row.temperature_c is not None:
            # Temperatures are whole tenths (wire.Entry checks it), so sums of tenths are exact
            # integers and the stuck test (variance) needs no floating point at all.
            tenths = round(row.temperature_c * 10)
            delta.readings += 1
            delta.readings_sum_dc += tenths
            delta.readings_sumsq_dc += tenths * tenths
            if tenths < plausible_low or tenths > plausible_high:
                delta.implausible += 1
        for reason in row.reasons:
            reasons[(row.kiosk_id, hour, row.decision, reason)] += 1
    return Rollups(
        [hours[key] for key in sorted(hours)],
        [(*key, count) for key, count in sorted(reasons.items())],
    )
