"""The kiosks' endpoints: entries, heartbeats, configuration (sync-api.md)."""

from __future__ import annotations

import time
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from kiosk.collector.auth import AuthGate
from kiosk.collector.batch import BatchRejected
from kiosk.collector.bodies import read_body, read_json
from kiosk.collector.errors import ApiError
from kiosk.collector.keys import (
    AUTH_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
    DECODER_KEY,
    KIOSK_CONFIG_KEY,
    METRICS_KEY,
    STORAGE_KEY,
)
from kiosk.collector.kiosk_config import UnknownVenueType, etag_matches
from kiosk.collector.operations import Operation, Reply
from kiosk.collector.storage.base import (
    ForeignEntryId,
    HeartbeatRecord,
    KioskInfo,
    Principal,
)
from kiosk.wire import (
    MAX_BATCH_ENTRIES,
    MAX_BODY_BYTES,
    Entry,
    Heartbeat,
    KioskConfigDoc,
    parse_rfc3339,
)


class EntryBatch(BaseModel):
    """The body of `POST /api/v1/entries` (wire.EntryBatch with its entries' schema, for the
    OpenAPI document; the handler checks entries one by one to report the first bad index)."""

    entries: Annotated[list[Entry], Field(max_length=MAX_BATCH_ENTRIES)]


class IngestAnswer(BaseModel):
    accepted: int = Field(description="new entries stored")
    duplicates: int = Field(description="entries whose id was already held for this kiosk")


async def _kiosk_principal(request: web.Request) -> tuple[AuthGate, Principal]:
    gate = request.app[AUTH_KEY]
    principal = await gate.principal(request, "kiosk")
    if principal.kiosk_id is None or principal.venue_id is None:
        raise gate.forbidden(request, "scope", "this token belongs to no provisioned kiosk")
    return gate, principal


async def post_entries(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[METRICS_KEY]
    _, principal = await _kiosk_principal(request)
    assert principal.kiosk_id is not None and principal.venue_id is not None
    server = app[CONFIG_KEY].server
    body = await read_body(request, limit=MAX_BODY_BYTES, within_s=server.body_timeout)
    started = time.perf_counter()
    try:
        # Decoding and checking 1,000 entries takes about 12 ms of CPU: off the event loop, so
        # heartbeats and configuration requests are answered meanwhile.
        batch = await app[DECODER_KEY].decode(
            body, principal.kiosk_id, principal.venue_id, app[CLOCK_KEY]()
        )
    except BatchRejected as exc:
        outcome = {400: "invalid", 403: "forbidden", 413: "too_large"}[exc.status]
        metrics.batches.labels(outcome).inc()
        if exc.status == 403:
            app[AUTH_KEY].note_failure(request, "scope")
        if exc.index is None:
            raise ApiError(exc.status, exc.error, exc.detail) from None
        raise ApiError(exc.status, exc.error, exc.detail, index=exc.index) from None
    try:
        result = await app[STORAGE_KEY].ingest_entries(batch)
    except ForeignEntryId as exc:
        metrics.batches.labels("foreign_id").inc()
        raise ApiError(
            400,
            "invalid_entry",
            f"id {exc.entry_id} is already held for another kiosk",
            index=exc.index,
        ) from None
    metrics.batch_seconds.observe(time.perf_counter() - started)
    metrics.batches.labels("accepted").inc()
    metrics.entries_ingested.inc(result.accepted)
    metrics.entry_duplicates.inc(result.duplicates)
    checked = result.accepted - result.unverified_links
    metrics.chain_links.labels("ok").inc(checked - result.broken_links)
    metrics.chain_links.labels("broken").inc(result.broken_links)
    metrics.chain_links.labels("unverified").inc(result.unverified_links)
    return web.json_response({"accepted": result.accepted, "duplicates": result.duplicates})


async def _kiosk_info(request: web.Request, principal: Principal) -> KioskInfo:
    assert principal.kiosk_id is not None
    kiosk = await request.app[STORAGE_KEY].kiosk(principal.kiosk_id)
    if kiosk is None:  # removed between the token check and now
        raise request.app[AUTH_KEY].forbidden(request, "scope", "this kiosk is not provisioned")
    return kiosk


async def post_heartbeat(request: web.Request) -> web.Response:
    app = request.app
    gate, principal = await _kiosk_principal(request)
    config = app[CONFIG_KEY]
    document = await read_json(
        request, limit=config.limits.max_heartbeat_bytes, within_s=config.server.body_timeout
    )
    try:
        beat = Heartbeat.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "heartbeat"
        raise ApiError(400, "bad_request", f"{where}: {error['msg']}") from None
    if beat.kiosk_id != principal.kiosk_id:
        raise gate.forbidden(
            request, "scope", f"this token may report only for kiosk {principal.kiosk_id!r}"
        )
    kiosk = await _kiosk_info(request, principal)
    try:
        policy = await app[KIOSK_CONFIG_KEY].policy_in_force(kiosk.venue_type)
    except UnknownVenueType as exc:
        raise ApiError(500, "internal_error", str(exc)) from None
    received_at = app[CLOCK_KEY]()
    await app[STORAGE_KEY].record_heartbeat(
        HeartbeatRecord(
            kiosk_id=kiosk.kiosk_id,
            venue_id=kiosk.venue_id,
            received_at=received_at,
            ts=parse_rfc3339(beat.ts),
            log_id=beat.log_id.lower(),
            last_seq=beat.last_seq,
            backlog=beat.backlog,
            policy_version=beat.policy_version,
            camera=beat.sensors.camera,
            thermometer=beat.sensors.thermometer,
            trust_age_s=None if beat.trust_age_s is None else float(beat.trust_age_s),
            set_aside=beat.set_aside,
            storage_used_ratio=(
                None if beat.storage_used_ratio is None else float(beat.storage_used_ratio)
            ),
            software=beat.software,
            published_policy_version=policy.version,
            max_trust_age_hours=policy.max_trust_age_hours,
            silent_after_s=config.findings.silent_after,
            body=beat.model_dump(mode="json"),
        )
    )
    app[METRICS_KEY].heartbeats.inc()
    return web.Response(status=204)


async def get_kiosk_config(request: web.Request) -> web.Response:
    _, principal = await _kiosk_principal(request)
    kiosk = await _kiosk_info(request, principal)
    try:
        etag, body = await request.app[KIOSK_CONFIG_KEY].document(kiosk)
    except UnknownVenueType as exc:
        raise ApiError(500, "internal_error", str(exc)) from None
    # The body holds the pseudonym key: no shared cache may keep it.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    return web.Response(text=body, content_type="application/json", headers=headers)


_ETAG = {"ETag": "the configuration's version; send it back in If-None-Match"}

OPERATIONS = [
    Operation(
        "POST",
        "/api/v1/entries",
        post_entries,
        "postEntries",
        "Send a batch of entries (at most 1,000, body at most 1 MiB)",
        roles=("kiosk",),
        request=EntryBatch,
        replies={200: Reply("Committed: new entries and duplicates counted", IngestAnswer)},
        errors=(400, 401, 403, 408, 413, 503),
        description=(
            "The whole batch is checked before anything is stored. 400 with `index` for the "
            "first invalid entry or an id held for another kiosk; 403 when an entry's kiosk_id "
            "or venue_id is not the token's; 413 over 1,000 entries or 1 MiB. An id already "
            "held for this kiosk is a duplicate. Chain links and seq gaps are recorded as "
            "findings, never refused. The answer comes after the commit."
        ),
    ),
    Operation(
        "POST",
        "/api/v1/heartbeat",
        post_heartbeat,
        "postHeartbeat",
        "Report the kiosk's state (at least once a minute)",
        roles=("kiosk",),
        request=Heartbeat,
        replies={204: Reply("Recorded with the collector's receive time", None)},
        errors=(400, 401, 403, 408, 413, 503),
    ),
    Operation(
        "GET",
        "/api/v1/kiosk/config",
        get_kiosk_config,
        "getKioskConfig",
        "Everything the kiosk needs to decide offline",
        roles=("kiosk",),
        replies={
            200: Reply("The configuration", KioskConfigDoc, headers=_ETAG),
            304: Reply("Unchanged since the ETag sent in If-None-Match", None, headers=_ETAG),
        },
        errors=(401, 403, 503),
        parameters=(
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "the ETag of the copy the kiosk holds",
            },
        ),
    ),
]
