"""The door app in-process: real entry log, real local API and decoder, frames from memory. What
it decides from what it is shown, the seam a sync task uses, and that stopping leaves nothing
running."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from kiosk.demo.frames import camera_frame
from kiosk.demo.kit import StandaloneKit, make_kit
from kiosk.door.app import DoorApp, DoorRuntime
from kiosk.door.config import KioskConfig
from kiosk.door.engine import DecisionEvent
from kiosk.door.frames import FrameDecoder
from kiosk.door.knowledge import save_cached_doc
from kiosk.door.notify import Notifier
from kiosk.door.store import EntryLog
from kiosk.vision.camera import Frame
from kiosk.vision.decode import ChainSettings, DecoderChain
from kiosk.vision.decoders import ZxingOptions
from kiosk.wire import Heartbeat


class MemoryCamera:
    """Frames put in by the test; a fault switched on by the test."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[Any] = asyncio.Queue()
        self.fault: str | None = None
        self.started = self.stopped = 0

    @property
    def state(self) -> str:
        return "fault" if self.fault else "ok"

    @property
    def detail(self) -> str:
        return self.fault or ""

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail}

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def next_frame(self) -> Any:
        return Frame(await self.frames.get(), time.monotonic(), 0)

    def show(self, *texts: str) -> None:
        self.frames.put_nowait(camera_frame(list(texts), size=(640, 480)))

    def blank(self) -> None:
        self.frames.put_nowait(np.full((480, 640, 3), 128, dtype=np.uint8))


class RunningDoor:
    def __init__(self, app: DoorApp, camera: MemoryCamera, decisions: asyncio.Queue[Any]) -> None:
        self.app = app
        self.camera = camera
        self.decisions: asyncio.Queue[DecisionEvent] = decisions
        self.task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        self.app.request_stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)

    @property
    def url(self) -> str:
        return self.app.url

    async def post(self, path: str, body: dict[str, Any]) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, json=body) as r,
        ):
            return r.status

    async def status(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(self.url + "api/status") as r:
            return dict(await r.json())

    async def next_decision(self) -> dict[str, Any]:
        return (await asyncio.wait_for(self.decisions.get(), 10)).entry


@contextlib.asynccontextmanager
async def running(config: KioskConfig, **kwargs: Any) -> AsyncIterator[RunningDoor]:
    camera = MemoryCamera()
    decisions: asyncio.Queue[DecisionEvent] = asyncio.Queue()
    app = DoorApp(
        config, camera=camera, decision_lines=False, observers=[decisions.put_nowait], **kwargs
    )
    door = RunningDoor(app, camera, decisions)
    door.task = asyncio.create_task(app.run())
    try:
        await asyncio.wait_for(app.wait_ready(), 10)
        yield door
    finally:
        await door.stop()


@pytest.fixture
def kit(tmp_path: Path) -> StandaloneKit:
    return make_kit(tmp_path)


def config_of(kit: StandaloneKit, **sections: Any) -> KioskConfig:
    return KioskConfig.model_validate(kit.config(**sections))


async def test_codes_readings_and_masks_make_logged_decisions(kit: StandaloneKit) -> None:
    now = int(time.time())
    green, red = kit.issuer.code("green", now), kit.issuer.code("red", now)
    async with running(config_of(kit)) as door:
        door.camera.show(green)
        door.camera.show(green)  # the same code in the next frame: the same visit
        await asyncio.sleep(0.3)
        assert (await door.status())["open_visits"] == 1
        assert await door.post("api/thermometer", {"celsius": 36.6}) == 202
        assert await door.post("api/mask", {"mask": "on"}) == 202
        allow = await door.next_decision()
        door.camera.blank()
        door.camera.show(red)
        await door.post("api/thermometer", {"celsius": 37.3})
        await door.post("api/mask", {"mask": "off"})
        deny = await door.next_decision()
        status = await door.status()
    assert (allow["decision"], allow["seq"], allow["temperature_c"]) == ("allow", 1, 36.6)
    assert (deny["decision"], deny["reasons"]) == ("deny", ["status_red", "fever", "mask_off"])
    assert status["entry_log"]["last_seq"] == 2 and status["decisions"] == 2
    assert status["sensors"]["camera"]["state"] == "ok"
    log = await EntryLog.open(kit.state / "entries.db", kiosk_id="k", venue_id="v")
    assert [e["id"] for e in await log.unsent(10)] == [allow["id"], deny["id"]]
    await log.close()


async def test_the_screen_follows_decisions_and_door_conditions(kit: StandaloneKit) -> None:
    async with (
        running(config_of(kit)) as door,
        aiohttp.ClientSession() as session,
        session.get(door.url + "events") as stream,
    ):

        async def next_state() -> dict[str, Any]:
            while True:
                line = await asyncio.wait_for(stream.content.readline(), 5)
                if line.startswith(b"data: "):
                    return dict(json.loads(line[6:]))

        assert (await next_state())["state"] == "idle"
        door.camera.show(kit.issuer.code("green", int(time.time())))
        await door.post("api/thermometer", {"celsius": 36.5})
        await door.post("api/mask", {"mask": "on"})
        shown = await next_state()
        assert (shown["state"], shown["temperature_c"]) == ("pass", 36.5)
        door.camera.fault = "no frame for 5 s"
        # The PASS keeps its 3 s; what follows it (its `rest`) is now "out of service".
        state = await next_state()
        resting = state.get("rest", state)
        assert resting["state"] == "out_of_service"
        assert resting["lines"][0]["en"] == "Camera fault"
        door.camera.fault = None
        state = await next_state()
        assert state.get("rest", state)["state"] == "idle"


async def test_a_sync_service_sees_the_runtime_and_can_change_knowledge(
    kit: StandaloneKit,
) -> None:
    seen: list[DoorRuntime] = []
    heartbeats: list[dict[str, Any]] = []
    cancelled = asyncio.Event()

    async def fake_sync(runtime: DoorRuntime) -> None:
        seen.append(runtime)
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async with running(config_of(kit), services=[fake_sync]) as door:
        await asyncio.sleep(0.05)
        [runtime] = seen
        runtime.clock_offset.set(250)
        door.camera.show(kit.issuer.code("green", int(time.time())))
        await door.post("api/thermometer", {"celsius": 36.5})
        await door.post("api/mask", {"mask": "on"})
        first = await door.next_decision()
        # A new configuration arrives: the unit is closed; the next visitor is told so.
        current = runtime.knowledge.current()
        from dataclasses import replace

        runtime.knowledge.replace(replace(current, venue_closed=True))
        door.camera.show(kit.issuer.code("green", int(time.time())))
        await door.post("api/thermometer", {"celsius": 36.5})
        await door.post("api/mask", {"mask": "on"})
        second = await door.next_decision()
        heartbeats.append(await runtime.heartbeat())
        assert [e["seq"] for e in await runtime.entry_log.unsent(10)] == [1, 2]
    assert cancelled.is_set()
    assert first["clock_offset_ms"] == 250
    assert (second["decision"], second["reasons"]) == ("deny", ["venue_closed"])
    beat = Heartbeat.model_validate(heartbeats[0])
    assert (beat.last_seq, beat.backlog, beat.sensors.camera) == (2, 2, "ok")


async def test_collector_mode_without_a_cache_cannot_verify(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    token = tmp_path / "token"
    token.write_text("t" * 43)
    config = KioskConfig.model_validate(
        {
            **{k: v for k, v in kit.config().items() if k != "standalone"},
            "collector": {"url": "http://127.0.0.1:9", "token_file": str(token)},
        }
    )
    async with running(config) as door:
        status = await door.status()
        assert status["conditions"]["trust_fresh"] is False
        assert status["knowledge_source"] == "none"
        door.camera.show(kit.issuer.code("green", int(time.time())))
        await door.post("api/thermometer", {"celsius": 36.5})
        await door.post("api/mask", {"mask": "on"})
        entry = await door.next_decision()
    assert (entry["decision"], entry["reasons"]) == ("deny", ["trust_stale"])
    assert entry["subject"] is None

    # With a cached configuration from an earlier run, it decides offline at once.
    doc = {
        "kiosk_id": "k-demo-1",
        "venue_id": "demo-venue-1",
        "venue_type": "general",
        "policy_version": "cached-7",
        "policy": {
            "max_temperature_c": 37.3,
            "accepted_status": ["green"],
            "mask_required": False,
            "max_test_age_hours": None,
            "deny_travel_risk": False,
        },
        "trust_list": kit.issuer.trust.to_jwks(),
        "revocation_list": {"updated": 0, "revoked": []},
        "pseudonym_key": {"version": 4, "key": "A" * 43},
        "max_trust_age_hours": 48,
    }
    save_cached_doc(kit.state, doc, time.time() - 60)
    assert (kit.state / "collector-config.json").stat().st_mode & 0o777 == 0o600
    async with running(config) as door:
        door.camera.show(kit.issuer.code("green", int(time.time())))
        await door.post("api/thermometer", {"celsius": 36.5})
        entry = await door.next_decision()  # no mask needed under this policy
    assert (entry["decision"], entry["policy_version"]) == ("allow", "cached-7")
    assert entry["subject_key_version"] == 4 and entry["seq"] == 2


async def test_ready_and_watchdog_are_sent_from_the_running_door(kit: StandaloneKit) -> None:
    path = kit.folder / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        notifier = Notifier(
            {
                "NOTIFY_SOCKET": str(path),
                "WATCHDOG_USEC": "200000",
                "WATCHDOG_PID": str(os.getpid()),
            }
        )
        async with running(config_of(kit), notifier=notifier):
            messages = [await asyncio.to_thread(sock.recv, 200) for _ in range(3)]
        messages.append(await asyncio.to_thread(sock.recv, 200))
        while b"STOPPING=1" not in messages:
            messages.append(await asyncio.to_thread(sock.recv, 200))
    assert any(m.startswith(b"READY=1") for m in messages)
    assert messages.count(b"WATCHDOG=1") >= 2


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_stopping_leaves_no_task_thread_or_socket(kit: StandaloneKit) -> None:
    threads_before = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()
    fds_before = open_fds()
    sensors = {"thermometer": {"source": "simulated"}, "mask": {"source": "simulated"}}
    async with running(config_of(kit, **sensors)) as door:
        port = int(door.url.rsplit(":", 1)[1].strip("/"))
        door.camera.show(kit.issuer.code("red", int(time.time())))
        await door.next_decision()
        camera = door.camera
        async with aiohttp.ClientSession() as session, session.get(door.url + "events") as stream:
            await stream.content.readline()
            # Stop while a page is connected: its stream is ended, not left hanging.
            await door.stop()
            assert await asyncio.wait_for(stream.content.read(), 5) is not None
            assert stream.content.at_eof()
    assert camera.started == camera.stopped == 1
    assert asyncio.all_tasks() == tasks_before
    # aiosqlite answers close() from its worker thread a moment before that thread returns: give
    # finishing threads a moment to end; one that is still running after it has leaked.
    for _ in range(100):
        leftover = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        if not leftover:
            break
        await asyncio.sleep(0.02)
    assert leftover == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    await asyncio.sleep(0)
    assert open_fds() <= fds_before | {str(n) for n in range(3)}


async def test_a_port_in_use_is_one_clear_error(kit: StandaloneKit) -> None:
    from kiosk.errors import KioskError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = DoorApp(config_of(kit, local_api={"port": port}), camera=MemoryCamera())
        with pytest.raises(KioskError, match=f"cannot listen on 127.0.0.1:{port}"):
            await asyncio.wait_for(app.run(), 10)


async def test_a_log_that_refuses_writes_says_not_recorded_and_admits_nobody(
    kit: StandaloneKit,
) -> None:
    async with running(config_of(kit)) as door:
        assert door.app.parts is not None
        db = door.app.parts.entry_log._db
        assert db is not None
        # As a read-only mount does (file modes prove nothing to root): SQLITE_READONLY.
        await db.execute("PRAGMA query_only = 1")
        async with (
            aiohttp.ClientSession() as session,
            session.get(door.url + "events") as stream,
        ):
            states = []

            async def until(state: str) -> dict[str, Any]:
                while True:
                    line = await asyncio.wait_for(stream.content.readline(), 5)
                    if line.startswith(b"data: "):
                        states.append(json.loads(line[6:]))
                        if states[-1]["state"] == state:
                            return dict(states[-1])

            await until("idle")
            door.camera.show(kit.issuer.code("green", int(time.time())))
            await door.post("api/thermometer", {"celsius": 36.5})
            await door.post("api/mask", {"mask": "on"})
            shown = await until("not_recorded")
            assert shown["title"]["en"] == "Not recorded — please call staff"
            assert shown.get("rest", shown)["state"] == "not_recorded"  # until a write works
            assert door.decisions.empty()
            status = await door.status()
            assert status["conditions"]["store_failure"] == "read_only"
            assert (status["decisions"], status["not_recorded"]) == (0, 1)
            await db.execute("PRAGMA query_only = 0")
            door.camera.show(kit.issuer.code("green", int(time.time())))
            await door.post("api/thermometer", {"celsius": 36.5})
            await door.post("api/mask", {"mask": "on"})
            entry = await door.next_decision()
            assert (entry["decision"], entry["seq"]) == ("allow", 1)
            assert all(s["state"] != "pass" for s in states)  # no PASS without a record


def test_the_fallback_decoders_get_one_frame_per_quarter_second_of_camera_time() -> None:
    # zxing-cpp broken (an unknown binarizer raises on every frame): only the fallback can read,
    # so the reads show on which frames it ran.
    only_fallback = DecoderChain(
        ChainSettings(zxing_passes=(ZxingOptions(binarizer="NoSuchBinarizer"),))
    )
    decode = FrameDecoder(fallback_every=0.25, chain=only_fallback)
    frame = camera_frame(["VHC1:held-up"], size=(640, 480))
    read = [bool(decode(frame, 10.0 + n / 30)) for n in range(16)]  # 30 fps
    assert [n for n, hit in enumerate(read) if hit] == [0, 8]
