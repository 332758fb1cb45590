"""The sync API's data on the wire (sync-api.md): entries, heartbeats, kiosk configuration.

Pure: schemas, the hash chain and time formatting. Both wings use it, so an entry the kiosk writes
is checked by exactly the rules the collector applies.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from kiosk.canonical import canonical_bytes

MAX_BATCH_ENTRIES = 1000
MAX_BODY_BYTES = 1024 * 1024
GENESIS_CHAIN = "0" * 64

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
HEX64_PATTERN = r"^[0-9a-f]{64}$"
REASON_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"
RFC3339_PATTERN = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)

Identifier = Annotated[StrictStr, Field(pattern=ID_PATTERN)]
UuidText = Annotated[StrictStr, Field(pattern=UUID_PATTERN)]
Hex64 = Annotated[StrictStr, Field(pattern=HEX64_PATTERN)]
ShortText = Annotated[StrictStr, Field(min_length=1, max_length=64)]
Number = StrictInt | StrictFloat
ReasonCode = Annotated[StrictStr, Field(pattern=REASON_PATTERN)]

CodeVerdict = Literal[
    "valid",
    "not_vhc",
    "malformed",
    "unknown_key",
    "bad_signature",
    "not_yet_valid",
    "expired",
    "revoked",
    "unknown_format",
    "none",
]
CODE_VERDICTS = frozenset(get_args(CodeVerdict))
# Bounds pydantic checks in its core; the 0.1 °C rounding needs a validator of ours.
Celsius = Annotated[Number, Field(ge=0, le=50, allow_inf_nan=False)]


# The spec's own form (2022-03-05T17:06:40.123Z), which every entry has: one match, one parse.
_SPEC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 time; ValueError when it is not one."""
    if _SPEC_TIME.fullmatch(text):
        return datetime.fromisoformat(text[:-1] + "+00:00").timestamp()
    if not RFC3339_PATTERN.match(text):
        raise ValueError("not an RFC 3339 time such as 2022-03-05T17:06:40.123Z")
    normal = text.upper().replace("Z", "+00:00")
    head, sep, rest = normal.partition(".")
    if sep:  # datetime takes at most 6 fractional digits
        digits = re.match(r"\d+", rest)
        assert digits is not None
        frac = digits.group(0)
        normal = f"{head}.{frac[:6].ljust(6, '0')}{rest[len(frac) :]}"
    return datetime.fromisoformat(normal).timestamp()


def format_rfc3339(unix_seconds: float) -> str:
    """UTC with milliseconds and a Z, as the spec writes times: 2022-03-05T17:06:40.123Z."""
    millis = round(unix_seconds * 1000)
    moment = datetime.fromtimestamp(millis // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def new_uuid7(unix_ms: int | None = None) -> str:
    """A time-ordered UUID (RFC 9562 version 7), so the collector's index stays append-only."""
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def canonical_json(entry_without_chain: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON (37.0 becomes 37), the bytes the chain hashes; a ValueError
    (kiosk.canonical.CanonicalizationError) for a value that has none, such as NaN."""
    return canonical_bytes(dict(entry_without_chain))


def chain_after(previous_chain: str, unchained: bytes) -> str:
    """The `chain` of an entry whose canonical JSON (without `chain`) is `unchained`: SHA-256 of
    the previous chain's hex and those bytes."""
    digest = hashlib.sha256(previous_chain.encode("ascii"))
    digest.update(unchained)
    return digest.hexdigest()


def chain_link(previous_chain: str, entry: Mapping[str, Any]) -> str:
    """The `chain` of `entry`: SHA-256 of the previous chain's hex and this entry's canonical JSON.

    `entry` may hold a `chain` member; it is left out, as the spec says.
    """
    return chain_after(
        previous_chain,
        canonical_json({key: value for key, value in entry.items() if key != "chain"}),
    )


def chained_body(previous_chain: str, entry: Mapping[str, Any]) -> tuple[str, bytes]:
    """The `chain` of `entry` (which has none yet) and the RFC 8785 form of the entry with it.

    One canonical form serves both: `chain` sorts before every other member of an entry, so
    the chained form is the unchained one with that member put in front."""
    if "chain" in entry or not entry or min(entry) < "chain":
        raise ValueError("chained_body takes an entry without its chain member")
    unchained = canonical_json(entry)
    chain = chain_after(previous_chain, unchained)
    return chain, b'{"chain":"' + chain.encode("ascii") + b'",' + unchained[1:]


class Override(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    by: ShortText
    note: Annotated[StrictStr, Field(max_length=200)]
    entry_id: UuidText


class Entry(BaseModel):
    """One decision at a door, as sent to `POST /api/v1/entries`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: UuidText
    log_id: UuidText
    seq: Annotated[StrictInt, Field(ge=1, le=2**62)]
    chain: Hex64
    kiosk_id: Identifier
    venue_id: Identifier
    ts: StrictStr
    clock_offset_ms: Annotated[StrictInt, Field(ge=-(2**53), le=2**53)] | None
    code_format: Literal["vhc1", "dcc", "unknown", "none"]
    code_verdict: CodeVerdict
    code_status: Literal["green", "yellow", "red"] | None
    subject: Hex64 | None
    subject_key_version: Annotated[StrictInt, Field(ge=0, le=2**31)] | None
    temperature_c: Celsius | None
    mask: Literal["on", "off", "unchecked"]
    decision: Literal["allow", "deny"]
    reasons: Annotated[list[ReasonCode], Field(max_length=32)]
    override: Override | None
    policy_version: ShortText

    @field_validator("ts")
    @classmethod
    def _ts_is_rfc3339(cls, value: str) -> str:
        parse_rfc3339(value)
        return value

    @field_validator("temperature_c")
    @classmethod
    def _temperature(cls, value: float | None) -> float | None:
        if value is not None and abs(round(value, 1) - value) > 1e-9:
            raise ValueError("must be rounded to 0.1")
        return value

    @property
    def ts_unix(self) -> float:
        return parse_rfc3339(self.ts)


class EntryBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entries: Annotated[list[dict[str, Any]], Field(max_length=MAX_BATCH_ENTRIES)]


class Sensors(BaseModel):
    model_config = ConfigDict(extra="allow")

    camera: Literal["ok", "fault"]
    thermometer: Literal["ok", "fault"]


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kiosk_id: Identifier
    ts: StrictStr
    log_id: UuidText
    last_seq: Annotated[StrictInt, Field(ge=0, le=2**62)]
    backlog: Annotated[StrictInt, Field(ge=0, le=2**62)]
    policy_version: ShortText
    sensors: Sensors
    trust_age_s: Annotated[Number, Field(ge=0)] | None = None
    set_aside: Annotated[StrictInt, Field(ge=0)] | None = None
    storage_used_ratio: Annotated[Number, Field(ge=0, le=1)] | None = None
    software: Annotated[StrictStr, Field(max_length=128)] | None = None

    @field_validator("ts")
    @classmethod
    def _ts_is_rfc3339(cls, value: str) -> str:
        parse_rfc3339(value)
        return value

    @field_validator("trust_age_s", "storage_used_ratio")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class PolicyDoc(BaseModel):
    """The `policy` object of the kiosk configuration and of `PUT /api/v1/policy/<type>`."""

    model_config = ConfigDict(extra="ignore")

    max_temperature_c: Annotated[Number, Field(ge=30, le=45)]
    accepted_status: list[Literal["green", "yellow", "red"]]
    mask_required: StrictBool
    max_test_age_hours: Annotated[Number, Field(gt=0, le=24 * 365)] | None = None
    deny_travel_risk: StrictBool = False


class PolicyPublish(PolicyDoc):
    policy_version: ShortText


class PseudonymKey(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Annotated[StrictInt, Field(ge=0)]
    key: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]


class KioskConfigDoc(BaseModel):
    """`GET /api/v1/kiosk/config`: everything a kiosk needs to decide offline."""

    model_config = ConfigDict(extra="ignore")

    kiosk_id: Identifier
    venue_id: Identifier
    venue_type: ShortText
    policy_version: ShortText
    policy: PolicyDoc
    trust_list: dict[str, Any]
    revocation_list: dict[str, Any]
    pseudonym_key: PseudonymKey
    max_trust_age_hours: Annotated[Number, Field(gt=0)]
    unit_status: Literal["open", "closed"] = "open"


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The one error shape of the API: {"error", "detail"} plus `index` where the spec says."""
    return {"error": code, "detail": detail, **extra}
