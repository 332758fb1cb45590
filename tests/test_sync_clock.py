"""The clock offset from `Date` headers: one reading is only good to a second; readings at
different sub-second phases narrow it down; a stepped clock starts it afresh."""

from __future__ import annotations

import math
from email.utils import formatdate

from kiosk.door.sync_clock import OffsetEstimator, parse_http_date

TRUE_OFFSET = 42.347  # collector minus kiosk, seconds


def reading(estimator: OffsetEstimator, local: float, rtt: float = 0.004) -> None:
    """An exchange sent at local time `local`, answered halfway, by a collector whose clock is
    TRUE_OFFSET ahead and whose Date header drops the fraction."""
    server_at_answer = local + rtt / 2 + TRUE_OFFSET
    estimator.observe(
        server_date=math.floor(server_at_answer), sent_at=local, received_at=local + rtt
    )


def test_one_reading_gives_an_offset_within_a_second() -> None:
    estimator = OffsetEstimator()
    assert estimator.offset_ms() is None
    reading(estimator, 1_700_000_000.0)
    offset = estimator.offset_ms()
    assert offset is not None and abs(offset - TRUE_OFFSET * 1000) <= 502
    assert estimator.uncertainty_ms() == 502


def test_readings_at_other_phases_narrow_it_down_to_milliseconds() -> None:
    clock = [0.0]
    estimator = OffsetEstimator(monotonic=lambda: clock[0])
    local = 1_700_000_000.0
    for step in range(40):
        reading(estimator, local + step * 1.137)
        clock[0] += 1.137
    offset, uncertainty = estimator.offset_ms(), estimator.uncertainty_ms()
    assert offset is not None and uncertainty is not None
    assert uncertainty <= 40
    assert abs(offset - TRUE_OFFSET * 1000) <= uncertainty


def test_a_stepped_clock_starts_the_estimate_afresh() -> None:
    clock = [0.0]
    estimator = OffsetEstimator(monotonic=lambda: clock[0])
    for step in range(10):
        reading(estimator, 1_700_000_000.0 + step * 0.3)
        clock[0] += 0.3
    # The kiosk's clock is stepped 30 s forward by NTP: collector minus kiosk drops by 30 s.
    estimator.observe(
        server_date=math.floor(1_700_000_010.0 + TRUE_OFFSET),
        sent_at=1_700_000_040.0,
        received_at=1_700_000_040.004,
    )
    offset = estimator.offset_ms()
    assert offset is not None and abs(offset - (TRUE_OFFSET - 30) * 1000) <= 502


def test_old_readings_are_forgotten() -> None:
    clock = [0.0]
    estimator = OffsetEstimator(window_s=60, monotonic=lambda: clock[0])
    for step in range(10):
        reading(estimator, 1_700_000_000.0 + step * 0.3)
    clock[0] = 1000.0
    reading(estimator, 1_700_001_000.0)
    assert estimator.uncertainty_ms() == 502  # only the last one counts


def test_a_reading_across_a_backward_step_is_ignored() -> None:
    estimator = OffsetEstimator()
    estimator.observe(server_date=100.0, sent_at=50.0, received_at=49.0)
    assert estimator.offset_ms() is None


def test_http_dates() -> None:
    assert parse_http_date(formatdate(1_700_000_000, usegmt=True)) == 1_700_000_000
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    for bad in (None, "", "yesterday", "Sun, 06 Nov 1994 08:49:37"):
        assert parse_http_date(bad) is None
