"""The plain data between the findings queries and the API: what is asked, what each dialect's
queries return (evidence rows), and how evidence becomes `kiosk.findings.Finding`s."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from kiosk.findings import (
    RULE_OF_KIND,
    SAMPLE_SIZE,
    SILENT_AFTER_S,
    Finding,
    Kind,
    stuck_from_sums,
    too_many_implausible,
)

HOUR_S = 3600


@dataclass(frozen=True, slots=True)
class FindingsQuery:
    """The window `[since, until)` seen at `now`, for the venues of `region` ("" for all) or
    one venue. `no_mask_types`: venue types whose policy in force does not require a mask."""

    since: float
    until: float
    now: float
    region: str = ""
    venue_id: str | None = None
    silent_after_s: float = SILENT_AFTER_S
    no_mask_types: frozenset[str] = frozenset()
    sample_size: int = SAMPLE_SIZE

    def hours(self) -> dict[str, float]:
        """Whole hours of the window come from the rollups; the partial hours at its ends,
        `[since, head_until)` and `[tail_from, until)`, from the entries."""
        first_whole = math.ceil(self.since / HOUR_S) * HOUR_S
        last_whole = math.floor(self.until / HOUR_S) * HOUR_S
        if first_whole < last_whole:
            return {
                "full_from": first_whole,
                "full_until": last_whole,
                "head_until": first_whole,
                "tail_from": last_whole,
            }
        return {"full_from": 0, "full_until": 0, "head_until": self.until, "tail_from": self.until}


@dataclass(slots=True)
class EntryEvidence:
    kiosk_id: str
    venue_id: str
    kind: str
    count: int
    first: float
    last: float
    sample_entry_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Readings:
    """A kiosk's temperature readings in the window, in tenths of a degree."""

    count: int
    sum_tenths: int
    sum_sq_tenths: int
    implausible: int

    @property
    def stuck(self) -> bool:
        return stuck_from_sums(self.count, self.sum_tenths, self.sum_sq_tenths)

    @property
    def too_many_implausible(self) -> bool:
        return too_many_implausible(self.count, self.implausible)


@dataclass(frozen=True, slots=True)
class ReadingsEvidence:
    kiosk_id: str
    venue_id: str
    readings: Readings
    first_readings: list[tuple[float, str]]  # (ts, id), earliest first, at most the sample size
    last_reading_ts: float
    implausible: list[tuple[float, str]]  # every implausible reading (ts, id), earliest first


@dataclass(frozen=True, slots=True)
class HeartbeatEvidence:
    kiosk_id: str
    venue_id: str
    kind: str
    count: int
    first: float
    last: float


@dataclass(frozen=True, slots=True)
class SilentEvidence:
    kiosk_id: str
    venue_id: str
    count: int
    first: float
    last: float


@dataclass(frozen=True, slots=True)
class GapEvidence:
    kiosk_id: str
    venue_id: str
    missing: int
    first: float
    last: float


@dataclass(frozen=True, slots=True)
class Evidence:
    entries: list[EntryEvidence]
    readings: list[ReadingsEvidence]
    heartbeats: list[HeartbeatEvidence]
    silent: list[SilentEvidence]
    gaps: list[GapEvidence]


def _finding(
    kind: Kind, kiosk_id: str, count: int, first: float, last: float, samples: Iterable[str] = ()
) -> Finding:
    return Finding(
        RULE_OF_KIND[kind],
        kind,
        kiosk_id,
        int(count),
        float(first),
        float(last),
        tuple(str(s) for s in samples),
    )


def findings_of(evidence: Evidence, sample_size: int = SAMPLE_SIZE) -> list[tuple[str, Finding]]:
    """(venue_id, finding) for everything the evidence shows."""
    found: list[tuple[str, Finding]] = []
    for e in evidence.entries:
        found.append(
            (
                e.venue_id,
                _finding(
                    Kind(e.kind),
                    e.kiosk_id,
                    e.count,
                    e.first,
                    e.last,
                    e.sample_entry_ids[:sample_size],
                ),
            )
        )
    for r in evidence.readings:
        if r.readings.stuck and r.first_readings:
            found.append(
                (
                    r.venue_id,
                    _finding(
                        Kind.STUCK,
                        r.kiosk_id,
                        r.readings.count,
                        r.first_readings[0][0],
                        r.last_reading_ts,
                        (i for _, i in r.first_readings[:sample_size]),
                    ),
                )
            )
        if r.readings.too_many_implausible and r.implausible:
            found.append(
                (
                    r.venue_id,
                    _finding(
                        Kind.IMPLAUSIBLE,
                        r.kiosk_id,
                        r.readings.implausible,
                        r.implausible[0][0],
                        r.implausible[-1][0],
                        (i for _, i in r.implausible[:sample_size]),
                    ),
                )
            )
    for h in evidence.heartbeats:
        found.append((h.venue_id, _finding(Kind(h.kind), h.kiosk_id, h.count, h.first, h.last)))
    for s in evidence.silent:
        found.append((s.venue_id, _finding(Kind.SILENT, s.kiosk_id, s.count, s.first, s.last)))
    for g in evidence.gaps:
        found.append(
            (g.venue_id, _finding(Kind.MISSING_SEQ, g.kiosk_id, g.missing, g.first, g.last))
        )
    return found
