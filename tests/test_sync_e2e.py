"""End to end against the real collector: `kiosk collector` as a process on 127.0.0.1, provisioned
with `kiosk admin` (so the kiosk holds a real token), and the real door app deciding visits.

- A kiosk decides offline while the collector is down; the collector comes up; every entry
  arrives exactly once with a valid chain, and an entry the collector refuses (its id is held for
  another kiosk) is set aside alone.
- A revocation list published by an admin reaches the running door without a restart: the
  revoked code is denied. Restarted while the collector is down, the door decides from its
  cached configuration.
- `kiosk run` as a process syncs what it decides, within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from door_process import DoorProcess, assert_chain, kiosk_command, stored_entries
from test_door_app import MemoryCamera, RunningDoor
from test_sync_fake import until

from kiosk.demo.frames import camera_frame
from kiosk.demo.kit import StandaloneKit, make_kit, to_toml
from kiosk.door.app import DoorApp, DoorRuntime
from kiosk.door.config import KioskConfig
from kiosk.door.engine import DecisionEvent
from kiosk.door.store import EntryDraft
from kiosk.door.sync import RetryPolicy, SyncService
from kiosk.wire import GENESIS_CHAIN, canonical_json, chain_link, format_rfc3339, new_uuid7

QUICK_RETRY = RetryPolicy(base_s=0.05, cap_s=0.5)
KIOSKS = ("k-offline", "k-lists", "k-process", "k-other")
VENUE = "v-gate-1"


def admin(config: Path, *commands: list[str]) -> list[str]:
    """`kiosk admin --config FILE ...` for each command, run side by side: their stdouts (a
    token, for the commands that make one)."""
    children = [
        subprocess.Popen(
            [*kiosk_command(), "admin", "--config", str(config), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.append(out.strip())
    return outputs


@dataclass
class Deployment:
    """A collector's configuration and database, provisioned once for this module."""

    folder: Path
    config: Path
    database: Path
    tokens: dict[str, Path] = field(default_factory=dict)
    admin_token: str = ""

    def token(self, kiosk_id: str) -> str:
        return self.tokens[kiosk_id].read_text().strip()

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as db:
            rows = db.execute(sql, params).fetchall()
        db.close()
        return rows


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    folder = tmp_path_factory.mktemp("collector")
    database = folder / "collector.db"
    config = folder / "collector.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = 0\nshutdown_timeout = 1\n'
        f'[database]\nurl = "sqlite:///{database}"\n'
    )
    found = Deployment(folder, config, database)
    admin(config, ["add-venue", VENUE, "--name", "Gate 1", "--region", "city/d1"])
    *tokens, found.admin_token = admin(
        config,
        *(["add-kiosk", kiosk_id, "--venue", VENUE] for kiosk_id in KIOSKS),
        ["add-admin", "city-admin"],
    )
    for kiosk_id, token in zip(KIOSKS, tokens, strict=True):
        found.tokens[kiosk_id] = folder / f"{kiosk_id}.token"
        found.tokens[kiosk_id].write_text(token + "\n")
    return found


class CollectorProcess:
    """`kiosk collector --config FILE --port N` as a child, stopped by its pid."""

    def __init__(self, deployment: Deployment, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                *kiosk_command(),
                "collector",
                "--config",
                str(deployment.config),
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stderr: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            if "listening on" in line:
                self._listening.set()

    def wait_listening(self, timeout: float = 30.0) -> None:
        if not self._listening.wait(timeout):
            self.stop()
            raise AssertionError("the collector did not start: " + "".join(self.stderr)[-2000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)


@contextlib.asynccontextmanager
async def collector_up(deployment: Deployment, port: int) -> AsyncIterator[CollectorProcess]:
    # Started and stopped in a thread: the door runs on this event loop meanwhile.
    process = CollectorProcess(deployment, port)
    try:
        await asyncio.to_thread(process.wait_listening)
        yield process
    finally:
        await asyncio.to_thread(process.stop)


async def call(
    url: str, token: str, method: str, path: str, body: object | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, json=body, headers=headers) as answer,
    ):
        text = await answer.text()
        return answer.status, json.loads(text) if text else None


def kiosk_config(
    kit: StandaloneKit, deployment: Deployment, kiosk_id: str, port: int
) -> KioskConfig:
    base = {k: v for k, v in kit.config().items() if k != "standalone"}
    return KioskConfig.model_validate(
        {
            **base,
            # repeat_after 0: the test shows one code twice in a row and wants two visits.
            "kiosk": {**base["kiosk"], "id": kiosk_id, "venue_id": VENUE, "repeat_after": 0},
            "collector": {
                "url": f"http://127.0.0.1:{port}",
                "token_file": str(deployment.tokens[kiosk_id]),
                "sync_interval": 1,
                "heartbeat_interval": 5,
                "timeout": 2,
            },
        }
    )


@dataclass
class Door:
    """The real door app in-process with a camera fed by the test and sync on quick retries."""

    running: RunningDoor
    syncs: list[SyncService]

    @property
    def sync(self) -> SyncService:
        return self.syncs[-1]

    @property
    def runtime(self) -> DoorRuntime:
        assert self.running.app.parts is not None
        return self.running.app.parts.runtime

    async def visit(self, code: str, celsius: float = 36.6, mask: str = "on") -> dict[str, Any]:
        self.running.camera.show(code)
        await until(lambda: self.running.app.parts is not None and self.open_visits() > 0)
        assert await self.running.post("api/thermometer", {"celsius": celsius}) == 202
        assert await self.running.post("api/mask", {"mask": mask}) == 202
        entry = await self.running.next_decision()
        self.running.camera.blank()
        return entry

    def open_visits(self) -> int:
        assert self.running.app.parts is not None
        return self.running.app.parts.engine.open_visits


@contextlib.asynccontextmanager
async def door_running(config: KioskConfig) -> AsyncIterator[Door]:
    syncs: list[SyncService] = []

    async def quick_sync(runtime: DoorRuntime) -> None:
        service = SyncService(runtime, retry=QUICK_RETRY)
        syncs.append(service)
        await service.run()

    camera = MemoryCamera()
    decisions: asyncio.Queue[DecisionEvent] = asyncio.Queue()
    app = DoorApp(
        config,
        camera=camera,
        decision_lines=False,
        observers=[decisions.put_nowait],
        services=[quick_sync],
    )
    running = RunningDoor(app, camera, decisions)
    running.task = asyncio.create_task(app.run())
    try:
        await asyncio.wait_for(app.wait_ready(), 10)
        await until(lambda: bool(syncs))
        yield Door(running, syncs)
    finally:
        await running.stop()


def foreign_entry(kiosk_id: str, entry_id: str) -> dict[str, Any]:
    """One entry of another kiosk's log, as a kiosk sends it."""
    entry: dict[str, Any] = {
        "id": entry_id,
        "log_id": new_uuid7(),
        "seq": 1,
        "kiosk_id": kiosk_id,
        "venue_id": VENUE,
        "ts": format_rfc3339(time.time()),
        "clock_offset_ms": None,
        "code_format": "none",
        "code_verdict": "none",
        "code_status": None,
        "subject": None,
        "subject_key_version": None,
        "temperature_c": None,
        "mask": "unchecked",
        "decision": "deny",
        "reasons": ["no_code"],
        "override": None,
        "policy_version": "default-1",
    }
    entry["chain"] = chain_link(GENESIS_CHAIN, entry)
    return entry


def wait_until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


async def test_offline_decisions_arrive_exactly_once_and_a_refused_one_is_set_aside(
    tmp_path: Path, deployment: Deployment, free_port: int
) -> None:
    kiosk_id = "k-offline"
    kit = make_kit(tmp_path)
    now = int(time.time())
    taken_id = new_uuid7()  # the collector will hold it for another kiosk first
    async with collector_up(deployment, free_port) as collector:
        status, _ = await call(
            collector.url,
            deployment.admin_token,
            "PUT",
            "/api/v1/trust-list",
            kit.issuer.trust.to_jwks(),
        )
        assert status == 200
        other = foreign_entry("k-other", taken_id)
        status, _ = await call(
            collector.url,
            deployment.token("k-other"),
            "POST",
            "/api/v1/entries",
            {"entries": [other]},
        )
        assert status == 200
    config = kiosk_config(kit, deployment, kiosk_id, free_port)
    async with door_running(config) as door:
        # The collector is down from the start: no cache, no trust list yet.
        await until(lambda: door.sync.status.collector == "unreachable")
        entries = [await door.visit(kit.issuer.code("green", now)) for _ in range(3)]
        crafted = await door.runtime.entry_log.append(
            EntryDraft(
                ts=time.time(),
                code_format="none",
                code_verdict="none",
                code_status=None,
                subject=None,
                subject_key_version=None,
                temperature_c=36.6,
                mask="on",
                decision="deny",
                reasons=("no_code",),
                override=None,
                policy_version="default-1",
                clock_offset_ms=None,
            ),
            entry_id=taken_id,
        )
        door.runtime.entry_written.set()
        entries += [await door.visit(kit.issuer.code("red", now)) for _ in range(3)]
        assert (await door.running.status())["collector"]["collector"] == "unreachable"
        assert door.runtime.knowledge.current().source == "none"
        async with collector_up(deployment, free_port):
            await until(lambda: door.sync.status.sent == 6 and door.sync.status.set_aside == 1, 20)
            # Now that the collector answers, the configuration follows: codes verify again.
            await until(lambda: door.runtime.knowledge.current().source == "collector", 10)
            late = await door.visit(kit.issuer.code("green", now))
            await until(lambda: door.sync.status.sent == 7)
            status_page = await door.running.status()
    assert all(e["reasons"] == ["trust_stale"] for e in entries)  # decided without lists
    assert (late["decision"], late["reasons"]) == ("allow", [])
    assert status_page["entry_log"]["backlog"] == 0 and status_page["entry_log"]["set_aside"] == 1
    assert status_page["collector"]["alert"] is None

    # The kiosk's log: seq 1..8 with a valid chain, the crafted entry set aside.
    log = stored_entries(config.kiosk.state_dir / "entries.db")
    assert_chain(log)
    assert [e["id"] for e in log] == [e["id"] for e in entries[:3]] + [crafted["id"]] + [
        e["id"] for e in [*entries[3:], late]
    ]
    # The collector holds every other entry exactly once, as the kiosk chained it.
    held = deployment.rows(
        "SELECT id, seq, chain, body, link FROM entries WHERE kiosk_id = ? ORDER BY seq", kiosk_id
    )
    expected = [e for e in log if e["id"] != taken_id]
    assert [row[0] for row in held] == [e["id"] for e in expected]
    for (_, seq, chain, body, link), entry in zip(held, expected, strict=True):
        assert (seq, chain) == (entry["seq"], entry["chain"])
        without_chain = {k: v for k, v in entry.items() if k != "chain"}
        assert body == canonical_json(without_chain).decode()
        # The link after the set-aside entry has no predecessor at the collector.
        assert link == ("unverified" if seq == crafted["seq"] + 1 else "ok")
    assert deployment.rows("SELECT kiosk_id FROM entries WHERE id = ?", taken_id) == [("k-other",)]


async def test_a_published_revocation_reaches_the_door_and_an_offline_restart_uses_the_cache(
    tmp_path: Path, deployment: Deployment, free_port: int
) -> None:
    kiosk_id = "k-lists"
    kit = make_kit(tmp_path)
    now = int(time.time())
    revoked_code = kit.issuer.code("revoked", now)
    config = kiosk_config(kit, deployment, kiosk_id, free_port)
    async with collector_up(deployment, free_port) as collector:
        status, _ = await call(
            collector.url,
            deployment.admin_token,
            "PUT",
            "/api/v1/trust-list",
            kit.issuer.trust.to_jwks(),
        )
        assert status == 200
        async with door_running(config) as door:
            await until(lambda: door.runtime.knowledge.current().source == "collector")
            before = await door.visit(revoked_code)
            status, _ = await call(
                collector.url,
                deployment.admin_token,
                "PUT",
                "/api/v1/revocation-list",
                kit.issuer.revocation(now).to_json(),
            )
            assert status == 200
            # The next pull (every config_interval; asked for now) applies it, no restart.
            assert await door.sync.pull_config() is None
            after = await door.visit(revoked_code)
            await until(lambda: door.sync.status.sent == 2)
    assert (before["decision"], after["decision"]) == ("allow", "deny")
    assert after["reasons"] == ["code_revoked"]

    # The collector is down now; a restarted door decides from the copy it kept.
    async with door_running(config) as door:
        assert door.runtime.knowledge.current().source == "collector"
        green = await door.visit(kit.issuer.code("green", now))
        again = await door.visit(revoked_code)
        await until(lambda: door.sync.status.collector == "unreachable")
    assert (green["decision"], green["subject_key_version"]) == ("allow", 1)
    assert (again["decision"], again["reasons"]) == ("deny", ["code_revoked"])


class VisitDevices:
    """The thermometer and mask of a `kiosk run` process: they post a good reading and a mask
    as soon as a visit opens (the door's local API, as real devices do)."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.statuses: list[int] = []

    def __call__(self, line: dict[str, Any]) -> None:
        if line.get("event") == "ready":
            self.port = int(str(line["url"]).rsplit(":", 1)[1].strip("/"))
        if line.get("event") == "visit_opened":
            self._post("/api/thermometer", {"celsius": 36.5})
            self._post("/api/mask", {"mask": "on"})

    def _post(self, path: str, body: dict[str, Any]) -> None:
        assert self.port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            self.statuses.append(conn.getresponse().status)
        finally:
            conn.close()


def test_kiosk_run_sends_what_it_decides_within_seconds(
    tmp_path: Path, deployment: Deployment, free_port: int
) -> None:
    kiosk_id = "k-process"
    kit = make_kit(tmp_path)
    now = int(time.time())
    blank = np.full((480, 640, 3), 128, dtype=np.uint8)
    frames = [blank] + [camera_frame([kit.issuer.code("green", now)], size=(640, 480))] * 2
    frames += [blank] * 4 + [camera_frame([kit.issuer.code("red", now)], size=(640, 480))]
    frames += [blank] * 4
    for index, image in enumerate(frames):
        cv2.imwrite(str(kit.frames / f"frame-{index:03d}.png"), image)
    settings = kiosk_config(kit, deployment, kiosk_id, free_port).model_dump(mode="json")
    settings["camera"] = {"source": str(kit.frames), "fps": 5.0, "loop": False}
    settings["local_api"] = {"host": "127.0.0.1", "port": 0}
    for section in settings.values():  # only what differs from the defaults goes in the file
        for key in [k for k, v in section.items() if v is None or isinstance(v, dict)]:
            del section[key]
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(to_toml(settings))

    collector = CollectorProcess(deployment, free_port)
    devices = VisitDevices()
    door: DoorProcess | None = None
    try:
        collector.wait_listening()
        door = DoorProcess(config_file, on_line=devices)
        door.wait_for("ready")
        while len(door.decisions()) < 2:
            door.wait_for("decision", timeout=30)
        decided = {line["entry_id"] for line in door.decisions()}
        query = "SELECT id FROM entries WHERE kiosk_id = ?"
        wait_until(lambda: {row[0] for row in deployment.rows(query, kiosk_id)} == decided)
        beats = "SELECT backlog FROM heartbeats WHERE kiosk_id = ?"
        wait_until(lambda: bool(deployment.rows(beats, kiosk_id)))
        assert any(line.get("event") == "config_applied" for line in door.lines)
        assert door.stop() == 0
    finally:
        if door is not None:
            door.ensure_gone()
        collector.stop()
    assert_chain(stored_entries(kit.state / "entries.db"))
    token = deployment.token(kiosk_id).encode()
    assert token not in b"".join(door.raw) and all(status == 202 for status in devices.statuses)
