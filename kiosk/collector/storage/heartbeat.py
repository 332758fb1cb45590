"""What a heartbeat shows, judged when it arrives (pure): the flags stored with it.

The rules are those of kiosk.findings; what was "in force when it arrived" (the published policy
version, the venue type's max_trust_age_hours, silent_after) travels in the HeartbeatRecord, so
a later publication does not change how an earlier heartbeat is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiosk.collector.storage.base import (
    HEARTBEAT_AFTER_SILENCE,
    HEARTBEAT_CLOCK_SKEW,
    HEARTBEAT_POLICY_DRIFT,
    HEARTBEAT_POLICY_MISMATCH,
    HEARTBEAT_STALE_TRUST,
    HEARTBEAT_THERMOMETER_FAULT,
    HeartbeatRecord,
)
from kiosk.findings import POLICY_DRIFT_AFTER_S, clock_skewed, trust_stale


@dataclass(frozen=True, slots=True)
class Judged:
    flags: int
    offset_s: float  # collector minus kiosk, like clock_offset_ms
    gap_s: float | None  # since the kiosk's previous heartbeat; None for its first
    drift_since: float | None  # receive time of the first heartbeat of the current mismatch
    body: dict[str, Any]


def heartbeat_judgement(
    beat: HeartbeatRecord,
    *,
    previous_received_at: float | None,
    previous_drift_since: float | None,
) -> Judged:
    flags = 0
    if beat.thermometer == "fault":
        flags |= HEARTBEAT_THERMOMETER_FAULT
    if trust_stale(beat.trust_age_s, beat.max_trust_age_hours):
        flags |= HEARTBEAT_STALE_TRUST
    if clock_skewed(beat.ts, beat.received_at):
        flags |= HEARTBEAT_CLOCK_SKEW
    drift_since: float | None = None
    if beat.policy_version != beat.published_policy_version:
        flags |= HEARTBEAT_POLICY_MISMATCH
        drift_since = (
            previous_drift_since if previous_drift_since is not None else beat.received_at
        )
        if beat.received_at - drift_since > POLICY_DRIFT_AFTER_S:
            flags |= HEARTBEAT_POLICY_DRIFT
    gap_s = None if previous_received_at is None else beat.received_at - previous_received_at
    if gap_s is not None and gap_s > beat.silent_after_s:
        flags |= HEARTBEAT_AFTER_SILENCE
    return Judged(flags, beat.received_at - beat.ts, gap_s, drift_since, beat.body)
