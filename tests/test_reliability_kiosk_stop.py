"""A door task cancelled at the moment it is woken still stops (issue 8).

On Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives as the awaited event is
set. The door cancels its tasks when one of them fails (the TaskGroup aborts) and at an orderly
stop; a loop that lost its cancellation kept the process alive for ever. Found in sync by the
kill -9 test's final SIGTERM (fixed in kiosk.door.sync); the engine's loop had the same wait.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from kiosk.demo.kit import make_kit
from kiosk.door.config import KioskConfig
from kiosk.door.engine import DoorEngine
from kiosk.door.knowledge import StandaloneKnowledge
from kiosk.door.screen import ScreenHub
from kiosk.door.store import EntryLog
from kiosk.door.visit import VisitTracker


async def test_the_engine_cancelled_as_it_is_woken_stops(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    config = KioskConfig.model_validate(kit.config())
    knowledge = StandaloneKnowledge(config).load()
    log = await EntryLog.open(tmp_path / "entries.db", kiosk_id="k", venue_id="v")
    engine = DoorEngine(
        entry_log=log,
        screen=ScreenHub(),
        tracker=VisitTracker(pairing_window_s=1.0),
        knowledge=lambda: knowledge,
    )
    try:
        for _ in range(20):
            task = asyncio.create_task(engine.run())
            # A visit is open (its window is the loop's timeout), waiting for a reading.
            engine.on_frame_texts([kit.issuer.code("green", int(time.time()))])
            await asyncio.sleep(0.01)
            engine.on_temperature(36.6)  # the reading wakes it...
            task.cancel()  # ... as the door cancels it
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done, "the engine did not stop when cancelled"
    finally:
        await log.close()
