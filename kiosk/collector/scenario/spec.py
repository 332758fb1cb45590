"""A scenario as plain data: a city's venues, kiosks, inspectors and published policies, and
what its kiosks sent, in the compact form of kiosk/collector/scenario/__init__.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from kiosk.findings import DEFAULT_WINDOW_S, SILENT_AFTER_S
from kiosk.wire import parse_rfc3339


def _moment(value: Any) -> Any:
    return parse_rfc3339(value) if isinstance(value, str) else value


Moment = Annotated[float, BeforeValidator(_moment)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VenueSpec(_Spec):
    venue_id: str
    name: str = ""
    region: str
    type: str = "general"


class KioskSpec(_Spec):
    kiosk_id: str
    venue_id: str
    provisioned_at: Moment


class InspectorSpec(_Spec):
    name: str
    region: str


class PolicySpec(_Spec):
    """A policy published for a venue type; `changes` alter the built-in policy of the type."""

    venue_type: str = "general"
    policy_version: str
    published_at: Moment
    changes: dict[str, Any] = Field(default_factory=dict)


class EntrySpec(_Spec):
    id: str
    kiosk: str
    ts: Moment
    repeat: Annotated[int, Field(ge=1)] = 1
    every_s: float = 60.0
    received_at: Moment | None = None
    log: str = "main"
    decision: Literal["allow", "deny"] = "allow"
    subject: str | None = ""  # "": a person of its own (the entry's label); None: no subject
    code_format: Literal["vhc1", "dcc", "unknown", "none"] = "vhc1"
    code_status: Literal["green", "yellow", "red"] | None = "green"
    temperature_c: float | None = 36.6
    temperatures: list[float] | None = None  # cycled over the repeats
    mask: Literal["on", "off", "unchecked"] = "on"
    reasons: list[str] | None = None
    override: bool | str = False  # true, or the label of the deny it overrides
    policy_version: str | None = None
    clock_offset_ms: int | None = 0
    sent: bool = True
    chain: Literal["ok", "broken"] = "ok"


class HeartbeatSpec(_Spec):
    kiosk: str
    received_at: Moment
    repeat: Annotated[int, Field(ge=1)] = 1
    every_s: float = 60.0
    behind_s: float = 0.0
    log: str = "main"
    last_seq: int | None = None
    backlog: int = 0
    policy_version: str | None = None
    thermometer: Literal["ok", "fault"] = "ok"
    camera: Literal["ok", "fault"] = "ok"
    trust_age_s: float | None = 600.0


class WindowSpec(_Spec):
    since: Moment
    until: Moment


class Scenario(_Spec):
    description: str = ""
    now: Moment
    window: WindowSpec | None = None
    region: str = ""  # the region asked for; "" is the inspector's own
    silent_after_s: float = SILENT_AFTER_S
    venues: list[VenueSpec]
    kiosks: list[KioskSpec]
    inspectors: list[InspectorSpec] = Field(default_factory=list)
    policies: list[PolicySpec] = Field(default_factory=list)
    entries: list[EntrySpec] = Field(default_factory=list)
    heartbeats: list[HeartbeatSpec] = Field(default_factory=list)
    expected: dict[str, Any] | None = None

    @property
    def since(self) -> float:
        return self.window.since if self.window else self.now - DEFAULT_WINDOW_S

    @property
    def until(self) -> float:
        return self.window.until if self.window else self.now


def load_scenario(path: Path) -> Scenario:
    return Scenario.model_validate(json.loads(path.read_text(encoding="utf-8")))
