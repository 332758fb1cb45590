"""Who is in the demo: two venues of two districts of harbin, a kiosk at each, their visitors,
and the inspector who looks at both. Plain data; the other demo modules act it out.

`daowai-0007` misbehaves: its thermometer is stuck (the same reading for everyone, so a fever
goes unnoticed) and its attendant lets in, through the kiosk's override, whoever the door stops
for not wearing a mask. `nangang-0001` does everything right. Daowai's visitors come quickly, so
its kiosk makes the 20 readings that show a stuck thermometer well within a 20 s demo.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.collector.scenario import CLEAN_VENUE, MISBEHAVING_VENUE

CITY = "harbin"
INSPECTOR = "inspector-harbin"
ATTENDANT = "attendant-7"
ATTENDANT_PIN = "2468"  # the daowai attendant's PIN for overrides (a throwaway demo value)
OVERRIDE_NOTE = "regular customer, forgot the mask"
STUCK_AT_C = 36.6


@dataclass(frozen=True)
class Visitor:
    kind: str  # a kiosk.demo.samples kind
    celsius: float  # what the thermometer reads, unless it is stuck
    mask: str  # on | off
    story: str


@dataclass(frozen=True)
class Unit:
    """A venue with one kiosk, its visitors (in turn, again and again) and its ways."""

    venue_id: str
    name: str
    region: str
    kiosk_id: str
    visitors: tuple[Visitor, ...]
    fps: float  # camera frames per second
    blank_frames: int  # frames without a code after each visitor's
    stuck_thermometer: bool = False
    waves_through: str | None = None  # a deny reason its attendant overrides

    @property
    def readings(self) -> list[float]:
        """The simulated thermometer's readings, in turn."""
        if self.stuck_thermometer:
            return [STUCK_AT_C]
        return [visitor.celsius for visitor in self.visitors]

    @property
    def masks(self) -> list[str]:
        return [visitor.mask for visitor in self.visitors]

    @property
    def visitors_per_second(self) -> float:
        return self.fps / (1 + self.blank_frames)

    @property
    def misbehaving(self) -> bool:
        return self.stuck_thermometer or self.waves_through is not None


# Every frame shows a visitor (no empty frames between them): a kiosk short of CPU then spends
# none of it on frames without a code, and the decoders' slow fallback, which only runs where
# the fast one finds nothing, never runs while visitors come.
DAOWAI = Unit(
    venue_id=MISBEHAVING_VENUE,
    name="Daowai Noodle House",
    region=f"{CITY}/daowai",
    kiosk_id=f"k-{MISBEHAVING_VENUE}-a",
    visitors=(
        Visitor("green", STUCK_AT_C, "on", "green code"),
        Visitor("yellow", STUCK_AT_C, "on", "yellow code"),
        Visitor("green", STUCK_AT_C, "off", "green code, no mask (the attendant lets them in)"),
        Visitor("green", STUCK_AT_C, "on", "green code, a fever the stuck thermometer misses"),
        Visitor("forged", STUCK_AT_C, "on", "forged code"),
        Visitor("green", STUCK_AT_C, "on", "green code"),
        Visitor("revoked", STUCK_AT_C, "on", "revoked code"),
        Visitor("expired", STUCK_AT_C, "on", "expired code"),
    ),
    fps=4.0,
    blank_frames=0,
    stuck_thermometer=True,
    waves_through="mask_off",
)

NANGANG = Unit(
    venue_id=CLEAN_VENUE,
    name="Nangang Library",
    region=f"{CITY}/nangang",
    kiosk_id=f"k-{CLEAN_VENUE}-a",
    visitors=(
        Visitor("green", 36.5, "on", "green code"),
        Visitor("red", 36.4, "on", "red code"),
        Visitor("green", 38.3, "on", "green code, fever"),
        Visitor("green", 36.7, "off", "green code, no mask"),
        Visitor("unknown", 36.6, "on", "a QR code that is no health code"),
        Visitor("green", 36.8, "on", "green code"),
        Visitor("green", 36.3, "on", "green code"),
    ),
    fps=1.5,
    blank_frames=0,
)

UNITS: tuple[Unit, ...] = (DAOWAI, NANGANG)
