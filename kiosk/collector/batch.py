"""A `POST /api/v1/entries` body checked whole before anything is stored (sync-api.md).

`prepare_batch` turns the decoded JSON into rows for storage, or refuses the batch with the
spec's status: 413 over 1,000 entries, 400 with the `index` of the first invalid entry, 403 for
the first entry of another kiosk or venue (whichever comes first decides). Idempotency and ids
held for another kiosk are the storage's part, inside its transaction.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kiosk.collector.canonical import CanonicalizationError, canonical_bytes
from kiosk.collector.storage.base import EntryRow, PreparedBatch
from kiosk.collector.storage.plan import entry_flags
from kiosk.wire import MAX_BATCH_ENTRIES, Entry, parse_rfc3339


class BatchRejected(Exception):
    """The batch is refused as a whole; nothing was stored."""

    def __init__(self, status: int, error: str, detail: str, index: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.index = index


_SPEC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def _unix_time(text: str) -> float:
    """parse_rfc3339, with a fast path for the spec's own form (2022-03-05T17:06:40.123Z)."""
    if _SPEC_TIME.fullmatch(text):
        return datetime.fromisoformat(text[:-1] + "+00:00").timestamp()
    return parse_rfc3339(text)


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "entry"
    return f"{where}: {error['msg']}"


def prepare_batch(
    document: Any, *, kiosk_id: str, venue_id: str, received_at: float
) -> PreparedBatch:
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise BatchRejected(400, "bad_request", 'the body must be {"entries": [...]}')
    raw_entries: list[Any] = document["entries"]
    if len(raw_entries) > MAX_BATCH_ENTRIES:
        raise BatchRejected(
            413,
            "payload_too_large",
            f"{len(raw_entries)} entries; a batch holds at most {MAX_BATCH_ENTRIES}: split it",
        )
    rows: list[EntryRow] = []
    for index, raw in enumerate(raw_entries):
        if not isinstance(raw, dict):
            raise BatchRejected(400, "invalid_entry", "an entry must be a JSON object", index)
        try:
            entry = Entry.model_validate(raw)
        except ValidationError as exc:
            raise BatchRejected(400, "invalid_entry", _first_problem(exc), index) from None
        if entry.kiosk_id != kiosk_id or entry.venue_id != venue_id:
            raise BatchRejected(
                403,
                "forbidden",
                f"entry {index} is of kiosk {entry.kiosk_id!r} at venue {entry.venue_id!r}; "
                f"this token may send only kiosk {kiosk_id!r} at venue {venue_id!r}",
            )
        hashed = dict(raw)
        del hashed["chain"]
        try:
            # The chain covers the entry exactly as sent, members this version ignores included.
            body = canonical_bytes(hashed)
        except CanonicalizationError as exc:
            raise BatchRejected(
                400, "invalid_entry", f"no RFC 8785 form, so no chain can cover it: {exc}", index
            ) from None
        has_override = entry.override is not None
        rows.append(
            EntryRow(
                index=index,
                id=entry.id.lower(),
                kiosk_id=entry.kiosk_id,
                venue_id=entry.venue_id,
                log_id=entry.log_id.lower(),
                seq=entry.seq,
                ts=_unix_time(entry.ts),
                decision=entry.decision,
                has_override=has_override,
                flags=entry_flags(
                    decision=entry.decision,
                    has_override=has_override,
                    code_format=entry.code_format,
                    temperature_c=entry.temperature_c,
                    mask=entry.mask,
                ),
                subject=entry.subject,
                temperature_c=None if entry.temperature_c is None else float(entry.temperature_c),
                mask=entry.mask,
                code_format=entry.code_format,
                code_verdict=entry.code_verdict,
                code_status=entry.code_status,
                policy_version=entry.policy_version,
                reasons=tuple(entry.reasons),
                chain=entry.chain,
                body=body.decode("utf-8"),
            )
        )
    return PreparedBatch(kiosk_id, venue_id, received_at, rows)
