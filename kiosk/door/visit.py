"""Which inputs belong to which visit: a pure state machine over codes, readings and mask states.

No I/O and no clock: every call is given `now`. The app feeds it what the camera, thermometer and
mask detector report, calls `due(now)` often, decides each visit it returns, and reports back with
`record_decision`.

- A visit opens when a code is read. Codes in one frame are separate visits, in frame order. A
  code is kept in memory only as a SHA-256 of its text (`code_key`), never persisted.
- A code seen again while its visit is open, or while its visit is being decided (between `due`
  and `record_decision`), is the same visit. After an allow, the code opens no visit for
  `repeat_after_s`; after a deny its next sighting opens a new visit at once.
- A reading or mask state pairs with the oldest open visit that lacks one; with none to take it,
  it is held for `pairing_window_s` and replayed, oldest first, against visits opened meanwhile
  (people often measure first and show their code second).
- A temperature is rounded to 0.1 °C (half away from zero, through Decimal so that 36.65 becomes
  36.7 as a person reading it would expect) before anything else, so the logged value is the value
  decided on. A reading outside `plausible` asks the person to measure again; it stays the visit's
  reading only if no plausible one arrives before the window closes.
- A reading, or a mask state, that no code claims within the window is dropped: a temperature
  alone says nobody was turned away or let in, and logging it would invent visits.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

from kiosk.model import CodeResult, Mask, VisitFacts

# Beyond this many open visits new codes are ignored: a frame full of QR codes (a poster, a
# sheet of printouts) must not grow memory without bound. No real door holds this many people.
MAX_OPEN_VISITS = 32

# The wire format accepts 0–50 °C; an implausible reading outside it is noted but not kept.
_LOGGABLE = (0.0, 50.0)
_TENTH = Decimal("0.1")


class TemperatureOutcome(StrEnum):
    PAIRED = "paired"  # taken by an open visit
    HELD = "held"  # kept for a code shown within the window
    MEASURE_AGAIN = "measure_again"  # implausible: the screen asks for another reading


def round_celsius(celsius: float) -> float | None:
    """`celsius` rounded to 0.1, half away from zero; None when it is not a finite number."""
    if not math.isfinite(celsius):
        return None
    try:
        rounded = Decimal(str(celsius)).quantize(_TENTH, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return None
    return float(rounded)


def code_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class ReadyVisit:
    """A visit whose inputs are in (or whose window closed), ready for the rule."""

    visit_id: int
    opened_at: float
    code_key: str
    code: CodeResult
    temperature_c: float | None
    temperature_implausible: bool
    mask: Mask
    # When the camera delivered the frame whose code opened the visit (the camera's monotonic
    # clock): only for measuring the door's delay from camera to screen (bench/door.py).
    frame_at: float | None = None

    def facts(self, *, trust_updated_at: float | None, venue_closed: bool) -> VisitFacts:
        return VisitFacts(
            code=self.code,
            temperature_c=self.temperature_c,
            temperature_implausible=self.temperature_implausible,
            mask=self.mask,
            trust_updated_at=trust_updated_at,
            venue_closed=venue_closed,
        )


@dataclass(slots=True)
class _Reading:
    at: float
    celsius: float | None  # rounded; None when not a loggable number
    plausible: bool


@dataclass(slots=True)
class _Open:
    visit_id: int
    opened_at: float
    code_key: str
    code: CodeResult
    temperature_c: float | None = None
    temperature_plausible: bool = False
    temperature_implausible: bool = False
    mask: Mask | None = None
    frame_at: float | None = None

    def take_reading(self, reading: _Reading) -> None:
        if reading.plausible:
            self.temperature_c = reading.celsius
            self.temperature_plausible = True
            self.temperature_implausible = False
        else:
            # Keep the latest implausible reading: the best we have until a plausible one comes.
            self.temperature_c = reading.celsius
            self.temperature_implausible = True


class VisitTracker:
    def __init__(
        self,
        pairing_window_s: float = 10.0,
        repeat_after_s: float = 30.0,
        temperature_required: bool = True,
        mask_required: bool = True,
        plausible: tuple[float, float] = (34.0, 42.5),
    ) -> None:
        if pairing_window_s <= 0 or repeat_after_s < 0:
            raise ValueError("pairing_window_s must be above 0 and repeat_after_s not below 0")
        if not plausible[0] < plausible[1]:
            raise ValueError(f"plausible range {plausible!r} is empty")
        self.pairing_window_s = pairing_window_s
        self.repeat_after_s = repeat_after_s
        self.temperature_required = temperature_required
        self.mask_required = mask_required
        self.plausible = plausible
        self._next_id = 1
        self._open: list[_Open] = []
        self._readings: deque[_Reading] = deque()
        self._masks: deque[tuple[float, Mask]] = deque()
        # code_key -> when the decision was handed out; a NotRecorded decision never reports
        # back, so this lapses after one window and the code may then try again.
        self._deciding: dict[str, float] = {}
        self._suppressed: dict[str, float] = {}  # code_key -> end of repeat suppression

    # -- inputs --------------------------------------------------------------------------

    def on_codes(
        self,
        codes: Sequence[tuple[str, CodeResult]],
        now: float,
        *,
        frame_at: float | None = None,
    ) -> int:
        """Codes read in one frame; returns how many visits they opened. `frame_at` (when the
        camera delivered that frame) is carried to the visit's ReadyVisit as is."""
        self._expire(now)
        opened = 0
        for text, result in codes:
            key = code_key(text)
            if self._is_busy(key, now) or len(self._open) >= MAX_OPEN_VISITS:
                continue
            visit = _Open(
                visit_id=self._next_id,
                opened_at=now,
                code_key=key,
                code=result,
                frame_at=frame_at,
            )
            self._next_id += 1
            self._open.append(visit)
            opened += 1
            self._replay_held(visit)
        return opened

    def on_temperature(self, celsius: float, now: float) -> TemperatureOutcome:
        self._expire(now)
        rounded = round_celsius(celsius)
        plausible = rounded is not None and self.plausible[0] <= rounded <= self.plausible[1]
        loggable = rounded is not None and _LOGGABLE[0] <= rounded <= _LOGGABLE[1]
        reading = _Reading(at=now, celsius=rounded if loggable else None, plausible=plausible)
        target = next((v for v in self._open if not v.temperature_plausible), None)
        if target is not None:
            target.take_reading(reading)
        else:
            self._readings.append(reading)
        if not plausible:
            return TemperatureOutcome.MEASURE_AGAIN
        return TemperatureOutcome.PAIRED if target is not None else TemperatureOutcome.HELD

    def on_mask(self, mask: Mask, now: float) -> None:
        self._expire(now)
        if mask is Mask.UNCHECKED:  # the detector saw no face: nothing to pair
            return
        target = next((v for v in self._open if v.mask is None), None)
        if target is not None:
            target.mask = mask
        else:
            self._masks.append((now, mask))

    # -- decisions -----------------------------------------------------------------------

    def due(self, now: float) -> list[ReadyVisit]:
        """Visits ready to decide, in the order they opened; they leave the open set."""
        self._expire(now)
        ready: list[ReadyVisit] = []
        still_open: list[_Open] = []
        for visit in self._open:
            if self._complete(visit) or now - visit.opened_at >= self.pairing_window_s:
                self._deciding[visit.code_key] = now
                ready.append(
                    ReadyVisit(
                        visit_id=visit.visit_id,
                        opened_at=visit.opened_at,
                        code_key=visit.code_key,
                        code=visit.code,
                        temperature_c=visit.temperature_c,
                        temperature_implausible=(
                            visit.temperature_implausible and not visit.temperature_plausible
                        ),
                        mask=visit.mask if visit.mask is not None else Mask.UNCHECKED,
                        frame_at=visit.frame_at,
                    )
                )
            else:
                still_open.append(visit)
        self._open = still_open
        return ready

    def record_decision(self, visit: ReadyVisit, allowed: bool, now: float) -> None:
        """The decision on `visit` is recorded; after an allow its code rests `repeat_after_s`."""
        self._deciding.pop(visit.code_key, None)
        if allowed:
            self._suppressed[visit.code_key] = now + self.repeat_after_s

    def next_deadline(self) -> float | None:
        """When the oldest open visit's window closes (None: no visit is open)."""
        if not self._open:
            return None
        return min(v.opened_at for v in self._open) + self.pairing_window_s

    @property
    def open_visits(self) -> int:
        return len(self._open)

    # -- internals -----------------------------------------------------------------------

    def _complete(self, visit: _Open) -> bool:
        if self.temperature_required and not visit.temperature_plausible:
            return False
        return not (self.mask_required and visit.mask is None)

    def _is_busy(self, key: str, now: float) -> bool:
        if any(v.code_key == key for v in self._open):
            return True
        if key in self._deciding:
            return True
        return self._suppressed.get(key, -math.inf) > now

    def _replay_held(self, visit: _Open) -> None:
        # Held inputs are replayed oldest first, as if they had arrived now: readings until the
        # visit has a plausible one (implausible ones on the way are its fallback), the rest
        # stay held for the next visit.
        while self._readings and not visit.temperature_plausible:
            visit.take_reading(self._readings.popleft())
        if self._masks:
            # A detector reports the same face many times; the newest state is the one nearest
            # to the code being shown, and the older ones describe that same moment.
            visit.mask = self._masks[-1][1]
            self._masks.clear()

    def _expire(self, now: float) -> None:
        horizon = now - self.pairing_window_s
        while self._readings and self._readings[0].at < horizon:
            self._readings.popleft()
        while self._masks and self._masks[0][0] < horizon:
            self._masks.popleft()
        for key in [k for k, at in self._deciding.items() if at < horizon]:
            del self._deciding[key]
        for key in [k for k, until in self._suppressed.items() if until <= now]:
            del self._suppressed[key]
