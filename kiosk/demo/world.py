"""`kiosk demo`: a real door process on sample visitors, in a temporary folder, on free ports.

The world is built from parts entered into one AsyncExitStack, each set up before and torn down
after: today the door (the same `DoorApp` that `kiosk run` runs, with a folder-replay camera and
the simulated thermometer and mask); issue 5 adds a collector beside it the same way.

The visitors are scripted so that every run shows the same story within seconds: each one shows
a code in one frame, with a scripted temperature and mask state, and the folder replays in a loop
(allowed codes rest `repeat_after` = 5 s, less than one round, so every round is the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import cv2

from kiosk.demo.frames import camera_frame
from kiosk.demo.kit import StandaloneKit, make_kit
from kiosk.door.app import DoorApp
from kiosk.door.config import KioskConfig
from kiosk.door.engine import DecisionEvent

FRAME_SIZE = (960, 540)
FPS = 4.0
BLANK_FRAMES = 3  # after each code: about a second per visitor at FPS


@dataclass(frozen=True)
class Visitor:
    kind: str  # a kiosk.demo.samples kind
    celsius: float
    mask: str
    story: str


VISITORS: tuple[Visitor, ...] = (
    Visitor("green", 36.5, "on", "green code"),
    Visitor("yellow", 36.6, "on", "yellow code"),
    Visitor("green", 38.3, "on", "green code, fever"),
    Visitor("red", 36.4, "on", "red code"),
    Visitor("green", 36.7, "off", "green code, no mask"),
    Visitor("expired", 36.5, "on", "expired code"),
    Visitor("forged", 36.6, "on", "forged code"),
    Visitor("revoked", 36.5, "on", "revoked code"),
    Visitor("unknown", 36.6, "on", "a QR code that is no health code"),
    Visitor("green", 36.8, "on", "green code"),
)


def write_frames(kit: StandaloneKit, visitors: tuple[Visitor, ...], now: int) -> int:
    """One camera-like frame per visitor's code, blank frames between; the lists to match."""
    blank = kit.frames / "blank.png"
    cv2.imwrite(str(blank), camera_frame([], size=FRAME_SIZE, seed=1))
    index = 0
    for number, visitor in enumerate(visitors, start=1):
        text = kit.issuer.code(visitor.kind, now)
        frame = camera_frame([text], size=FRAME_SIZE, seed=number)
        cv2.imwrite(str(kit.frames / f"{index:04d}-{visitor.kind}.png"), frame)
        index += 1
        for _ in range(BLANK_FRAMES):
            os.link(blank, kit.frames / f"{index:04d}-blank.png")
            index += 1
    blank.unlink()
    kit.write_lists()  # the revoked sample's holder is on the revocation list now
    return index


def demo_config(kit: StandaloneKit, visitors: tuple[Visitor, ...], port: int) -> KioskConfig:
    return KioskConfig.model_validate(
        kit.config(
            kiosk={"pairing_window": 3.0, "repeat_after": 5.0},
            camera={"fps": FPS, "loop": True},
            thermometer={
                "source": "simulated",
                "simulated": {"readings": [v.celsius for v in visitors]},
            },
            mask={"source": "simulated", "simulated": {"states": [v.mask for v in visitors]}},
            local_api={"port": port},
        )
    )


class DecisionPrinter:
    """One line per decision: `allow`, or `deny` with its reasons."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.allowed = 0
        self.denied = 0

    def __call__(self, event: DecisionEvent) -> None:
        entry = event.entry
        if entry["decision"] == "allow":
            self.allowed += 1
        else:
            self.denied += 1
        when = datetime.now().strftime("%H:%M:%S")
        reasons = ", ".join(entry["reasons"])
        temperature = entry["temperature_c"]
        measured = "no reading" if temperature is None else f"{temperature:.1f} °C"
        self.out.write(
            f"{entry['seq']:>4}  {when}  {entry['decision']:<5}  {reasons:<28}"
            f"  ({measured}, mask {entry['mask']})\n"
        )
        self.out.flush()


@contextlib.asynccontextmanager
async def demo_door(
    folder: Path, printer: DecisionPrinter, *, port: int = 0
) -> AsyncIterator[DoorApp]:
    """A door at the demo venue, serving until the context ends."""
    kit = make_kit(folder)
    write_frames(kit, VISITORS, int(time.time()))
    app = DoorApp(demo_config(kit, VISITORS, port), decision_lines=False, observers=[printer])
    task = asyncio.create_task(app.run(), name="demo-door")
    ready = asyncio.create_task(app.wait_ready())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        await task  # it ended before it was ready: its error says why
    try:
        yield app
    finally:
        app.request_stop()
        await task


async def run_demo(duration: float | None, out: TextIO = sys.stdout, *, port: int = 0) -> int:
    printer = DecisionPrinter(out)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        with tempfile.TemporaryDirectory(prefix="kiosk-demo-") as tmp:
            async with contextlib.AsyncExitStack() as world:
                door = await world.enter_async_context(demo_door(Path(tmp), printer, port=port))
                out.write(
                    f"kiosk demo: a standalone door, its state in {tmp} (removed at the end)\n"
                )
                out.write(f"door screen: {door.url}  (attendant page: {door.url}attendant)\n")
                out.write(
                    "visitors, in turn: " + "; ".join(v.story for v in VISITORS) + "\n"
                    "seq   time      decision reasons\n"
                )
                out.flush()
                started = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration)
            elapsed = time.monotonic() - started
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    out.write(
        f"kiosk demo: {printer.allowed + printer.denied} decisions ({printer.allowed} allow, "
        f"{printer.denied} deny) in {elapsed:.0f} s; stopped cleanly\n"
    )
    out.flush()
    return 0
