"""Database rows to the interface's dataclasses (the same columns in both dialects)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from kiosk.collector.storage.base import AuditRecord, LogSummary, StoredHeartbeat


def _json(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return dict(loaded)


def audit_record(row: Sequence[Any]) -> AuditRecord:
    audit_id, at, actor, role, action, target, detail = row
    return AuditRecord(int(audit_id), float(at), actor, role, action, target, _json(detail))


def stored_heartbeat(row: Sequence[Any]) -> StoredHeartbeat:
    (kiosk_id, received_at, ts, offset_s, log_id, last_seq, backlog, policy_version, flags,
     gap_s, drift_since, body) = row
    return StoredHeartbeat(
        kiosk_id=kiosk_id,
        received_at=received_at,
        ts=ts,
        offset_s=offset_s,
        log_id=str(log_id),
        last_seq=last_seq,
        backlog=backlog,
        policy_version=policy_version,
        flags=flags,
        gap_s=gap_s,
        drift_since=drift_since,
        body=_json(body),
    )


def log_summary(row: Sequence[Any], runs: Iterable[Sequence[Any]]) -> LogSummary:
    log_id, kiosk_id, max_seq, held = row
    return LogSummary(
        log_id=str(log_id),
        kiosk_id=kiosk_id,
        max_seq=int(max_seq),
        held=int(held),
        runs=tuple((int(first), int(last)) for first, last in runs),
    )
