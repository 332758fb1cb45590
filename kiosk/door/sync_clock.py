"""The kiosk's clock offset to the collector (collector minus kiosk, integer ms), measured at every
exchange from the answer's `Date` header.

Why `Date`: every HTTP server sends it (aiohttp does, and so does any proxy in front), so it needs
nothing beyond the spec and works with another vendor's collector. Its one-second resolution is
the catch: a single reading only says that, at some local moment between sending the request and
receiving the answer, the collector's clock read between D and D + 1 s. So each exchange gives an
interval that surely holds the offset:

    D - received_at  <  offset  <  D + 1 - sent_at

and readings taken at different sub-second phases narrow each other down when intersected (the
same idea as NTP's interval intersection). After a handful of exchanges the estimate is good to a
few milliseconds plus half the round trip, against the half-second a lone `Date` allows. Readings
older than `window_s` are forgotten (clocks drift), and a reading that contradicts the others
(the kiosk's or the collector's clock was stepped) starts the estimate afresh from itself.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

DATE_RESOLUTION_S = 1.0


@dataclass(frozen=True, slots=True)
class _Reading:
    low: float
    high: float
    at: float  # monotonic time of the reading, to forget old ones


def parse_http_date(value: str | None) -> float | None:
    """Unix seconds of an HTTP `Date` header (IMF-fixdate and the older forms), or None."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means "-0000"
        return None
    return moment.timestamp()


class OffsetEstimator:
    """Collects (sent, received, server Date) readings; `offset_ms()` is the current estimate."""

    def __init__(
        self,
        *,
        window_s: float = 600.0,
        keep: int = 32,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._readings: deque[_Reading] = deque(maxlen=keep)
        self._monotonic = monotonic

    def observe(self, *, server_date: float, sent_at: float, received_at: float) -> None:
        """One exchange: local wall times just before sending and just after the answer's head
        arrived, and the answer's `Date` (whole seconds)."""
        if received_at < sent_at:  # the local clock stepped back mid-exchange: no information
            return
        reading = _Reading(
            low=server_date - received_at,
            high=server_date + DATE_RESOLUTION_S - sent_at,
            at=self._monotonic(),
        )
        horizon = reading.at - self._window_s
        while self._readings and self._readings[0].at < horizon:
            self._readings.popleft()
        low, high = self._bounds()
        if self._readings and (reading.low > high or reading.high < low):
            self._readings.clear()  # a clock was stepped: the older readings no longer hold
        self._readings.append(reading)

    def _bounds(self) -> tuple[float, float]:
        low = max((r.low for r in self._readings), default=float("-inf"))
        high = min((r.high for r in self._readings), default=float("inf"))
        return low, high

    def offset_ms(self) -> int | None:
        """The middle of what every recent reading allows, in whole ms; None before any."""
        if not self._readings:
            return None
        low, high = self._bounds()
        return round((low + high) / 2 * 1000)

    def uncertainty_ms(self) -> int | None:
        """Half the width of the interval: how far off `offset_ms()` may be at most."""
        if not self._readings:
            return None
        low, high = self._bounds()
        return round((high - low) / 2 * 1000)
