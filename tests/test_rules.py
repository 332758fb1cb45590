"""The entry rule: each reason, its boundaries, and allow exactly when no reason applies."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.model import (
    Claims,
    CodeFormat,
    CodeResult,
    Mask,
    Outcome,
    Policy,
    Reason,
    Status,
    Verdict,
    VisitFacts,
)
from kiosk.rules import TEST_FUTURE_SKEW_S, decide

NOW = 1_700_000_000.0
HOUR = 3600.0
GENERAL = Policy()
HOSPITAL = Policy(version="h", max_test_age_hours=48, deny_travel_risk=True)


def code(
    verdict: Verdict = Verdict.VALID,
    sta: Status = Status.GREEN,
    nat: int | None = None,
    trv: bool | None = None,
    fmt: CodeFormat = CodeFormat.VHC1,
) -> CodeResult:
    claims = Claims(iss="hlj", sub="abcdefghijklmnop", sta=sta, iat=0, exp=2**40, nat=nat, trv=trv)
    readable = verdict not in (Verdict.MALFORMED, Verdict.NOT_VHC, Verdict.UNKNOWN_FORMAT)
    return CodeResult(fmt, verdict, claims if readable else None)


def facts(**changes: object) -> VisitFacts:
    base: dict[str, object] = {
        "code": code(),
        "temperature_c": 36.6,
        "mask": Mask.ON,
        "trust_updated_at": NOW - HOUR,
        "venue_closed": False,
    }
    base.update(changes)
    return VisitFacts(**base)  # type: ignore[arg-type]


def reasons(visit: VisitFacts, policy: Policy = GENERAL, now: float = NOW) -> tuple[Reason, ...]:
    return decide(visit, policy, now).reasons


def test_a_complete_green_visit_is_allowed() -> None:
    decision = decide(facts(), GENERAL, NOW)
    assert decision.outcome is Outcome.ALLOW
    assert decision.allowed
    assert decision.reasons == ()


def test_a_closed_venue_denies_even_a_perfect_visit() -> None:
    assert reasons(facts(venue_closed=True)) == (Reason.VENUE_CLOSED,)


@pytest.mark.parametrize(
    ("updated_at", "stale"),
    [
        (None, True),
        (NOW - 48 * HOUR, False),  # exactly the limit is still fresh
        (NOW - 48 * HOUR - 0.001, True),
        (NOW + HOUR, False),  # a refresh stamped ahead of the clock is not stale
    ],
)
def test_trust_lists_must_be_fresh(updated_at: float | None, stale: bool) -> None:
    got = reasons(facts(trust_updated_at=updated_at))
    assert got == ((Reason.TRUST_STALE,) if stale else ())


def test_stale_trust_gives_no_code_verdict_reasons() -> None:
    visit = facts(
        code=code(Verdict.REVOKED), trust_updated_at=None, temperature_c=38.0, mask=Mask.OFF
    )
    assert reasons(visit, HOSPITAL) == (Reason.TRUST_STALE, Reason.FEVER, Reason.MASK_OFF)
    red = facts(code=code(sta=Status.RED, trv=True), trust_updated_at=None)
    assert reasons(red, HOSPITAL) == (Reason.TRUST_STALE,)


def test_stale_trust_still_says_no_code_was_shown() -> None:
    assert reasons(facts(code=None, trust_updated_at=None)) == (
        Reason.TRUST_STALE,
        Reason.CODE_MISSING,
    )


@pytest.mark.parametrize(
    "missing",
    [None, CodeResult(CodeFormat.NONE, Verdict.NONE), CodeResult(CodeFormat.VHC1, Verdict.NONE)],
)
def test_no_code_is_code_missing(missing: CodeResult | None) -> None:
    assert reasons(facts(code=missing)) == (Reason.CODE_MISSING,)


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (CodeResult(CodeFormat.UNKNOWN, Verdict.UNKNOWN_FORMAT), Reason.CODE_UNKNOWN_FORMAT),
        (CodeResult(CodeFormat.UNKNOWN, Verdict.NOT_VHC), Reason.CODE_UNKNOWN_FORMAT),
        (code(Verdict.MALFORMED), Reason.CODE_MALFORMED),
        (code(Verdict.UNKNOWN_KEY), Reason.CODE_UNKNOWN_KEY),
        (code(Verdict.BAD_SIGNATURE), Reason.CODE_BAD_SIGNATURE),
        (code(Verdict.NOT_YET_VALID), Reason.CODE_NOT_YET_VALID),
        (code(Verdict.EXPIRED), Reason.CODE_EXPIRED),
        (code(Verdict.REVOKED), Reason.CODE_REVOKED),
        (CodeResult(CodeFormat.VHC1, Verdict.VALID, None), Reason.CODE_MALFORMED),
    ],
)
def test_each_bad_verdict_has_its_reason(result: CodeResult, reason: Reason) -> None:
    assert reasons(facts(code=result)) == (reason,)


def test_an_invalid_code_is_not_judged_on_its_claims() -> None:
    expired_red = code(Verdict.EXPIRED, sta=Status.RED, trv=True)
    assert reasons(facts(code=expired_red), HOSPITAL) == (Reason.CODE_EXPIRED,)


@pytest.mark.parametrize(
    ("sta", "accepted", "expected"),
    [
        (Status.YELLOW, {Status.GREEN}, (Reason.STATUS_YELLOW,)),
        (Status.RED, {Status.GREEN}, (Reason.STATUS_RED,)),
        (Status.YELLOW, {Status.GREEN, Status.YELLOW}, ()),
        (Status.RED, {Status.GREEN, Status.YELLOW}, (Reason.STATUS_RED,)),
        (Status.GREEN, {Status.GREEN}, ()),
    ],
)
def test_status_must_be_accepted(
    sta: Status, accepted: set[Status], expected: tuple[Reason, ...]
) -> None:
    policy = Policy(accepted_status=frozenset(accepted))
    assert reasons(facts(code=code(sta=sta)), policy) == expected


@pytest.mark.parametrize(
    ("celsius", "expected"),
    [
        (36.6, ()),
        (37.2, ()),
        (37.3, (Reason.FEVER,)),  # "below 37.3" means 37.3 itself is a fever
        (39.0, (Reason.FEVER,)),
        (None, (Reason.TEMPERATURE_MISSING,)),
        (math.nan, (Reason.TEMPERATURE_IMPLAUSIBLE,)),
    ],
)
def test_temperature_must_be_below_the_maximum(
    celsius: float | None, expected: tuple[Reason, ...]
) -> None:
    assert reasons(facts(temperature_c=celsius)) == expected


def test_a_custom_maximum_is_used() -> None:
    assert reasons(facts(temperature_c=37.4), Policy(max_temperature_c=37.5)) == ()
    assert reasons(facts(temperature_c=37.5), Policy(max_temperature_c=37.5)) == (Reason.FEVER,)


def test_an_implausible_reading_is_not_a_fever() -> None:
    visit = facts(temperature_c=43.0, temperature_implausible=True)
    assert reasons(visit) == (Reason.TEMPERATURE_IMPLAUSIBLE,)
    assert reasons(facts(temperature_c=None, temperature_implausible=True)) == (
        Reason.TEMPERATURE_IMPLAUSIBLE,
    )


@pytest.mark.parametrize(
    ("mask", "required", "expected"),
    [
        (Mask.ON, True, ()),
        (Mask.OFF, True, (Reason.MASK_OFF,)),
        (Mask.UNCHECKED, True, (Reason.MASK_UNCHECKED,)),
        (Mask.OFF, False, ()),
        (Mask.UNCHECKED, False, ()),
    ],
)
def test_mask_when_required(mask: Mask, required: bool, expected: tuple[Reason, ...]) -> None:
    assert reasons(facts(mask=mask), Policy(mask_required=required)) == expected


@pytest.mark.parametrize(
    ("nat", "expected"),
    [
        (None, (Reason.TEST_MISSING,)),
        (int(NOW - 48 * HOUR), ()),  # exactly 48 hours old is still recent enough
        (int(NOW - 48 * HOUR) - 1, (Reason.TEST_TOO_OLD,)),
        (int(NOW), ()),
        (int(NOW + TEST_FUTURE_SKEW_S), ()),  # within clock skew: sampled "now"
        (int(NOW + TEST_FUTURE_SKEW_S) + 1, (Reason.TEST_MISSING,)),  # cannot be dated
        (-(10**400), (Reason.TEST_TOO_OLD,)),  # any signed integer: no float overflow
        (10**400, (Reason.TEST_MISSING,)),
    ],
)
def test_a_recent_negative_test_where_required(
    nat: int | None, expected: tuple[Reason, ...]
) -> None:
    assert reasons(facts(code=code(nat=nat)), HOSPITAL) == expected


def test_no_test_is_asked_where_the_policy_does_not() -> None:
    assert reasons(facts(code=code(nat=None))) == ()
    assert reasons(facts(code=code(nat=0))) == ()


@pytest.mark.parametrize(
    ("trv", "deny", "expected"),
    [
        (True, True, (Reason.TRAVEL_RISK,)),
        (False, True, ()),
        (None, True, ()),
        (True, False, ()),
    ],
)
def test_travel_risk(trv: bool | None, deny: bool, expected: tuple[Reason, ...]) -> None:
    policy = Policy(deny_travel_risk=deny)
    assert reasons(facts(code=code(trv=trv)), policy) == expected


def test_all_reasons_are_given_in_enum_order() -> None:
    visit = facts(
        code=code(sta=Status.RED, nat=None, trv=True),
        temperature_c=38.5,
        mask=Mask.OFF,
        venue_closed=True,
    )
    assert reasons(visit, HOSPITAL) == (
        Reason.VENUE_CLOSED,
        Reason.STATUS_RED,
        Reason.TEST_MISSING,
        Reason.TRAVEL_RISK,
        Reason.FEVER,
        Reason.MASK_OFF,
    )


# -- properties ------------------------------------------------------------------------------

claims_st = st.builds(
    Claims,
    iss=st.just("hlj"),
    sub=st.just("abcdefghijklmnop"),
    sta=st.sampled_from(Status),
    iat=st.just(0),
    exp=st.just(2**40),
    nat=st.none() | st.integers(int(NOW - 100 * HOUR), int(NOW + HOUR)),
    trv=st.none() | st.booleans(),
)
code_st = st.none() | st.builds(
    CodeResult, st.sampled_from(CodeFormat), st.sampled_from(Verdict), st.none() | claims_st
)
facts_st = st.builds(
    VisitFacts,
    code=code_st,
    temperature_c=st.none() | st.floats(30, 45).map(lambda t: round(t, 1)),
    temperature_implausible=st.booleans(),
    mask=st.sampled_from(Mask),
    trust_updated_at=st.none() | st.floats(NOW - 100 * HOUR, NOW),
    venue_closed=st.booleans(),
)
policy_st = st.builds(
    Policy,
    max_temperature_c=st.floats(36.0, 39.0).map(lambda t: round(t, 1)),
    accepted_status=st.sets(st.sampled_from([Status.YELLOW, Status.RED])).map(
        lambda extra: frozenset({Status.GREEN, *extra})
    ),
    mask_required=st.booleans(),
    max_test_age_hours=st.none() | st.floats(1, 96),
    deny_travel_risk=st.booleans(),
    max_trust_age_hours=st.floats(1, 96),
)

_ORDER = list(Reason)
_FROM_CODE = {r for r in Reason if r.name.startswith(("CODE_", "STATUS_", "TEST_", "TRAVEL"))} - {
    Reason.CODE_MISSING
}


@given(facts_st, policy_st)
def test_allow_exactly_when_no_reason(visit: VisitFacts, policy: Policy) -> None:
    decision = decide(visit, policy, NOW)
    assert decision.allowed == (decision.reasons == ())
    assert decision.outcome is (Outcome.ALLOW if not decision.reasons else Outcome.DENY)
    indexes = [_ORDER.index(r) for r in decision.reasons]
    assert indexes == sorted(set(indexes)), "unique and in Reason order"
    if Reason.TRUST_STALE in decision.reasons:
        assert not _FROM_CODE & set(decision.reasons)
    assert decide(visit, policy, NOW) == decision  # pure: same input, same answer


@given(facts_st, policy_st)
def test_an_allowed_visit_had_every_required_measure(visit: VisitFacts, policy: Policy) -> None:
    if not decide(visit, policy, NOW).allowed:
        return
    assert visit.code is not None and visit.code.verdict is Verdict.VALID
    assert visit.code.claims is not None
    assert visit.code.claims.sta in policy.accepted_status
    assert visit.temperature_c is not None and visit.temperature_c < policy.max_temperature_c
    assert not visit.temperature_implausible and not visit.venue_closed
    assert visit.mask is Mask.ON or not policy.mask_required
    if policy.deny_travel_risk:
        assert visit.code.claims.trv is not True
