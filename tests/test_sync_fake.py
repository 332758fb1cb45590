"""A small real collector after sync-api.md for the sync client's tests (entries, heartbeats and
the kiosk configuration on 127.0.0.1, port 0), with faults the tests switch on: error answers,
a smaller body limit, stalls, connections dropped before or after the batch is committed, a
skewed clock. The tests at the bottom check the fake itself keeps to the spec, so what the sync
tests conclude from it holds against a real collector too (tests/test_sync_e2e.py runs one).

Other sync test modules import `FakeCollector`, `SyncKit` and `make_sync_kit` from here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from kiosk.demo.samples import SampleIssuer, new_sample_issuer
from kiosk.door.app import ClockOffset, DoorRuntime
from kiosk.door.config import KioskConfig
from kiosk.door.knowledge import KnowledgeHolder, stale_knowledge
from kiosk.door.store import EntryDraft, EntryLog
from kiosk.door.sync import RetryPolicy, SyncService
from kiosk.wire import GENESIS_CHAIN, Entry, Heartbeat, chain_link, error_body

KIOSK_ID = "k-sync-1"
VENUE_ID = "v-sync-1"
FAST_RETRY = RetryPolicy(base_s=0.02, cap_s=0.2)

Fault = Callable[[web.Request], Any]


def error(status: int, code: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response(error_body(code, detail, **extra), status=status)


class FakeCollector:
    """One venue, one kiosk. `script` holds faults for the next entries requests, in order:
    "ok" (answer as usual), an int (answer that status), "drop" (close the connection, nothing
    stored), "commit_drop"
    (store, then close without answering: the worst case) or "stall" (answer nothing until the
    test ends)."""

    def __init__(self, token: str, *, config_doc: dict[str, Any]) -> None:
        self.token = token
        self.entries: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.bodies: list[bytes] = []  # every entries request body, as received
        self.answers: list[int] = []  # status of each entries request (0: none sent)
        self.heartbeats: list[dict[str, Any]] = []
        self.config_requests: list[str | None] = []  # the If-None-Match of each
        self.script: deque[int | str] = deque()
        self.max_batch = 1000
        self.slow_over: int | None = None  # batches larger than this answer after `slow_s`
        self.slow_s = 1.0
        self.foreign_ids: set[str] = set()  # ids "held for another kiosk": 400 with index
        self.broken_links = 0
        self.date_skew_s = 0.0
        self.config_doc = config_doc
        self.config_generation = 1
        self.down_for_config = False
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.scheme = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def publish(self, **changes: Any) -> None:
        """A new configuration (a new ETag)."""
        self.config_doc = {**self.config_doc, **changes}
        self.config_generation += 1

    async def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "http" if tls is None else "https"
        app = web.Application(middlewares=[self._date_and_auth])
        app.router.add_post("/api/v1/entries", self._entries)
        app.router.add_post("/api/v1/heartbeat", self._heartbeat)
        app.router.add_get("/api/v1/kiosk/config", self._config)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=tls)
        await site.start()
        self.port = port or int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _date_and_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            response: web.StreamResponse = error(401, "unauthorized", "unknown token")
        else:
            response = await handler(request)
        response.headers["Date"] = formatdate(time.time() + self.date_skew_s, usegmt=True)
        return response

    async def _entries(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(raw)
        fault = self.script.popleft() if self.script else None
        if fault == "stall":
            await self._release.wait()
        if fault == "drop":
            return self._drop(request)
        if isinstance(fault, int):
            self.answers.append(fault)
            return error(fault, f"scripted_{fault}", "the test asked for this answer")
        try:
            batch = json.loads(raw)["entries"]
        except (ValueError, KeyError, TypeError):
            self.answers.append(400)
            return error(400, "invalid_body", "not a batch")
        if self.slow_over is not None and len(batch) > self.slow_over:
            await asyncio.sleep(self.slow_s)  # a slow link: it arrives, but late
        if len(batch) > self.max_batch:
            self.answers.append(413)
            return error(413, "too_large", f"at most {self.max_batch} entries")
        for index, item in enumerate(batch):
            try:
                entry = Entry.model_validate(item)
            except ValidationError as exc:
                self.answers.append(400)
                return error(400, "invalid_entry", str(exc.errors()[0]["msg"]), index=index)
            if (entry.kiosk_id, entry.venue_id) != (KIOSK_ID, VENUE_ID):
                self.answers.append(403)
                return error(403, "forbidden", "not this token's kiosk")
            if entry.id in self.foreign_ids:
                self.answers.append(400)
                return error(400, "foreign_id", "id held for another kiosk", index=index)
        accepted = duplicates = 0
        for item in batch:
            if item["id"] in self.entries:
                duplicates += 1
                continue
            self.entries[item["id"]] = item
            self.order.append(item["id"])
            accepted += 1
        if fault == "commit_drop":
            return self._drop(request)
        self.answers.append(200)
        return web.json_response({"accepted": accepted, "duplicates": duplicates})

    def _drop(self, request: web.Request) -> web.StreamResponse:
        self.answers.append(0)
        assert request.transport is not None
        request.transport.abort()
        return web.Response(status=500)  # never reaches the kiosk

    async def _heartbeat(self, request: web.Request) -> web.StreamResponse:
        members = await request.json()
        try:
            Heartbeat.model_validate(members)
        except ValidationError as exc:
            return error(400, "invalid_heartbeat", str(exc.errors()[0]["msg"]))
        self.heartbeats.append(members)
        return web.Response(status=204)

    async def _config(self, request: web.Request) -> web.StreamResponse:
        self.config_requests.append(request.headers.get("If-None-Match"))
        if self.down_for_config:
            return error(503, "unavailable", "config store down")
        etag = f'"cfg-{self.config_generation}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.json_response(self.config_doc, headers={"ETag": etag})

    # -- what the tests check --------------------------------------------------------------

    def chain_ok(self) -> bool:
        """Every held entry's link follows from its held predecessor (same log, seq - 1)."""
        by_seq = {(e["log_id"], e["seq"]): e for e in self.entries.values()}
        for (log_id, seq), entry in by_seq.items():
            before = by_seq.get((log_id, seq - 1))
            previous = GENESIS_CHAIN if seq == 1 else before["chain"] if before else None
            if previous is not None and chain_link(previous, entry) != entry["chain"]:
                return False
        return True


def pseudonym_key_text() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def config_doc(issuer: SampleIssuer, *, revoked: list[str] | None = None) -> dict[str, Any]:
    revocation = {"updated": int(time.time()), "revoked": revoked or []}
    return {
        "kiosk_id": KIOSK_ID,
        "venue_id": VENUE_ID,
        "venue_type": "general",
        "policy_version": "default-1",
        "policy": {
            "max_temperature_c": 37.3,
            "accepted_status": ["green"],
            "mask_required": True,
            "max_test_age_hours": None,
            "deny_travel_risk": False,
        },
        "trust_list": issuer.trust.to_jwks(),
        "revocation_list": revocation,
        "pseudonym_key": {"version": 1, "key": pseudonym_key_text()},
        "max_trust_age_hours": 48,
    }


DRAFT = EntryDraft(
    ts=time.time(),
    code_format="vhc1",
    code_verdict="valid",
    code_status="green",
    subject="ab" * 32,
    subject_key_version=1,
    temperature_c=36.6,
    mask="on",
    decision="allow",
    reasons=(),
    override=None,
    policy_version="default-1",
    clock_offset_ms=None,
)


@dataclass
class SyncKit:
    folder: Path
    token_file: Path
    collector: FakeCollector
    runtime: DoorRuntime
    issuer: SampleIssuer

    @property
    def log(self) -> EntryLog:
        return self.runtime.entry_log

    services: list[SyncService] = field(default_factory=list)

    def service(self, **kwargs: Any) -> SyncService:
        """A sync service on this kit (closed when the kit is)."""
        made = SyncService(self.runtime, retry=kwargs.pop("retry", FAST_RETRY), **kwargs)
        self.services.append(made)
        return made

    async def write(self, count: int, **changes: Any) -> list[dict[str, Any]]:
        """Append `count` decisions to the kiosk's log (as the engine would)."""
        written = []
        for i in range(count):
            draft = replace(DRAFT, ts=time.time() + i / 1000, **changes)
            written.append(await self.log.append(draft))
        self.runtime.entry_written.set()
        return written

    def stored_bodies(self) -> dict[str, str]:
        import sqlite3

        with sqlite3.connect(self.log.path) as db:
            rows = db.execute("SELECT id, body FROM entries ORDER BY seq").fetchall()
        db.close()
        return {str(i): str(b) for i, b in rows}


def kiosk_config(folder: Path, url: str, token_file: Path, **collector: Any) -> KioskConfig:
    return KioskConfig.model_validate(
        {
            "kiosk": {"id": KIOSK_ID, "venue_id": VENUE_ID, "state_dir": str(folder / "state")},
            "collector": {
                "url": url,
                "token_file": str(token_file),
                "timeout": 2,
                "sync_interval": 60,
                **collector,
            },
        }
    )


@contextlib.asynccontextmanager
async def make_sync_kit(
    folder: Path, *, start: bool = True, tls: ssl.SSLContext | None = None, **collector: Any
) -> AsyncIterator[SyncKit]:
    """A fake collector on 127.0.0.1 (`start=False`: not yet listening), a kiosk log and the
    runtime sync gets; `collector` overrides settings of the kiosk's [collector] section."""
    token = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    token_file = folder / "token"
    token_file.write_text(token + "\n")
    issuer = new_sample_issuer()
    fake = FakeCollector(token, config_doc=config_doc(issuer))
    url = collector.pop("url", "http://127.0.0.1:9")
    if start:
        await fake.start(tls=tls)
        url = fake.url
    config = kiosk_config(folder, url, token_file, **collector)
    entry_log = await EntryLog.open(
        config.kiosk.state_dir / "entries.db", kiosk_id=KIOSK_ID, venue_id=VENUE_ID
    )
    runtime = DoorRuntime(
        config=config,
        entry_log=entry_log,
        knowledge=KnowledgeHolder(stale_knowledge(config)),
        clock_offset=ClockOffset(),
        sensor_states=lambda: {"camera": "ok", "thermometer": "ok", "mask": "ok"},
    )
    kit = SyncKit(folder, token_file, fake, runtime, issuer)
    try:
        yield kit
    finally:
        for service in kit.services:
            await service.close()
        await fake.stop()
        await entry_log.close()


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[SyncKit]:
    async with make_sync_kit(tmp_path) as made:
        yield made


async def until(condition: object, within: float = 5.0) -> None:
    """Wait until `condition()` holds (polled: what it watches has no event of its own)."""
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# -- the fake keeps to the spec ------------------------------------------------------------


async def test_the_fake_refuses_unknown_tokens_and_bad_entries(kit: SyncKit) -> None:
    [entry] = await kit.write(1)
    url = kit.collector.url + "/api/v1/entries"
    bad = {**entry, "temperature_c": 36.66}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"entries": [entry]}) as answer:
            assert answer.status == 401
        headers = {"Authorization": f"Bearer {kit.collector.token}"}
        async with session.post(url, json={"entries": [entry, bad]}, headers=headers) as answer:
            assert answer.status == 400
            assert (await answer.json())["index"] == 1
        for expected in ({"accepted": 1, "duplicates": 0}, {"accepted": 0, "duplicates": 1}):
            async with session.post(url, json={"entries": [entry]}, headers=headers) as answer:
                assert (answer.status, await answer.json()) == (200, expected)
    assert list(kit.collector.entries) == [entry["id"]]
    assert kit.collector.chain_ok()


async def test_the_fake_serves_its_configuration_with_an_etag(kit: SyncKit) -> None:
    url = kit.collector.url + "/api/v1/kiosk/config"
    headers = {"Authorization": f"Bearer {kit.collector.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(url) as answer:
            etag = answer.headers["ETag"]
            assert answer.status == 200
        async with session.get(url, headers={"If-None-Match": etag}) as answer:
            assert answer.status == 304
        kit.collector.publish(policy_version="default-2")
        async with session.get(url, headers={"If-None-Match": etag}) as answer:
            assert answer.status == 200
            assert answer.headers["ETag"] != etag
