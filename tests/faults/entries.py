"""A plain entry for tests that need many entries in a log and care about none of its members."""

from __future__ import annotations

from kiosk.door.store import EntryDraft

# A visitor who showed no code: the smallest honest deny (no subject, nothing personal).
NO_CODE_DENY = EntryDraft(
    ts=1_646_500_000.0,
    code_format="none",
    code_verdict="none",
    code_status=None,
    subject=None,
    subject_key_version=None,
    temperature_c=36.6,
    mask="on",
    decision="deny",
    reasons=("code_missing",),
    override=None,
    policy_version="default-1",
    clock_offset_ms=None,
)
