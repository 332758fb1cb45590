"""The unit page's chart, entries and denials per hour, as geometry for an inline SVG drawn by
the template (no script, no image request; the numbers are also in a table beside it).

Pure: hourly counts in, bars, grid lines and labels out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

HOUR_S = 3600
CHART_HOURS = 24

WIDTH = 720
HEIGHT = 250
LEFT = 46  # room for the y labels
RIGHT = 8
TOP = 12
BOTTOM = 28  # room for the x labels


@dataclass(frozen=True, slots=True)
class HourCount:
    hour: float  # start of the hour, Unix seconds
    allowed: int
    denied: int

    @property
    def label(self) -> str:
        return datetime.fromtimestamp(self.hour, tz=UTC).strftime("%H:00")

    @property
    def day_label(self) -> str:
        return datetime.fromtimestamp(self.hour, tz=UTC).strftime("%m-%d %H:00")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    kind: str  # "allowed" or "denied"
    hour_label: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class XLabel:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    right_edge: int
    baseline: float
    bars: list[Bar]
    ticks: list[Tick]
    x_labels: list[XLabel]
    hours: list[HourCount]
    total_allowed: int
    total_denied: int


def chart_hours(until: float) -> list[float]:
    """The starts of the 24 whole hours that end at `until` rounded up to an hour."""
    end = math.ceil(until / HOUR_S) * HOUR_S
    return [end - (CHART_HOURS - i) * HOUR_S for i in range(CHART_HOURS)]


def hour_counts(
    until: float, counts: Mapping[float, tuple[int, int]]
) -> list[HourCount]:
    """One HourCount per hour of the chart, from (allowed, denied) by hour start (missing: 0)."""
    return [HourCount(h, *counts.get(h, (0, 0))) for h in chart_hours(until)]


def tick_step(largest: int) -> int:
    """A whole step of 1, 2, 2.5 or 5 times a power of ten such that four steps reach
    `largest`, so the grid lines fall on round numbers."""
    wanted = max(largest, 1) / 4
    power: int = 10 ** max(0, math.floor(math.log10(wanted)))
    for factor in (1.0, 2.0, 2.5, 5.0):
        step = factor * power
        if step >= wanted and step == int(step):
            return int(step)
    return 10 * power


def build_chart(hours: Sequence[HourCount]) -> Chart:
    step = tick_step(max((max(h.allowed, h.denied) for h in hours), default=0))
    top_value = 4 * step
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    slot = plot_width / max(len(hours), 1)
    bar_width = slot * 0.36
    bars: list[Bar] = []
    x_labels: list[XLabel] = []
    for index, hour in enumerate(hours):
        x0 = LEFT + index * slot + slot * 0.12
        for offset, kind, value in ((0.0, "allowed", hour.allowed), (1.0, "denied", hour.denied)):
            height = plot_height * value / top_value
            bars.append(
                Bar(
                    round(x0 + offset * bar_width, 2),
                    round(baseline - height, 2),
                    round(bar_width, 2),
                    round(height, 2),
                    value,
                    kind,
                    hour.label,
                )
            )
        if index % 3 == 0:
            x_labels.append(XLabel(round(LEFT + index * slot + slot / 2, 2), hour.label))
    ticks = [
        Tick(round(baseline - plot_height * n / 4, 2), str(step * n)) for n in range(5)
    ]
    return Chart(
        WIDTH,
        HEIGHT,
        LEFT,
        WIDTH - RIGHT,
        baseline,
        bars,
        ticks,
        x_labels,
        list(hours),
        sum(h.allowed for h in hours),
        sum(h.denied for h in hours),
    )
