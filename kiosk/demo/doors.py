"""The demo's kiosks: each a real door (`DoorApp`, loaded from a configuration file the way
`kiosk run` loads it) in collector mode, with its own camera folder and state folder, the
simulated thermometer and mask, and sync intervals short enough for a demo of seconds; and the
attendant who, at the misbehaving venue, overrides denies through the kiosk's local API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import aiohttp

from kiosk.commands.run import load_for_run
from kiosk.demo.kit import to_toml
from kiosk.demo.story import ATTENDANT, ATTENDANT_PIN, OVERRIDE_NOTE, Unit
from kiosk.door.app import DoorApp
from kiosk.door.engine import DecisionEvent
from kiosk.errors import KioskError

log = logging.getLogger(__name__)

CONFIG_WAIT_S = 15.0  # a loaded machine may take seconds for the first exchange
ATTENDANT_DELAY_S = 0.3  # a person reading the screen before pressing the button


def write_door_config(
    folder: Path, unit: Unit, *, camera: Path, collector_url: str, token_file: Path
) -> Path:
    """The kiosk's configuration file, as an installer would write it."""
    config = {
        "kiosk": {
            "id": unit.kiosk_id,
            "venue_id": unit.venue_id,
            "venue_type": "general",
            "state_dir": str(folder / "state"),
            "pairing_window": 3.0,
            # Under one round of the replay: a code read again in the next round is a visit.
            "repeat_after": 1.0,
        },
        "camera": {"source": str(camera), "fps": unit.fps, "loop": True},
        "thermometer": {"source": "simulated", "simulated": {"readings": unit.readings}},
        "mask": {"source": "simulated", "simulated": {"states": unit.masks}},
        "local_api": {"host": "127.0.0.1", "port": 0, "attendant_pin": ATTENDANT_PIN},
        "collector": {
            "url": collector_url,
            "token_file": str(token_file),
            # The shortest the configuration allows: entries are sent as they are written
            # anyway; heartbeats and the configuration follow within seconds.
            "sync_interval": 1.0,
            "heartbeat_interval": 5.0,
            "config_interval": 10.0,
            "timeout": 5.0,
        },
    }
    path = folder / "kiosk.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def demo_door(
    config_file: Path, observers: Sequence[Callable[[DecisionEvent], None]]
) -> AsyncIterator[DoorApp]:
    """A door serving until the context ends; no JSON lines of its own (the demo prints)."""
    app = DoorApp(load_for_run(config_file), decision_lines=False, observers=list(observers))
    task = asyncio.create_task(app.run(), name=f"door {app.config.kiosk.id}")
    ready = asyncio.create_task(app.wait_ready())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        await task  # it ended before it was ready: its error says why
        raise KioskError(f"kiosk {app.config.kiosk.id} stopped before it was ready")
    try:
        yield app
    finally:
        app.request_stop()
        await task


async def collector_config_applied(door: DoorApp, within: float = CONFIG_WAIT_S) -> None:
    """Wait until the door decides with the collector's configuration (trust list and all)."""
    parts = door.parts
    if parts is None:
        raise RuntimeError("the door is not running")
    applied = asyncio.Event()

    def check(knowledge: object) -> None:
        if getattr(knowledge, "source", None) == "collector":
            applied.set()

    parts.knowledge.listen(check)
    check(parts.knowledge.current())
    try:
        # Not wait_for: on Python 3.11 it may swallow a cancellation that comes as the event is
        # set, and the demo would then let visitors in after closing time.
        async with asyncio.timeout(within):
            await applied.wait()
    except TimeoutError:
        raise KioskError(
            f"kiosk {door.config.kiosk.id} got no configuration from the demo collector within "
            f"{within:.0f} s; run `kiosk -v demo` to see why"
        ) from None


async def backlog(door: DoorApp) -> int:
    """Entries the door has written but the collector has not confirmed yet."""
    if door.parts is None:
        return 0
    return (await door.parts.entry_log.stats()).backlog


class Attendant:
    """Lets in, through the kiosk's local API (`POST /api/override` with the attendant's PIN),
    everyone the door denies for `reason`. A decision observer of that door; `run(door_url)`
    works the queue until cancelled, `off_duty` and `done` end the shift at closing time."""

    def __init__(self, unit: Unit, http: aiohttp.ClientSession) -> None:
        if unit.waves_through is None:
            raise ValueError(f"{unit.venue_id}'s attendant overrides nothing")
        self.reason = unit.waves_through
        self.overrides = 0
        self._http = http
        self._denies: asyncio.Queue[str] = asyncio.Queue()
        self._on_duty = True

    def __call__(self, event: DecisionEvent) -> None:
        entry = event.entry
        if (
            self._on_duty
            and entry["decision"] == "deny"
            and entry["override"] is None
            and self.reason in entry["reasons"]
        ):
            self._denies.put_nowait(entry["id"])

    def off_duty(self) -> None:
        self._on_duty = False

    async def done(self) -> None:
        """Every deny taken so far has been overridden (or failed to be)."""
        await self._denies.join()

    async def run(self, door_url: str) -> None:
        while True:
            entry_id = await self._denies.get()
            try:
                await asyncio.sleep(ATTENDANT_DELAY_S)
                await self._override(door_url, entry_id)
            finally:
                self._denies.task_done()

    async def _override(self, door_url: str, entry_id: str) -> None:
        body = {"attendant": ATTENDANT, "note": OVERRIDE_NOTE, "entry_id": entry_id}
        try:
            async with self._http.post(
                f"{door_url}api/override",
                json=body,
                headers={"X-Attendant-Secret": ATTENDANT_PIN},
            ) as answer:
                if answer.status == 201:
                    self.overrides += 1
                    return
                problem = f"{answer.status}: {(await answer.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = str(exc) or type(exc).__name__
        log.warning("the demo attendant's override of %s failed (%s)", entry_id, problem)
