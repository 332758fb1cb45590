"""The storage interface of the collector: plain data in and out, two implementations behind it.

Everything is in Unix seconds (float) at this boundary; PostgreSQL keeps `timestamptz` inside.
Errors a person should read are `StorageError`s (one line, no traceback).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from kiosk.errors import KioskError

if TYPE_CHECKING:
    from kiosk.collector.storage.plan import Rollups

Role = Literal["kiosk", "inspector", "admin"]
ROLES: tuple[Role, ...] = ("kiosk", "inspector", "admin")

# entries.flags: what an entry shows, set at ingest (bits 1-8) or when its chain link is checked
# (bit 16, possibly later, when a late predecessor arrives). The partial index `entries_flagged`
# holds exactly the entries with flags <> 0, so the evidence of entry findings is an index scan.
ENTRY_OVERRIDE = 1  # `override` is not null
ENTRY_NO_CODE = 2  # allowed with code_format "none"
ENTRY_NO_TEMPERATURE = 4  # allowed with temperature_c null
ENTRY_MASK_UNCHECKED = 8  # allowed with mask "unchecked" (a finding only where a mask is required)
ENTRY_BROKEN_CHAIN = 16  # `chain` does not follow from the held predecessor (same log, seq - 1)
ENTRY_SEQ_REUSED = 32  # another entry with this log_id and seq was held first (a forked log)

# entries.link: the state of the entry's chain link.
LINK_OK = "ok"
LINK_BROKEN = "broken"
LINK_UNVERIFIED = "unverified"  # the predecessor is not held (yet); checked when it arrives

# heartbeats.flags: what a heartbeat shows, judged when it arrives against what was then in force.
HEARTBEAT_THERMOMETER_FAULT = 1  # sensors.thermometer == "fault"
HEARTBEAT_STALE_TRUST = 2  # trust_age_s over the venue type's max_trust_age_hours
HEARTBEAT_CLOCK_SKEW = 4  # |received_at - ts| over 120 s
HEARTBEAT_POLICY_MISMATCH = 8  # policy_version is not the one published for the venue's type
HEARTBEAT_POLICY_DRIFT = 16  # mismatching, and every heartbeat has been for over an hour
HEARTBEAT_AFTER_SILENCE = 32  # gap_s since the kiosk's previous heartbeat over silent_after


class StorageError(KioskError):
    """The database cannot do what was asked; the message says what and why."""


class AlreadyExists(StorageError):
    pass


class NotFound(StorageError):
    pass


class ForeignEntryId(StorageError):
    """An entry's id is held for another kiosk (sync-api: 400 with its index)."""

    def __init__(self, index: int, entry_id: str) -> None:
        super().__init__(f"entry {index}: id {entry_id} is already held for another kiosk")
        self.index = index
        self.entry_id = entry_id


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, for the audit log: a principal's name, or `cli:<user>`."""

    name: str
    role: str


@dataclass(frozen=True, slots=True)
class Principal:
    """The owner of a token. Kiosks carry their venue and its region; inspectors their region."""

    name: str
    role: Role
    region: str | None = None
    kiosk_id: str | None = None
    venue_id: str | None = None


@dataclass(frozen=True, slots=True)
class Venue:
    venue_id: str
    name: str
    region: str
    venue_type: str
    created_at: float
    unit_status: str = "open"


@dataclass(frozen=True, slots=True)
class KioskInfo:
    kiosk_id: str
    venue_id: str
    provisioned_at: float
    venue_type: str
    region: str
    unit_status: str


class EntryRow(NamedTuple):
    """One validated entry of a batch, as stored. `body` is the RFC 8785 JSON of the entry
    without its `chain`: the exact bytes the chain hashes, kept as evidence.

    A named tuple rather than a frozen dataclass: a batch makes a thousand of them and may come
    back from a worker process, and a tuple is built and unpickled several times faster."""

    position: int  # in its batch, from 0: the `index` of an error about it
    id: str  # lowercase UUID
    kiosk_id: str
    venue_id: str
    log_id: str  # lowercase UUID
    seq: int
    ts: float
    decision: str
    has_override: bool
    flags: int  # ENTRY_* bits known from the entry alone
    subject: str | None
    temperature_c: float | None
    mask: str
    code_format: str
    code_verdict: str
    code_status: str | None
    policy_version: str
    reasons: tuple[str, ...]
    chain: str
    body: str
    # The chain before this entry's that `chain` was found to follow when the batch was
    # prepared (its predecessor in the batch, or the genesis chain), or None: the writer then
    # hashes again only for a link whose predecessor is another (held, or another copy).
    checked_previous: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # The C constructor of tuple, not the Python `__new__` of a named tuple, on unpickling
        # a batch from a worker: that call was a tenth of the collector's main process.
        return (tuple.__new__, (EntryRow, tuple(self)))

    def stored_values(self, received_at: float, flags: int, link: str) -> tuple[Any, ...]:
        """The values of ENTRY_COLUMNS. Slices rather than twenty attribute reads: the writer
        does this for every entry."""
        return self[1:9] + self[10:17] + self[18:20] + (received_at, flags, link)


# The `entries` columns that an entry fills, in the order of EntryRow.stored_values.
ENTRY_COLUMNS: tuple[str, ...] = (
    "id", "kiosk_id", "venue_id", "log_id", "seq", "ts", "decision", "has_override",
    "subject", "temperature_c", "mask", "code_format", "code_verdict", "code_status",
    "policy_version", "chain", "body", "received_at", "flags", "link",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A whole batch, validated, every entry the token's own. Duplicates are not yet known.
    `rollups`: `plan.rollups(rows)`, worked out off the writer (None: the writer does it)."""

    kiosk_id: str
    venue_id: str
    received_at: float
    rows: Sequence[EntryRow]
    rollups: Rollups | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    broken_links: int = 0
    unverified_links: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatRecord:
    """A heartbeat with what the collector knew when it arrived."""

    kiosk_id: str
    venue_id: str
    received_at: float
    ts: float
    log_id: str
    last_seq: int
    backlog: int
    policy_version: str
    camera: str
    thermometer: str
    trust_age_s: float | None
    set_aside: int | None
    storage_used_ratio: float | None
    software: str | None
    published_policy_version: str
    max_trust_age_hours: float
    silent_after_s: float
    body: dict[str, Any]  # every member the kiosk sent that the spec names, sensors included


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as held, for evidence and tests. `entry()` rebuilds what the kiosk sent."""

    id: str
    kiosk_id: str
    log_id: str
    seq: int
    ts: float
    received_at: float
    link: str
    flags: int
    chain: str
    body: str

    def entry(self) -> dict[str, Any]:
        import json

        return {**json.loads(self.body), "chain": self.chain}


@dataclass(frozen=True, slots=True)
class StoredHeartbeat:
    kiosk_id: str
    received_at: float
    ts: float
    offset_s: float
    log_id: str
    last_seq: int
    backlog: int
    policy_version: str
    flags: int
    gap_s: float | None
    drift_since: float | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogSummary:
    log_id: str
    kiosk_id: str
    max_seq: int
    held: int
    runs: tuple[tuple[int, int], ...]  # (first_seq, last_seq) of each stretch of held seqs


@dataclass(frozen=True, slots=True)
class PolicyPublication:
    venue_type: str
    policy_version: str
    policy: dict[str, Any]
    max_trust_age_hours: float
    published_at: float = 0.0
    published_by: str = ""


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """What every kiosk configuration is made of, at one `generation` (bumped by every change
    that alters some kiosk's configuration)."""

    generation: int
    policies: dict[str, PolicyPublication]  # the latest publication per venue type
    trust_list: dict[str, Any] | None  # None: never published (the empty list)
    revocation_list: dict[str, Any] | None
    pseudonym_key_version: int
    pseudonym_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    audit_id: int
    at: float
    actor: str
    role: str
    action: str
    target: str | None
    detail: dict[str, Any]


class Storage(Protocol):
    """What the collector needs from a database. Both implementations pass the same tests
    (tests/test_collector_storage.py); see kiosk/collector/storage/__init__.py for the tables."""

    dialect: Literal["sqlite", "postgresql"]

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StorageError when the database cannot answer."""

    async def maintain(self, now: float) -> None:
        """Periodic upkeep (partitions ahead of time, optimiser statistics)."""

    # -- provisioning (each change audited in the same transaction) ---------------------
    async def add_venue(self, venue: Venue, *, actor: Actor) -> None: ...

    async def add_kiosk(
        self, kiosk_id: str, venue_id: str, token_hash: str, *, actor: Actor, now: float
    ) -> None: ...

    async def add_person(
        self,
        name: str,
        role: Role,
        region: str | None,
        token_hash: str,
        *,
        actor: Actor,
        now: float,
    ) -> None:
        """An inspector (with a region) or an admin (region None)."""

    async def set_token(
        self, name: str, token_hash: str | None, *, actor: Actor, now: float
    ) -> Principal:
        """Replace (rotate) or, with None, revoke the token of `name`; NotFound when unknown."""

    async def principal_by_token(self, token_hash: str) -> Principal | None: ...

    async def venue(self, venue_id: str) -> Venue | None: ...

    async def kiosk(self, kiosk_id: str) -> KioskInfo | None: ...

    # -- kiosk traffic -------------------------------------------------------------------
    async def ingest_entries(self, batch: PreparedBatch) -> IngestResult:
        """Store the new entries of `batch` in one transaction, with their chain links, log
        runs and hourly rollups. ForeignEntryId when an id is held for another kiosk (then
        nothing is stored). Returns only after the commit."""

    async def record_heartbeat(self, beat: HeartbeatRecord) -> None: ...

    # -- configuration -------------------------------------------------------------------
    async def config_generation(self) -> int: ...

    async def config_snapshot(self) -> ConfigSnapshot: ...

    async def publish_policy(self, publication: PolicyPublication, *, actor: Actor) -> None: ...

    async def put_document(
        self, name: Literal["trust_list", "revocation_list"], body: dict[str, Any],
        summary: dict[str, Any], *, actor: Actor, now: float,
    ) -> None:
        """Replace the trust list or revocation list; `summary` goes to the audit log."""

    # -- audit ---------------------------------------------------------------------------
    async def audit(
        self,
        actor: Actor,
        action: str,
        target: str | None,
        detail: dict[str, Any],
        *,
        now: float,
    ) -> None: ...

    async def audit_records(
        self, *, since: float, until: float, after_id: int, limit: int
    ) -> list[AuditRecord]: ...

    # -- reads for evidence and tests ------------------------------------------------------
    async def entries_of_kiosk(
        self, kiosk_id: str, *, since: float, until: float, limit: int
    ) -> list[StoredEntry]: ...

    async def heartbeats_of_kiosk(
        self, kiosk_id: str, *, since: float, until: float, limit: int
    ) -> list[StoredHeartbeat]: ...

    async def log_summary(self, log_id: str) -> LogSummary | None: ...

    async def count_entries(self) -> int: ...
