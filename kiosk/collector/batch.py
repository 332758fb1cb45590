"""A `POST /api/v1/entries` body checked whole before anything is stored (sync-api.md).

`prepare_batch` turns the decoded JSON into rows for storage, or refuses the batch with the
spec's status: 413 over 1,000 entries, 400 with the `index` of the first invalid entry, 403 for
the first entry of another kiosk or venue (whichever comes first decides). Idempotency and ids
held for another kiosk are the storage's part, inside its transaction.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from kiosk.canonical import CanonicalizationError, entry_bytes
from kiosk.collector.storage.base import EntryRow, PreparedBatch
from kiosk.collector.storage.plan import chain_follows, entry_flags, rollups
from kiosk.wire import GENESIS_CHAIN, MAX_BATCH_ENTRIES, Entry, parse_rfc3339


class BatchRejected(Exception):
    """The batch is refused as a whole; nothing was stored."""

    def __init__(self, status: int, error: str, detail: str, index: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.index = index


def _first_problem(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"][1:]) or "entry"
    return f"{where}: {error['msg']}"


_ENTRIES = TypeAdapter(list[Entry])


def _refuse_foreign(raw_entries: list[Any], upto: int, kiosk_id: str, venue_id: str) -> None:
    """403 for the first of raw_entries[:upto] (all valid) that is not the token's own."""
    for index in range(upto):
        raw = raw_entries[index]
        if raw["kiosk_id"] != kiosk_id or raw["venue_id"] != venue_id:
            raise BatchRejected(
                403,
                "forbidden",
                f"entry {index} is of kiosk {raw['kiosk_id']!r} at venue {raw['venue_id']!r}; "
                f"this token may send only kiosk {kiosk_id!r} at venue {venue_id!r}",
            )


def _validated(raw_entries: list[Any], kiosk_id: str, venue_id: str) -> list[Entry]:
    # One call for the whole batch: pydantic's core loops over the entries, and its errors come
    # in entry order, so the first is the first invalid entry.
    try:
        entries = _ENTRIES.validate_python(raw_entries)
    except ValidationError as exc:
        error = exc.errors()[0]
        index = int(error["loc"][0])
        _refuse_foreign(raw_entries, index, kiosk_id, venue_id)
        if type(raw_entries[index]) is not dict:
            raise BatchRejected(
                400, "invalid_entry", "an entry must be a JSON object", index
            ) from None
        raise BatchRejected(400, "invalid_entry", _first_problem(error), index) from None
    _refuse_foreign(raw_entries, len(raw_entries), kiosk_id, venue_id)
    return entries


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
    entries = _validated(raw_entries, kiosk_id, venue_id)
    # Each link is checked here, off the writer, against its predecessor in the batch (the
    # first entry of seq - 1 of its log) or the genesis chain; the writer checks it again only
    # where the stored history gives it another predecessor.
    first_chain: dict[tuple[str, int], str] = {}
    for entry in entries:
        first_chain.setdefault((entry.log_id.lower(), entry.seq), entry.chain)
    rows: list[EntryRow] = []
    for index, (entry, raw) in enumerate(zip(entries, raw_entries, strict=True)):
        try:
            # The chain covers the entry exactly as sent, members this version ignores included.
            body = entry_bytes(raw)
        except CanonicalizationError as exc:
            raise BatchRejected(
                400, "invalid_entry", f"no RFC 8785 form, so no chain can cover it: {exc}", index
            ) from None
        has_override = entry.override is not None
        temperature = entry.temperature_c
        log_id = entry.log_id.lower()
        text = body.decode("utf-8")
        previous = (
            GENESIS_CHAIN if entry.seq == 1 else first_chain.get((log_id, entry.seq - 1))
        )
        if previous is not None and not chain_follows(previous, text, entry.chain):
            previous = None
        rows.append(
            EntryRow(
                index,
                entry.id.lower(),
                entry.kiosk_id,
                entry.venue_id,
                log_id,
                entry.seq,
                parse_rfc3339(entry.ts),
                entry.decision,
                has_override,
                entry_flags(
                    decision=entry.decision,
                    has_override=has_override,
                    code_format=entry.code_format,
                    temperature_c=temperature,
                    mask=entry.mask,
                ),
                entry.subject,
                None if temperature is None else float(temperature),
                entry.mask,
                entry.code_format,
                entry.code_verdict,
                entry.code_status,
                entry.policy_version,
                tuple(entry.reasons),
                entry.chain,
                text,
                previous,
            )
        )
    return PreparedBatch(kiosk_id, venue_id, received_at, rows, rollups(rows))
