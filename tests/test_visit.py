"""The door's visit state machine: which code, reading and mask state make one visit."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.door.visit import (
    MAX_OPEN_VISITS,
    ReadyVisit,
    TemperatureOutcome,
    VisitTracker,
    code_key,
    round_celsius,
)
from kiosk.model import CodeFormat, CodeResult, Mask, Verdict, VisitFacts

VALID = CodeResult(CodeFormat.VHC1, Verdict.VALID)
T0 = 1_000.0


def seen(tracker: VisitTracker, now: float, *texts: str) -> int:
    return tracker.on_codes([(text, VALID) for text in texts], now)


def one(visits: list[ReadyVisit]) -> ReadyVisit:
    assert len(visits) == 1, visits
    return visits[0]


def test_a_code_seen_every_frame_is_one_visit() -> None:
    tracker = VisitTracker()
    opened = [seen(tracker, T0 + i * 0.1, "A") for i in range(30)]
    assert opened == [1] + [0] * 29
    tracker.on_temperature(36.5, T0 + 3.1)
    tracker.on_mask(Mask.ON, T0 + 3.2)
    visit = one(tracker.due(T0 + 3.2))
    assert (visit.opened_at, visit.temperature_c, visit.mask) == (T0, 36.5, Mask.ON)
    assert visit.code_key == code_key("A") != "A"


def test_two_codes_in_one_frame_are_two_visits_in_order() -> None:
    tracker = VisitTracker()
    assert seen(tracker, T0, "A", "B") == 2
    assert seen(tracker, T0 + 0.1, "B", "A") == 0
    visits = tracker.due(T0 + 10)
    assert [v.code_key for v in visits] == [code_key("A"), code_key("B")]
    assert visits[0].visit_id < visits[1].visit_id


def test_the_same_code_twice_in_a_frame_is_one_visit() -> None:
    assert seen(VisitTracker(), T0, "A", "A") == 1


def test_after_an_allow_the_code_rests() -> None:
    tracker = VisitTracker(repeat_after_s=30)
    seen(tracker, T0, "A")
    tracker.on_temperature(36.5, T0)
    tracker.on_mask(Mask.ON, T0)
    visit = one(tracker.due(T0 + 0.1))
    tracker.record_decision(visit, True, T0 + 0.2)
    assert seen(tracker, T0 + 0.3, "A") == 0
    assert seen(tracker, T0 + 30.1, "A") == 0
    assert seen(tracker, T0 + 30.2, "A") == 1
    assert seen(tracker, T0 + 0.3, "B") == 1  # others are not held up


def test_after_a_deny_the_code_may_try_again_at_once() -> None:
    tracker = VisitTracker()
    seen(tracker, T0, "A")
    visit = one(tracker.due(T0 + 10))
    assert seen(tracker, T0 + 10.1, "A") == 0, "still being decided"
    tracker.record_decision(visit, False, T0 + 10.2)
    assert seen(tracker, T0 + 10.3, "A") == 1


def test_a_decision_that_never_reports_back_lapses_after_a_window() -> None:
    tracker = VisitTracker(pairing_window_s=10)
    seen(tracker, T0, "A")
    one(tracker.due(T0 + 10))  # e.g. the log refused it: no record_decision
    assert seen(tracker, T0 + 19.9, "A") == 0
    assert seen(tracker, T0 + 20.1, "A") == 1


def test_a_reading_pairs_with_the_open_visit() -> None:
    tracker = VisitTracker()
    seen(tracker, T0, "A")
    assert tracker.on_temperature(36.6, T0 + 2) is TemperatureOutcome.PAIRED
    assert tracker.due(T0 + 2) == []  # the mask is still to come
    tracker.on_mask(Mask.OFF, T0 + 4)
    visit = one(tracker.due(T0 + 4))
    assert (visit.temperature_c, visit.temperature_implausible, visit.mask) == (
        36.6,
        False,
        Mask.OFF,
    )


def test_measure_first_then_show_the_code() -> None:
    tracker = VisitTracker(pairing_window_s=10)
    assert tracker.on_temperature(36.4, T0) is TemperatureOutcome.HELD
    tracker.on_mask(Mask.ON, T0 + 1)
    seen(tracker, T0 + 9.5, "A")
    visit = one(tracker.due(T0 + 9.5))
    assert (visit.temperature_c, visit.mask) == (36.4, Mask.ON)


def test_a_reading_with_no_code_is_dropped_after_the_window() -> None:
    tracker = VisitTracker(pairing_window_s=10)
    tracker.on_temperature(36.4, T0)
    tracker.on_mask(Mask.ON, T0)
    assert tracker.due(T0 + 30) == []  # a temperature alone is not a visit
    seen(tracker, T0 + 10.5, "A")
    visit = one(tracker.due(T0 + 20.5))
    assert (visit.temperature_c, visit.mask) == (None, Mask.UNCHECKED)


def test_readings_pair_first_in_first_out() -> None:
    tracker = VisitTracker()
    seen(tracker, T0, "A", "B")
    tracker.on_temperature(36.1, T0 + 1)
    tracker.on_temperature(36.2, T0 + 2)
    tracker.on_temperature(36.3, T0 + 3)  # nobody waits: held for the next code
    seen(tracker, T0 + 4, "C")
    visits = tracker.due(T0 + 20)
    assert [v.temperature_c for v in visits] == [36.1, 36.2, 36.3]


@pytest.mark.parametrize(
    ("raw", "rounded"),
    [
        (36.65, 36.7),
        (36.64, 36.6),
        (36.55, 36.6),
        (36.649999, 36.6),
        (37.25, 37.3),
        (37.0, 37.0),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_readings_round_half_away_from_zero(raw: float, rounded: float | None) -> None:
    assert round_celsius(raw) == rounded


def test_the_rounded_reading_is_what_the_visit_keeps() -> None:
    tracker = VisitTracker()
    seen(tracker, T0, "A")
    tracker.on_temperature(37.25, T0)
    assert one(tracker.due(T0 + 10)).temperature_c == 37.3


def test_an_implausible_reading_asks_again_and_a_good_one_replaces_it() -> None:
    tracker = VisitTracker()
    seen(tracker, T0, "A")
    assert tracker.on_temperature(31.2, T0 + 1) is TemperatureOutcome.MEASURE_AGAIN
    assert tracker.on_temperature(36.8, T0 + 3) is TemperatureOutcome.PAIRED
    tracker.on_mask(Mask.ON, T0 + 3)
    visit = one(tracker.due(T0 + 3))
    assert (visit.temperature_c, visit.temperature_implausible) == (36.8, False)


def test_an_implausible_reading_alone_is_logged_as_implausible() -> None:
    tracker = VisitTracker(pairing_window_s=10)
    seen(tracker, T0, "A")
    tracker.on_mask(Mask.ON, T0)
    tracker.on_temperature(43.0, T0 + 1)
    assert tracker.due(T0 + 9.9) == [], "waits for a better reading"
    visit = one(tracker.due(T0 + 10))
    assert (visit.temperature_c, visit.temperature_implausible) == (43.0, True)


def test_an_unloggable_reading_is_implausible_without_a_value() -> None:
    tracker = VisitTracker()
    seen(tracker, T0, "A")
    assert tracker.on_temperature(float("nan"), T0) is TemperatureOutcome.MEASURE_AGAIN
    tracker.on_temperature(80.0, T0)
    visit = one(tracker.due(T0 + 10))
    assert (visit.temperature_c, visit.temperature_implausible) == (None, True)


@pytest.mark.parametrize(("reading", "plausible"), [(34.0, True), (42.5, True), (33.9, False)])
def test_plausible_range_bounds_are_inclusive(reading: float, plausible: bool) -> None:
    tracker = VisitTracker()
    seen(tracker, T0, "A")
    outcome = tracker.on_temperature(reading, T0)
    assert (outcome is not TemperatureOutcome.MEASURE_AGAIN) == plausible


def test_no_mask_state_is_unchecked() -> None:
    tracker = VisitTracker()
    seen(tracker, T0, "A")
    tracker.on_temperature(36.5, T0)
    tracker.on_mask(Mask.UNCHECKED, T0)  # "no face seen" says nothing
    assert tracker.due(T0 + 9.99) == []
    assert one(tracker.due(T0 + 10)).mask is Mask.UNCHECKED


def test_the_newest_held_mask_state_is_taken() -> None:
    tracker = VisitTracker()
    tracker.on_mask(Mask.OFF, T0)
    tracker.on_mask(Mask.ON, T0 + 1)  # put it on before showing the code
    seen(tracker, T0 + 2, "A")
    seen(tracker, T0 + 2, "B")
    visits = tracker.due(T0 + 12)
    assert [v.mask for v in visits] == [Mask.ON, Mask.UNCHECKED]


def test_what_is_not_required_is_not_waited_for() -> None:
    tracker = VisitTracker(temperature_required=False, mask_required=False)
    seen(tracker, T0, "A")
    visit = one(tracker.due(T0))
    assert (visit.temperature_c, visit.mask) == (None, Mask.UNCHECKED)


def test_facts_carry_the_visit_and_the_context() -> None:
    tracker = VisitTracker()
    seen(tracker, T0, "A")
    tracker.on_temperature(36.5, T0)
    tracker.on_mask(Mask.ON, T0)
    facts = one(tracker.due(T0)).facts(trust_updated_at=T0 - 5, venue_closed=True)
    assert facts == VisitFacts(VALID, 36.5, False, Mask.ON, T0 - 5, True)


def test_open_visits_are_bounded() -> None:
    tracker = VisitTracker()
    texts = [f"code-{i}" for i in range(MAX_OPEN_VISITS + 5)]
    assert seen(tracker, T0, *texts) == MAX_OPEN_VISITS
    assert tracker.next_deadline() == T0 + 10


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="pairing_window_s"):
        VisitTracker(pairing_window_s=0)
    with pytest.raises(ValueError, match="empty"):
        VisitTracker(plausible=(40.0, 35.0))


# -- properties ------------------------------------------------------------------------------

WINDOW = 10.0
REPEAT = 30.0


@dataclass
class Event:
    dt: float
    kind: str
    payload: object


event_st = st.builds(
    Event,
    dt=st.sampled_from([0.0, 0.05, 0.5, 1.0, 3.0, 9.99, 10.0, 10.01, 31.0]),
    kind=st.sampled_from(["codes", "temp", "mask", "due"]),
    payload=st.one_of(
        st.lists(st.sampled_from("ABC"), min_size=1, max_size=3),
        st.sampled_from([30.0, 36.4, 36.65, 37.5, 45.0]),
        st.sampled_from([Mask.ON, Mask.OFF]),
        st.booleans(),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(event_st, max_size=60))
def test_random_sequences_keep_every_invariant(events: list[Event]) -> None:
    tracker = VisitTracker(pairing_window_s=WINDOW, repeat_after_s=REPEAT)
    now = T0
    busy_until: dict[str, float] = {}  # key -> end of its open/deciding/resting stretch
    in_flight: dict[str, float] = {}  # key -> opened_at of the visit not yet decided
    ids: set[int] = set()
    for event in events:
        now += event.dt
        if event.kind == "codes" and isinstance(event.payload, list):
            texts = [str(t) for t in event.payload]
            before = tracker.open_visits
            opened = tracker.on_codes([(t, VALID) for t in texts], now)
            assert tracker.open_visits == before + opened
            for text in dict.fromkeys(texts):
                key = code_key(text)
                if key in in_flight or busy_until.get(key, -1.0) > now:
                    continue
                in_flight[key] = now
            assert opened <= len(set(texts))
        elif event.kind == "temp" and isinstance(event.payload, float):
            tracker.on_temperature(event.payload, now)
        elif event.kind == "mask" and isinstance(event.payload, Mask):
            tracker.on_mask(event.payload, now)
        else:
            allow = bool(event.payload) if isinstance(event.payload, bool) else False
            for visit in tracker.due(now):
                assert visit.visit_id not in ids
                ids.add(visit.visit_id)
                # one visit per code at a time, opened when the model says it opened
                assert in_flight.pop(visit.code_key) == visit.opened_at
                early = now - visit.opened_at < WINDOW
                if early:  # nothing decides before its inputs are in
                    assert visit.temperature_c is not None and not visit.temperature_implausible
                    assert visit.mask is not Mask.UNCHECKED
                if visit.temperature_c is not None:
                    assert round(visit.temperature_c, 1) == visit.temperature_c
                tracker.record_decision(visit, allow, now)
                if allow:
                    busy_until[visit.code_key] = now + REPEAT
            # nothing is left open past its window once due() has run
            deadline = tracker.next_deadline()
            assert deadline is None or deadline > now
    assert len(in_flight) == tracker.open_visits


@given(
    st.lists(st.sampled_from([35.0, 36.1, 36.5, 37.0, 38.2, 40.0]), min_size=1, max_size=6),
    st.booleans(),
)
def test_readings_pair_fifo_whatever_comes_first(readings: list[float], first: bool) -> None:
    tracker = VisitTracker(mask_required=False)
    texts = [f"person-{i}" for i in range(len(readings))]
    if first:  # everyone measures, then everyone shows a code
        for i, reading in enumerate(readings):
            tracker.on_temperature(reading, T0 + i * 0.1)
        seen(tracker, T0 + 1, *texts)
    else:
        seen(tracker, T0, *texts)
        for i, reading in enumerate(readings):
            tracker.on_temperature(reading, T0 + 1 + i * 0.1)
    visits = tracker.due(T0 + 2)
    assert [v.temperature_c for v in visits] == readings


@given(st.lists(st.floats(0, 9.99), min_size=1, max_size=40))
def test_sightings_within_a_window_open_one_visit(offsets: list[float]) -> None:
    tracker = VisitTracker(pairing_window_s=WINDOW)
    opened = sum(seen(tracker, T0 + dt, "A") for dt in sorted(offsets))
    assert opened == 1
    first = T0 + min(offsets)
    assert tracker.due(first + WINDOW - 0.01) == []
    assert len(tracker.due(first + WINDOW)) == 1  # the window runs from the first sighting
