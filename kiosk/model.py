"""Plain data shared by every part of kiosk: code verdicts, policy, visits and decisions.

Nothing here does I/O or reads the clock; the door wing and the collector wing both build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class CodeFormat(StrEnum):
    VHC1 = "vhc1"
    DCC = "dcc"
    UNKNOWN = "unknown"  # a QR code that no registered format claims
    NONE = "none"  # no code was read


class Verdict(StrEnum):
    """Verdicts of health-code.md, in the order a verifier checks them, plus the registry's own."""

    NOT_VHC = "not_vhc"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    VALID = "valid"
    UNKNOWN_FORMAT = "unknown_format"
    NONE = "none"


class Status(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


class Mask(StrEnum):
    ON = "on"
    OFF = "off"
    UNCHECKED = "unchecked"


class Outcome(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Reason(StrEnum):
    """Why a visit was denied. The order here is the order reasons are listed in an entry."""

    VENUE_CLOSED = "venue_closed"
    TRUST_STALE = "trust_stale"
    CODE_MISSING = "code_missing"
    CODE_UNKNOWN_FORMAT = "code_unknown_format"
    CODE_MALFORMED = "code_malformed"
    CODE_UNKNOWN_KEY = "code_unknown_key"
    CODE_BAD_SIGNATURE = "code_bad_signature"
    CODE_NOT_YET_VALID = "code_not_yet_valid"
    CODE_EXPIRED = "code_expired"
    CODE_REVOKED = "code_revoked"
    STATUS_YELLOW = "status_yellow"
    STATUS_RED = "status_red"
    TEST_MISSING = "test_missing"
    TEST_TOO_OLD = "test_too_old"
    TRAVEL_RISK = "travel_risk"
    FEVER = "fever"
    TEMPERATURE_MISSING = "temperature_missing"
    TEMPERATURE_IMPLAUSIBLE = "temperature_implausible"
    MASK_OFF = "mask_off"
    MASK_UNCHECKED = "mask_unchecked"


@dataclass(frozen=True, slots=True)
class Claims:
    """The claims of a health code whose payload could be read (VHC1 names; other formats map)."""

    iss: str
    sub: str
    sta: Status
    iat: int
    exp: int
    nat: int | None = None
    trv: bool | None = None


@dataclass(frozen=True, slots=True)
class CodeResult:
    """What verifying one QR text gave: its format, the verdict, and the claims when readable."""

    format: CodeFormat
    verdict: Verdict
    claims: Claims | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A venue type's entry rule, as the collector publishes it (sync-api.md `policy`)."""

    version: str = "default-1"
    max_temperature_c: float = 37.3
    accepted_status: frozenset[Status] = frozenset({Status.GREEN})
    mask_required: bool = True
    max_test_age_hours: float | None = None
    deny_travel_risk: bool = False
    max_trust_age_hours: float = 48.0


@dataclass(frozen=True, slots=True)
class VisitFacts:
    """Everything the rule needs about one visit, gathered by the door's state machine.

    `temperature_c` is already rounded to 0.1 °C; `temperature_implausible` is true when the only
    readings in the window were outside the plausible range. `trust_updated_at` is the Unix time the
    trust and revocation lists were last refreshed (None: never).
    """

    code: CodeResult | None
    temperature_c: float | None
    temperature_implausible: bool = False
    mask: Mask = Mask.UNCHECKED
    trust_updated_at: float | None = None
    venue_closed: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reasons: tuple[Reason, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW
