"""The collector unreachable for hours (simulated clock) while the door keeps deciding (issue 8).

The real door app runs in this process with its wall clock injected: six simulated hours of
visitors (one every three minutes) pass in seconds, while the only way to the collector is a
proxy that refuses every connection. The door keeps deciding and logging; its log is bounded
(`kiosk.max_entries`); the heartbeat's `storage_used_ratio` and the attendant's view say
"storage nearly full" before the bound is reached; at the bound it records, and so admits,
nobody. When the network returns, the collector hears the ratio, the backlog drains exactly
once, and the next visitor is recorded and let in without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from browser import ARTIFACTS, CHROMIUM, chromium_page
from faults.collector import VENUE, RunningCollector, collector_running
from faults.entries import NO_CODE_DENY
from faults.proxy import FaultProxy
from faults.report import report
from test_door_app import MemoryCamera

from kiosk.demo.kit import StandaloneKit, make_kit
from kiosk.door.app import STORAGE_NEARLY_FULL, DoorApp, storage_warnings
from kiosk.door.config import KioskConfig, LocalApiSection
from kiosk.door.engine import DecisionEvent
from kiosk.door.knowledge import save_cached_doc
from kiosk.door.screen import ScreenHub, build_local_app
from kiosk.door.store import EntryLog, NotRecorded
from kiosk.door.sync import RetryPolicy, SyncService
from kiosk.model import Mask

KIOSK = "k-offline-hours"
BOUND = 100  # the smallest kiosk.max_entries the configuration allows
PIN = "4711"
HOURS = 6
EVERY_S = 180.0  # one visitor every three minutes


class SimulatedClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def cached_config(kit: StandaloneKit) -> dict[str, Any]:
    """The collector's kiosk configuration as pulled just before the network went."""
    return {
        "kiosk_id": KIOSK,
        "venue_id": VENUE,
        "venue_type": "general",
        "policy_version": "default-1",
        "policy": {
            "max_temperature_c": 37.3,
            "accepted_status": ["green"],
            "mask_required": True,
            "max_test_age_hours": None,
            "deny_travel_risk": False,
        },
        "trust_list": kit.issuer.trust.to_jwks(),
        "revocation_list": {"updated": 0, "revoked": []},
        "pseudonym_key": {"version": 1, "key": "A" * 43},
        "max_trust_age_hours": 48,
    }


@contextlib.asynccontextmanager
async def door_offline(
    kit: StandaloneKit, collector: RunningCollector, proxy: FaultProxy, clock: SimulatedClock
) -> AsyncIterator[tuple[DoorApp, SyncService, asyncio.Queue[DecisionEvent]]]:
    await asyncio.to_thread(kit.state.mkdir)
    await asyncio.to_thread(save_cached_doc, kit.state, cached_config(kit), clock())
    base = {k: v for k, v in kit.config().items() if k != "standalone"}
    config = KioskConfig.model_validate(
        {
            **base,
            "kiosk": {**base["kiosk"], "id": KIOSK, "venue_id": VENUE, "max_entries": BOUND},
            "local_api": {**base["local_api"], "attendant_pin": PIN},
            "collector": {
                "url": proxy.url,
                "token_file": str(collector.token_files[KIOSK]),
                "timeout": 1,
            },
        }
    )
    decisions: asyncio.Queue[DecisionEvent] = asyncio.Queue()
    # No service of its own: the test drives sync's steps at the simulated times.
    app = DoorApp(
        config,
        camera=MemoryCamera(),
        services=[],
        decision_lines=False,
        observers=[decisions.put_nowait],
        clock=clock,
    )
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.wait_ready(), 10)
    assert app.parts is not None
    sync = SyncService(app.parts.runtime, retry=RetryPolicy(base_s=0.05, cap_s=0.2))
    try:
        yield app, sync, decisions
    finally:
        await sync.close()
        app.request_stop()
        await asyncio.wait_for(task, 10)


async def attendant_view(app: DoorApp) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(app.url + "api/decisions", headers={"X-Attendant-Secret": PIN}) as answer,
    ):
        assert answer.status == 200
        return dict(await answer.json())


async def visit(
    app: DoorApp, code: str, decisions: asyncio.Queue[DecisionEvent]
) -> dict[str, Any] | None:
    """One visitor: code, temperature and mask in; the logged entry, or None if not recorded."""
    assert app.parts is not None
    engine = app.parts.engine
    before = engine.not_recorded
    engine.on_frame_texts([code])
    engine.on_temperature(36.6)
    engine.on_mask(Mask.ON)
    deadline = time.monotonic() + 10
    while decisions.empty() and engine.not_recorded == before:
        assert time.monotonic() < deadline, "the visit was not decided"
        await asyncio.sleep(0.005)
    return None if decisions.empty() else (await decisions.get()).entry


async def test_hours_without_the_collector_warn_before_the_bound_and_recover(
    tmp_path: Path,
) -> None:
    clock = SimulatedClock(time.time() - HOURS * 3600)
    async with (
        collector_running(tmp_path / "collector", (KIOSK,)) as collector,
        FaultProxy(collector.port) as proxy,
    ):
        await proxy.refuse()  # the network is gone for the whole day
        kit = await asyncio.to_thread(make_kit, tmp_path)
        issuer = kit.issuer
        async with door_offline(kit, collector, proxy, clock) as (app, sync, decisions):
            assert app.parts is not None
            recorded, refused, beats = [], 0, []
            warned_at: int | None = None
            bound_at: int | None = None
            visits = int(HOURS * 3600 / EVERY_S)
            for number in range(1, visits + 1):
                clock.now += EVERY_S
                entry = await visit(app, issuer.code("green", int(clock.now)), decisions)
                if entry is None:
                    refused += 1
                    bound_at = bound_at or number
                    assert app.parts.hub.last.state == "not_recorded"  # nobody let in
                else:
                    recorded.append(entry)
                if number % 10 == 0:  # every half hour: a heartbeat try, the attendant looks
                    assert await sync.send_heartbeat() is not None  # unreachable
                    beats.append(await app.parts.runtime.heartbeat())
                    view = await attendant_view(app)
                    codes = [w["code"] for w in view["warnings"]]
                    ratio = beats[-1]["storage_used_ratio"]
                    assert ("storage_nearly_full" in codes) == (ratio >= STORAGE_NEARLY_FULL)
                    if codes and warned_at is None:
                        warned_at = number
                    assert await sync.drain() is not None  # nothing gets through
            offline_ratio = (await app.parts.runtime.heartbeat())["storage_used_ratio"]
            trust_age_h = beats[-1]["trust_age_s"] / 3600

            # The network returns.
            await proxy.restore()
            assert await sync.send_heartbeat() is None
            assert await sync.drain() is None
            after = await app.parts.runtime.heartbeat()
            clock.now += EVERY_S
            next_visitor = await visit(app, issuer.code("green", int(clock.now)), decisions)
            view_after = await attendant_view(app)
            heard = await collector.rows(
                "SELECT storage_used_ratio, backlog FROM heartbeats WHERE kiosk_id = ?", KIOSK
            )
            held = await collector.rows(
                "SELECT id, seq FROM entries WHERE kiosk_id = ? ORDER BY seq", KIOSK
            )

    assert all(entry["decision"] == "allow" for entry in recorded)
    assert len(recorded) == BOUND and refused == visits - BOUND and bound_at == BOUND + 1
    # Warned on the attendant's view (and in the heartbeat) well before the bound.
    assert warned_at is not None and warned_at < BOUND
    ratios = [beat["storage_used_ratio"] for beat in beats]
    assert ratios == sorted(ratios) and ratios[0] < STORAGE_NEARLY_FULL and offline_ratio == 1.0
    assert trust_age_h > HOURS - 0.5  # decided on lists pulled before the outage
    # Back online: the collector heard the full ratio, holds every entry once, the door works.
    assert heard == [(1.0, BOUND)]
    assert [row[0] for row in held] == [entry["id"] for entry in recorded]
    assert [row[1] for row in held] == list(range(1, BOUND + 1))
    assert after["backlog"] == 0 and after["storage_used_ratio"] == 0.0
    assert next_visitor is not None and next_visitor["decision"] == "allow"
    assert view_after["warnings"] == []
    report(
        "offline-hours",
        f"{HOURS} simulated hours unreachable, {visits} visitors: {len(recorded)} recorded up to "
        f"the bound of {BOUND}, attendant warned at visitor {warned_at}, {refused} not recorded "
        "(nobody admitted); back online the backlog drained exactly once and the next visitor "
        "was admitted without a restart",
        simulated_hours=HOURS,
        visitors=visits,
        recorded=len(recorded),
        not_recorded=refused,
        warned_at_visitor=warned_at,
        bound=BOUND,
        entries_compared=len(held),
    )


async def test_at_the_bound_sent_entries_make_room_and_unsent_ones_never_go(
    tmp_path: Path,
) -> None:
    draft = NO_CODE_DENY
    log = await EntryLog.open(tmp_path / "entries.db", kiosk_id="k", venue_id="v", max_entries=5)
    entries = [await log.append(replace(draft, ts=draft.ts + i)) for i in range(5)]
    assert (await log.stats()).storage_used_ratio == 1.0
    with pytest.raises(NotRecorded) as refused:  # no unsent entry is ever dropped for room
        await log.append(draft)
    assert refused.value.reason == "storage_full"
    await log.mark_sent([entries[0]["id"], entries[1]["id"]])
    assert (await log.stats()).storage_used_ratio == 0.6
    sixth = await log.append(draft)  # the oldest sent entry makes room
    assert sixth["seq"] == 6 and await log.get(entries[0]["id"]) is None
    assert await log.get(entries[1]["id"]) is not None  # only as much room as needed
    assert [e["seq"] for e in await log.unsent(10)] == [3, 4, 5, 6]
    await log.close()


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
async def test_the_attendants_page_shows_storage_nearly_full(tmp_path: Path) -> None:
    ratio = {"now": 0.5}

    async def status() -> dict[str, Any]:
        return {"warnings": storage_warnings(ratio["now"])}

    api = LocalApiSection(attendant_pin=PIN)
    runner = web.AppRunner(build_local_app(ScreenHub(), api, status=status), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/attendant"
    try:
        async with chromium_page(tmp_path / "profile", "attendant-storage-warning") as page:
            await page.goto(url)
            await page.fill("#secret", PIN)
            await page.dispatch_event("#secret", "change")
            await page.wait_for_function("document.getElementById('decisions-error').hidden")
            assert await page.is_hidden("#warnings")
            ratio["now"] = 0.85
            await page.wait_for_selector("#warnings li", timeout=10000)
            text = await page.text_content("#warnings li")
            await page.screenshot(path=str(ARTIFACTS / "attendant-storage-nearly-full.png"))
    finally:
        await runner.cleanup()
    assert text is not None and "Storage nearly full (85%" in text and "本地存储将满" in text
