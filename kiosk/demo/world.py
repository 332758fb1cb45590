"""`kiosk demo`: the whole system on embedded defaults, in a temporary folder, on free ports of
127.0.0.1: a collector, the kiosks of two venues in two districts (kiosk.demo.story), their
visitors, and at the end the non-compliant list an inspector would read.

The world is built from parts entered into one AsyncExitStack, each set up before and torn down
after the next: the collector (city.py), a pool that renders frames, an HTTP client, each door
(doors.py), the attendant and the stream of visitors (visitors.py). Doors stop before the
collector, so nothing they send meets a closed collector.

The run: the doors start with an empty doorway; once each holds the collector's configuration,
the visitors come. With `duration`, closing time is `WRAP_UP_S` before its end (counted from
`started`, so the whole command takes about `duration`); without, at Ctrl-C. At closing time
nobody comes any more, the last decisions and the attendant's overrides are made, each door's
backlog is sent, and the non-compliant list is read over the inspectors' API with the
inspector's token and printed as `kiosk inspect noncompliant` prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from kiosk.commands.inspect import call, render_table
from kiosk.demo.city import DemoCollector, demo_collector
from kiosk.demo.doors import (
    Attendant,
    backlog,
    collector_config_applied,
    demo_door,
    write_door_config,
)
from kiosk.demo.report import DecisionPrinter, header
from kiosk.demo.samples import new_sample_issuer
from kiosk.demo.story import INSPECTOR, UNITS
from kiosk.demo.visitors import VisitorFrames
from kiosk.door.app import DoorApp
from kiosk.door.engine import DecisionEvent

WRAP_UP_S = 1.5  # closing time to exit: last decisions, last entries sent, the list, stopping
SETTLE_S = 0.3  # after closing, for frames already captured to be decided
DRAIN_WAIT_S = 5.0  # at most, for the doors' last entries to reach the collector
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.asynccontextmanager
async def owned_task(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """A background task that lives as long as the context; an error it ended with is raised
    when the context ends."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_demo(
    duration: float | None,
    out: TextIO = sys.stdout,
    *,
    port: int = 0,
    started: float | None = None,
) -> int:
    begun = time.monotonic() if started is None else started
    closing_at = None if duration is None else begun + max(0.0, duration - WRAP_UP_S)
    printer = DecisionPrinter(out, UNITS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def closing_time() -> None:
        out.write("\nkiosk demo: closing time (Ctrl-C again stops at once, without the list)\n")
        stop.set()
        for signum in STOP_SIGNALS:  # the next one gets Python's own handling
            loop.remove_signal_handler(signum)

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, closing_time)
    try:
        with tempfile.TemporaryDirectory(prefix="kiosk-demo-") as tmp:
            await _run_world(Path(tmp), printer, out, port, stop, closing_at)
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    total = printer.total
    out.write(
        f"kiosk demo: {total.decisions} decisions ({total.allowed} allow, of which "
        f"{total.overrides} by override; {total.denied} deny); stopped cleanly after "
        f"{time.monotonic() - begun:.0f} s\n"
    )
    out.flush()
    return 0


async def _run_world(
    folder: Path,
    printer: DecisionPrinter,
    out: TextIO,
    port: int,
    stop: asyncio.Event,
    closing_at: float | None,
) -> None:
    issuer = new_sample_issuer()
    async with contextlib.AsyncExitStack() as world:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-frames")
        world.push_async_callback(asyncio.to_thread, pool.shutdown, True, cancel_futures=True)
        streams = [VisitorFrames(folder / unit.venue_id, unit, issuer, pool) for unit in UNITS]
        for stream in streams:  # revoked holders known before the lists are published
            stream.prepare()
        collector = await world.enter_async_context(
            demo_collector(folder, UNITS, issuer, port=port)
        )
        http = await world.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        )
        doors, attendants = await _start_doors(world, folder, streams, collector, printer, http)
        out.write(
            header(
                folder=str(folder),
                collector_url=collector.url,
                dashboard_url=collector.dashboard_url,
                inspector_token=collector.inspector_token,
                doors=[
                    (stream.unit, door.url) for stream, door in zip(streams, doors, strict=True)
                ],
            )
            + printer.column_heads()
            + "\n"
        )
        out.flush()
        await _open_hours(doors, streams, stop, closing_at)
        await _closing_time(streams, attendants, doors, out)
        await _print_noncompliant(collector, out)


async def _start_doors(
    world: contextlib.AsyncExitStack,
    folder: Path,
    streams: list[VisitorFrames],
    collector: DemoCollector,
    printer: DecisionPrinter,
    http: aiohttp.ClientSession,
) -> tuple[list[DoorApp], list[Attendant]]:
    """Each unit's door, serving until `world` ends; the attendants on duty where they are."""
    doors: list[DoorApp] = []
    attendants: list[Attendant] = []
    for stream in streams:
        unit = stream.unit
        attendant = None if unit.waves_through is None else Attendant(unit, http)
        observers: list[Callable[[DecisionEvent], None]] = [printer.observer(unit)]
        if attendant is not None:
            observers.append(attendant)
        config = write_door_config(
            folder / unit.venue_id,
            unit,
            camera=stream.camera,
            collector_url=collector.url,
            token_file=collector.kiosk_token_files[unit.kiosk_id],
        )
        door = await world.enter_async_context(demo_door(config, observers))
        doors.append(door)
        if attendant is not None:
            attendants.append(attendant)
            await world.enter_async_context(owned_task(attendant.run(door.url), "attendant"))
    return doors, attendants


async def _visitors_come(door: DoorApp, stream: VisitorFrames) -> None:
    """Once the door can verify codes (it holds the collector's lists), its visitors come."""
    await collector_config_applied(door)
    await stream.open()
    await stream.keep_coming()


async def _open_hours(
    doors: list[DoorApp],
    streams: list[VisitorFrames],
    stop: asyncio.Event,
    closing_at: float | None,
) -> None:
    """Visitors come to each door until closing time (or Ctrl-C); a stream that fails ends the
    open hours at once with its error."""
    comings = [
        asyncio.create_task(_visitors_come(door, stream), name=f"visitors {stream.unit.venue_id}")
        for door, stream in zip(doors, streams, strict=True)
    ]
    stopping = asyncio.create_task(stop.wait(), name="closing time")
    timeout = None if closing_at is None else max(0.0, closing_at - time.monotonic())
    try:
        await asyncio.wait(
            [stopping, *comings], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in [stopping, *comings]:
            task.cancel()
        ended = await asyncio.gather(stopping, *comings, return_exceptions=True)
    for outcome in ended:
        if isinstance(outcome, Exception):
            raise outcome


async def _closing_time(
    streams: list[VisitorFrames], attendants: list[Attendant], doors: list[DoorApp], out: TextIO
) -> None:
    """Nobody comes any more; the doors decide what they saw, the attendants finish, and every
    entry reaches the collector (or the wait gives up, saying so)."""
    for stream in streams:
        await stream.close()
    await asyncio.sleep(SETTLE_S)
    for attendant in attendants:
        attendant.off_duty()
    deadline = time.monotonic() + DRAIN_WAIT_S
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_WAIT_S):
            for attendant in attendants:
                await attendant.done()
    left = 0
    while time.monotonic() < deadline:
        left = sum([await backlog(door) for door in doors])
        if left == 0:
            break
        await asyncio.sleep(0.05)
    if left:
        out.write(f"kiosk demo: {left} entries still on their way to the collector\n")


async def _print_noncompliant(collector: DemoCollector, out: TextIO) -> None:
    """The list as an inspector reads it: the inspectors' HTTP API, `kiosk inspect`'s table."""
    raw = await asyncio.to_thread(
        call, collector.url, collector.inspector_token, "GET", "/api/v1/noncompliant"
    )
    out.write(
        f"\nthe inspector's non-compliant list (kiosk inspect noncompliant, as {INSPECTOR}):\n"
        + render_table(json.loads(raw))
        + "\n\n"
    )
    out.flush()
