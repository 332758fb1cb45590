"""Entry rules per venue type: the built-in TOML files beside this module, an optional override
directory, and conversion to and from the collector's `policy` object (sync-api.md).

A policy file holds `policy_version`, `max_temperature_c`, `accepted_status`, `mask_required`,
optionally `max_test_age_hours` (left out: no test required), `deny_travel_risk` and
`max_trust_age_hours`. Unknown keys are errors, so a misspelt key cannot silently loosen a rule.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from kiosk.config import describe_validation_error
from kiosk.errors import ConfigError
from kiosk.model import Policy, Status
from kiosk.wire import Number, PolicyDoc, ShortText

VENUE_TYPES = ("general", "mall", "hospital", "elderly_care", "transport_hub")
DEFAULT_VENUE_TYPE = "general"
DEFAULT_MAX_TRUST_AGE_HOURS = 48.0

_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_STATUS_ORDER = (Status.GREEN, Status.YELLOW, Status.RED)


class PolicyFile(BaseModel):
    """One `<venue_type>.toml`."""

    model_config = ConfigDict(extra="forbid")

    policy_version: ShortText
    max_temperature_c: Annotated[Number, Field(ge=30, le=45)]
    accepted_status: Annotated[list[Literal["green", "yellow", "red"]], Field(min_length=1)]
    mask_required: StrictBool
    max_test_age_hours: Annotated[Number, Field(gt=0, le=24 * 365)] | None = None
    deny_travel_risk: StrictBool = False
    max_trust_age_hours: Annotated[Number, Field(gt=0, le=24 * 365)] = DEFAULT_MAX_TRUST_AGE_HOURS

    @field_validator("accepted_status")
    @classmethod
    def _green_accepted(cls, value: list[str]) -> list[str]:
        return _require_green(value)


def _require_green(statuses: list[str]) -> list[str]:
    # The rule has no reason code for refusing green, so a policy without it would let green
    # codes in while claiming otherwise; refuse such a policy where it is loaded instead.
    if "green" not in statuses:
        raise ValueError("must include 'green'")
    return statuses


def _statuses(values: Sequence[str]) -> frozenset[Status]:
    return frozenset(Status(value) for value in values)


def _from_file_doc(doc: PolicyFile) -> Policy:
    return Policy(
        version=doc.policy_version,
        max_temperature_c=float(doc.max_temperature_c),
        accepted_status=_statuses(doc.accepted_status),
        mask_required=doc.mask_required,
        max_test_age_hours=(
            None if doc.max_test_age_hours is None else float(doc.max_test_age_hours)
        ),
        deny_travel_risk=doc.deny_travel_risk,
        max_trust_age_hours=float(doc.max_trust_age_hours),
    )


def parse_policy_text(text: str, source: str) -> Policy:
    """A policy from the text of a policy file; ConfigError naming `source`, key and value."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        doc = PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise ConfigError(
            f"{source}: {len(problems)} policy error(s):\n  " + "\n  ".join(problems), problems
        ) from None
    return _from_file_doc(doc)


def _check_type_name(venue_type: str) -> None:
    # The name becomes a file name: keep it to plain lowercase words, never a path.
    if not _TYPE_NAME.match(venue_type):
        raise ConfigError(
            f"venue type {venue_type!r} is not a valid name (lowercase letters, digits, _)"
        )


def load_policy(venue_type: str, override_dir: Path | None = None) -> Policy:
    """The policy of `venue_type`: `<override_dir>/<venue_type>.toml` when that file exists,
    else the built-in one. An override may also define a venue type with no built-in policy."""
    _check_type_name(venue_type)
    name = f"{venue_type}.toml"
    if override_dir is not None:
        path = override_dir / name
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read it ({exc})") from None
            return parse_policy_text(text, str(path))
    builtin = resources.files(__name__).joinpath(name)
    if not builtin.is_file():
        where = f" and none in {override_dir}" if override_dir is not None else ""
        raise ConfigError(
            f"no policy for venue type {venue_type!r}{where}; "
            f"built-in types: {', '.join(VENUE_TYPES)}"
        )
    return parse_policy_text(builtin.read_text(encoding="utf-8"), f"built-in policy {name}")


def policy_from_doc(
    doc: PolicyDoc | Mapping[str, Any], version: str, max_trust_age_hours: float
) -> Policy:
    """A policy from the collector's `policy` object, its `policy_version` and the
    configuration's `max_trust_age_hours`; ConfigError when the object is not a valid policy."""
    try:
        parsed = doc if isinstance(doc, PolicyDoc) else PolicyDoc.model_validate(dict(doc))
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise ConfigError(
            f"policy {version!r}: {len(problems)} error(s):\n  " + "\n  ".join(problems), problems
        ) from None
    try:
        _require_green(list(parsed.accepted_status))
    except ValueError as exc:
        raise ConfigError(
            f"policy {version!r}: accepted_status = {parsed.accepted_status!r}: {exc}"
        ) from None
    if not version or len(version) > 64:
        raise ConfigError(f"policy_version = {version!r}: must be 1 to 64 characters")
    if not max_trust_age_hours > 0:
        raise ConfigError(f"max_trust_age_hours = {max_trust_age_hours!r}: must be above 0")
    return Policy(
        version=version,
        max_temperature_c=float(parsed.max_temperature_c),
        accepted_status=_statuses(list(parsed.accepted_status)),
        mask_required=parsed.mask_required,
        max_test_age_hours=(
            None if parsed.max_test_age_hours is None else float(parsed.max_test_age_hours)
        ),
        deny_travel_risk=parsed.deny_travel_risk,
        max_trust_age_hours=float(max_trust_age_hours),
    )


def policy_to_doc(policy: Policy) -> dict[str, Any]:
    """The sync-api `policy` object of `policy` (its version and trust age travel beside it)."""
    return {
        "max_temperature_c": policy.max_temperature_c,
        "accepted_status": [s.value for s in _STATUS_ORDER if s in policy.accepted_status],
        "mask_required": policy.mask_required,
        "max_test_age_hours": policy.max_test_age_hours,
        "deny_travel_risk": policy.deny_travel_risk,
    }
