"""The entry rule: `decide(visit, policy, now)`. Pure: no I/O, the clock is passed in.

Every reason that applies is given, in the order of `Reason`, so an entry says all that was wrong
(a person turned away for a fever also learns their mask was off). Choices the spec leaves open:

- Fever: a visit is allowed only when the temperature is strictly below `max_temperature_c`; a
  reading equal to it (37.3 at the default) is a fever. Readings are already rounded to 0.1 °C.
- Stale trust lists (older than `max_trust_age_hours`, or never loaded): deny with
  `trust_stale`, and give none of the reasons that come from the code's verdict or claims
  (they were judged against lists we cannot vouch for; the door shows amber "cannot verify
  now"). `code_missing` is still given: no code was shown, whatever the lists say.
- Test age: `nat` may be at most `max_test_age_hours` old (equal is fine). A `nat` more than
  `TEST_FUTURE_SKEW_S` in the future cannot be dated and counts as `test_missing`; within the
  skew it counts as sampled now (clocks of issuer and kiosk differ by that much, as for `iat`).
- Temperature: a visit whose only readings were implausible gets `temperature_implausible` and
  never `fever` (the reading is not trusted either way).
- Green is always an accepted status; policies that leave it out are refused when loaded.
"""

from __future__ import annotations

import math

from kiosk.model import (
    CodeFormat,
    Decision,
    Mask,
    Outcome,
    Policy,
    Reason,
    Status,
    Verdict,
    VisitFacts,
)

TEST_FUTURE_SKEW_S = 300.0

_ORDER = {reason: index for index, reason in enumerate(Reason)}

_VERDICT_REASONS = {
    Verdict.MALFORMED: Reason.CODE_MALFORMED,
    Verdict.UNKNOWN_KEY: Reason.CODE_UNKNOWN_KEY,
    Verdict.BAD_SIGNATURE: Reason.CODE_BAD_SIGNATURE,
    Verdict.NOT_YET_VALID: Reason.CODE_NOT_YET_VALID,
    Verdict.EXPIRED: Reason.CODE_EXPIRED,
    Verdict.REVOKED: Reason.CODE_REVOKED,
    # A text that is not VHC1 and that no other format claimed is a code of unknown format.
    Verdict.NOT_VHC: Reason.CODE_UNKNOWN_FORMAT,
    Verdict.UNKNOWN_FORMAT: Reason.CODE_UNKNOWN_FORMAT,
}

_STATUS_REASONS = {Status.YELLOW: Reason.STATUS_YELLOW, Status.RED: Reason.STATUS_RED}


def trust_is_fresh(trust_updated_at: float | None, policy: Policy, now: float) -> bool:
    if trust_updated_at is None:
        return False
    return now - trust_updated_at <= policy.max_trust_age_hours * 3600


def _code_reasons(visit: VisitFacts, policy: Policy, now: float, fresh: bool) -> list[Reason]:
    code = visit.code
    if code is None or code.format is CodeFormat.NONE or code.verdict is Verdict.NONE:
        return [Reason.CODE_MISSING]
    if not fresh:
        return []
    if code.format is CodeFormat.UNKNOWN:
        return [Reason.CODE_UNKNOWN_FORMAT]
    if code.verdict is not Verdict.VALID:
        return [_VERDICT_REASONS[code.verdict]]
    claims = code.claims
    if claims is None:  # a verifier that says valid must give the claims; never trust otherwise
        return [Reason.CODE_MALFORMED]
    reasons = []
    if claims.sta is not Status.GREEN and claims.sta not in policy.accepted_status:
        reasons.append(_STATUS_REASONS[claims.sta])
    if policy.max_test_age_hours is not None:
        if claims.nat is None or claims.nat > now + TEST_FUTURE_SKEW_S:
            reasons.append(Reason.TEST_MISSING)
        # Compared, not subtracted: a signed code may carry any integer, and float minus a huge
        # int overflows where an int/float comparison is exact.
        elif claims.nat < now - policy.max_test_age_hours * 3600:
            reasons.append(Reason.TEST_TOO_OLD)
    if policy.deny_travel_risk and claims.trv is True:
        reasons.append(Reason.TRAVEL_RISK)
    return reasons


def _temperature_reasons(visit: VisitFacts, policy: Policy) -> list[Reason]:
    celsius = visit.temperature_c
    if visit.temperature_implausible or (celsius is not None and not math.isfinite(celsius)):
        return [Reason.TEMPERATURE_IMPLAUSIBLE]
    if celsius is None:
        return [Reason.TEMPERATURE_MISSING]
    if celsius >= policy.max_temperature_c:
        return [Reason.FEVER]
    return []


def _mask_reasons(visit: VisitFacts, policy: Policy) -> list[Reason]:
    if not policy.mask_required or visit.mask is Mask.ON:
        return []
    return [Reason.MASK_OFF if visit.mask is Mask.OFF else Reason.MASK_UNCHECKED]


def decide(visit: VisitFacts, policy: Policy, now: float) -> Decision:
    """Allow exactly when no reason applies; otherwise deny with every reason, in `Reason` order."""
    fresh = trust_is_fresh(visit.trust_updated_at, policy, now)
    reasons: set[Reason] = set()
    if visit.venue_closed:
        reasons.add(Reason.VENUE_CLOSED)
    if not fresh:
        reasons.add(Reason.TRUST_STALE)
    reasons.update(_code_reasons(visit, policy, now, fresh))
    reasons.update(_temperature_reasons(visit, policy))
    reasons.update(_mask_reasons(visit, policy))
    if not reasons:
        return Decision(Outcome.ALLOW, ())
    return Decision(Outcome.DENY, tuple(sorted(reasons, key=_ORDER.__getitem__)))
