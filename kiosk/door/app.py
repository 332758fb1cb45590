"""The door process: its parts, their lifecycle, and the seam for the tasks that sync.

`DoorApp(config).run()` is `kiosk run` (and the demo's kiosk): it opens the entry log, builds the
camera, thermometer and mask input from the configuration, serves the door screen and local API,
and runs every loop as an owned task in one TaskGroup until `request_stop()` (SIGTERM): then
inputs stop first, the decision being written is finished, and everything is closed in reverse.

    camera thread -> frames queue -> decode (worker thread) -> engine.on_frame_texts
    thermometer / mask queues ------------------------------> engine.on_temperature / on_mask
    engine.run: decide -> entry log (committed) -> screen (SSE) -> decision line on stdout

The seam for the collector's side (issue 4): a *service* is `async def service(runtime)`, started
as one more owned task once the door is up and cancelled at stop. `DoorRuntime` gives it the
entry log (`unsent`, `mark_sent`, `set_aside`, `stats`), the `KnowledgeHolder` to `replace` when
a new configuration arrives (policy, lists, pseudonym key, unit status: applied without restart),
the `ClockOffset` to `set` after each exchange (entries then carry it), and `heartbeat()` with the
spec's members. `default_services(config)` is where `kiosk.door.sync` adds itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kiosk import __version__
from kiosk.door.conditions import DoorConditions
from kiosk.door.config import KioskConfig
from kiosk.door.engine import DecisionEvent, DecisionLines, DoorEngine
from kiosk.door.frames import FrameDecoder, FrameSource, build_camera
from kiosk.door.knowledge import KnowledgeHolder, StandaloneKnowledge, initial_knowledge
from kiosk.door.notify import Notifier
from kiosk.door.retention import FIRST_RUN_AFTER, retention_loop
from kiosk.door.screen import ScreenHub, build_local_app
from kiosk.door.sensors import AnyMask, AnyThermometer, build_mask, build_thermometer
from kiosk.door.store import EntryLog, StoreError
from kiosk.door.sync import run_sync
from kiosk.door.visit import VisitTracker
from kiosk.errors import KioskError
from kiosk.wire import format_rfc3339

log = logging.getLogger(__name__)

ENTRY_LOG_NAME = "entries.db"
# From this share of the log's bound held by entries the collector does not have yet, the
# attendant's view warns: the door stops admitting when the bound is reached.
STORAGE_NEARLY_FULL = 0.8
TICK_SECONDS = 1.0  # conditions, watchdog and file checks; decisions never wait on it
RELOAD_EVERY = 10.0  # how often a standalone kiosk looks at its list files


class ClockOffset:
    """The last measured offset to the collector (collector minus kiosk, ms); None: unknown."""

    def __init__(self) -> None:
        self.value: int | None = None

    def get(self) -> int | None:
        return self.value

    def set(self, offset_ms: int | None) -> None:
        self.value = offset_ms


@dataclass
class DoorRuntime:
    """What a service (the sync task) gets: the door's shared state, nothing to start or stop."""

    config: KioskConfig
    entry_log: EntryLog
    knowledge: KnowledgeHolder
    clock_offset: ClockOffset
    sensor_states: Callable[[], dict[str, str]]
    clock: Callable[[], float] = time.time
    software: str = f"kiosk/{__version__}"
    # Set after each committed entry, so sync sends it at once instead of at its next interval.
    entry_written: asyncio.Event = field(default_factory=asyncio.Event)
    # Named parts of /api/status a service adds (sync: the collector link and its alerts).
    status_sources: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)

    async def heartbeat(self) -> dict[str, Any]:
        """The members of a heartbeat (sync-api.md), as of now."""
        stats = await self.entry_log.stats()
        now = self.clock()
        knowledge = self.knowledge.current()
        return {
            "kiosk_id": self.config.kiosk.id,
            "ts": format_rfc3339(now),
            "log_id": stats.log_id,
            "last_seq": stats.last_seq,
            "backlog": stats.backlog,
            "policy_version": knowledge.policy.version,
            "sensors": self.sensor_states(),
            "trust_age_s": knowledge.trust_age_s(now),
            "set_aside": stats.set_aside,
            "storage_used_ratio": stats.storage_used_ratio,
            "software": self.software,
        }


DoorService = Callable[[DoorRuntime], Coroutine[Any, Any, None]]


def default_services(config: KioskConfig) -> list[DoorService]:
    """The services a configuration calls for: with `collector.url` set, sync with the
    collector (kiosk.door.sync); a standalone kiosk has none."""
    return [] if config.collector.url is None else [run_sync]


@dataclass
class DoorParts:
    """Everything the app builds; tests and the demo may look at (never replace) them."""

    entry_log: EntryLog
    engine: DoorEngine
    hub: ScreenHub
    camera: FrameSource
    thermometer: AnyThermometer
    mask: AnyMask
    knowledge: KnowledgeHolder
    conditions: DoorConditions
    runtime: DoorRuntime


class DoorApp:
    def __init__(
        self,
        config: KioskConfig,
        *,
        services: list[DoorService] | None = None,
        decision_lines: bool = True,
        observers: list[Callable[[DecisionEvent], None]] | None = None,
        notifier: Notifier | None = None,
        retention_first_after: float = FIRST_RUN_AFTER,
        camera: FrameSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`camera` replaces the one the configuration describes (tests' in-memory frames);
        `clock` is the wall clock decisions, trust age and heartbeats are read from (tests
        simulate hours with it); everything else is built from `config`."""
        self.config = config
        self._camera = camera
        self._clock = clock
        self._services = default_services(config) if services is None else services
        self._decision_lines = decision_lines
        self._observers = list(observers or [])
        self._notifier = notifier or Notifier()
        self._retention_first_after = retention_first_after
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._url: str | None = None
        self.parts: DoorParts | None = None

    # -- control --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop cleanly (SIGTERM, Ctrl-C, the demo's end); safe to call more than once."""
        self._stop.set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    @property
    def url(self) -> str:
        """The door screen's address, once ready."""
        if self._url is None:
            raise RuntimeError("the door is not serving yet")
        return self._url

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the door until `request_stop()`. Raises KioskError when it cannot start."""
        config = self.config
        knowledge, standalone = initial_knowledge(config)
        holder = KnowledgeHolder(knowledge)
        async with contextlib.AsyncExitStack() as stack:
            entry_log = await _open_entry_log(config)
            stack.push_async_callback(entry_log.close)
            if entry_log.recovered_from is not None:
                log.error(
                    "the entry log was corrupt and was moved to %s; a new log was started",
                    entry_log.recovered_from,
                    extra={"event": "log_recovered"},
                )
            lost = entry_log.lost_tail
            if lost is not None:
                log.error(
                    "the entry log lost its tail (seq %d to %d of log %s); new log %s started",
                    lost.kept_seq + 1,
                    lost.written_seq,
                    lost.old_log_id,
                    entry_log.log_id,
                    extra={"event": "log_tail_lost", "old_log_id": lost.old_log_id},
                )
            decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kiosk-decode")
            stack.callback(decode_pool.shutdown, wait=True, cancel_futures=True)

            parts = self._build(config, entry_log, holder)
            self.parts = parts
            await self._serve(stack, parts)
            # Devices start last, just before their loops: a replayed frame must not wait in
            # the drop-oldest queue (and be dropped) while the server is still starting.
            await _start(stack, parts)
            await self._run_tasks(parts, standalone, decode_pool)

    def _build(
        self, config: KioskConfig, entry_log: EntryLog, holder: KnowledgeHolder
    ) -> DoorParts:
        hub = ScreenHub()
        # A log that could not be written at open: "not recorded" before the first visitor.
        conditions = DoorConditions(store_failure=entry_log.unwritable_at_open)
        thermometer = build_thermometer(config.thermometer)
        mask = build_mask(config.mask)
        camera = self._camera if self._camera is not None else build_camera(config.camera)
        offset = ClockOffset()
        policy = holder.current().policy
        tracker = VisitTracker(
            pairing_window_s=config.kiosk.pairing_window,
            repeat_after_s=config.kiosk.repeat_after,
            mask_required=policy.mask_required,
        )

        def visit_opened() -> None:
            thermometer.visit_opened()
            mask.visit_opened()

        def store_health(reason: str | None) -> None:
            if conditions.store_failure != reason:
                conditions.store_failure = reason
                hub.set_resting(conditions.resting())

        engine = DoorEngine(
            entry_log=entry_log,
            screen=hub,
            tracker=tracker,
            knowledge=holder.current,
            clock=self._clock,
            clock_offset_ms=offset.get,
            on_visit_opened=visit_opened,
            on_store_health=store_health,
        )
        engine.add_observer(lambda event: hub.note_decision(event.entry))
        if self._decision_lines:
            engine.add_observer(DecisionLines())
        for observer in self._observers:
            engine.add_observer(observer)

        def sensor_states() -> dict[str, str]:
            return {
                "camera": camera.state,
                "thermometer": thermometer.state,
                "mask": mask.state,
            }

        def knowledge_changed(knowledge: Any) -> None:
            # A new policy may change whether a mask is waited for; the rest is read per visit.
            tracker.mask_required = knowledge.policy.mask_required
            self._refresh_conditions()

        holder.listen(knowledge_changed)
        runtime = DoorRuntime(
            config=config,
            entry_log=entry_log,
            knowledge=holder,
            clock_offset=offset,
            sensor_states=sensor_states,
            clock=self._clock,
        )
        engine.add_observer(lambda _event: runtime.entry_written.set())
        return DoorParts(
            entry_log=entry_log,
            engine=engine,
            hub=hub,
            camera=camera,
            thermometer=thermometer,
            mask=mask,
            knowledge=holder,
            conditions=conditions,
            runtime=runtime,
        )

    async def _serve(self, stack: contextlib.AsyncExitStack, parts: DoorParts) -> None:
        api = self.config.local_api

        async def status() -> Mapping[str, Any]:
            return await self._status(parts)

        app = build_local_app(
            parts.hub,
            api,
            thermometer=parts.thermometer,
            mask=parts.mask,
            override=parts.engine.override,
            status=status,
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, api.host, api.port)
        try:
            await site.start()
        except OSError as exc:
            raise KioskError(
                f"local_api: cannot listen on {api.host}:{api.port} ({exc.strerror or exc}); "
                "is another kiosk running, or pick another local_api.port"
            ) from None
        host, port = _bound_address(runner, api.host, api.port)
        self._url = f"http://{_url_host(host)}:{port}/"

    async def _run_tasks(
        self,
        parts: DoorParts,
        standalone: StandaloneKnowledge | None,
        decode_pool: ThreadPoolExecutor,
    ) -> None:
        config = self.config
        self._refresh_conditions()
        async with asyncio.TaskGroup() as group:
            inputs = [
                group.create_task(self._frame_loop(parts, decode_pool), name="frames"),
                group.create_task(_drain(parts.thermometer.queue, _temperature(parts))),
                group.create_task(_drain(parts.mask.queue, _mask(parts))),
            ]
            deciding = group.create_task(parts.engine.run(), name="decisions")
            background = [
                group.create_task(self._tick(parts, standalone), name="tick"),
                group.create_task(
                    retention_loop(
                        parts.entry_log,
                        retention_days=config.kiosk.retention_days,
                        only_sent=not config.standalone_mode,
                        first_after=self._retention_first_after,
                    ),
                    name="retention",
                ),
            ]
            for service in self._services:
                name = getattr(service, "__name__", "service")
                background.append(group.create_task(service(parts.runtime), name=name))
            self._notifier.ready(f"door {config.kiosk.id} serving {self._url}")
            log.info(
                "door %s at venue %s ready; screen at %s",
                config.kiosk.id,
                config.kiosk.venue_id,
                self._url,
                extra={"event": "ready", "url": self._url, "log_id": parts.entry_log.log_id},
            )
            self._ready.set()
            await self._stop.wait()
            # Orderly stop: no new inputs, then the decision in hand is finished and shown.
            self._notifier.stopping()
            log.info("stopping", extra={"event": "stopping"})
            for task in inputs:
                task.cancel()
            parts.engine.stop()
            await deciding
            for task in background:
                task.cancel()
        parts.hub.close()

    # -- loops ----------------------------------------------------------------------------

    async def _frame_loop(self, parts: DoorParts, pool: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        decode = FrameDecoder()
        while True:
            frame = await parts.camera.next_frame()
            if frame is None:
                # A replay without `loop` has ended (tests, demos): the door stays up, idle.
                log.info("the camera's replay has ended", extra={"event": "replay_ended"})
                return
            texts = await loop.run_in_executor(pool, decode, frame.image, frame.at)
            parts.engine.on_frame_texts(texts, frame.at)

    async def _tick(self, parts: DoorParts, standalone: StandaloneKnowledge | None) -> None:
        """Once a second: the door's conditions, the watchdog, and changed list files."""
        watchdog = self._notifier.watchdog_interval
        period = TICK_SECONDS if watchdog is None else min(TICK_SECONDS, watchdog)
        next_reload = time.monotonic() + RELOAD_EVERY
        while True:
            self._refresh_conditions()
            self._notifier.watchdog()
            if standalone is not None and time.monotonic() >= next_reload:
                next_reload = time.monotonic() + RELOAD_EVERY
                # Reading a few small files: quick, but still off the loop.
                fresh = await asyncio.to_thread(standalone.reload_if_changed)
                if fresh is not None:
                    parts.knowledge.replace(fresh)
            await asyncio.sleep(period)

    def _refresh_conditions(self) -> None:
        parts = self.parts
        if parts is None:
            return
        conditions = parts.conditions
        knowledge = parts.knowledge.current()
        conditions.venue_closed = knowledge.venue_closed
        conditions.trust_fresh = knowledge.trust_fresh(self._clock())
        for device in (parts.camera, parts.thermometer):
            name = "camera" if device is parts.camera else "thermometer"
            faulty = device.state == "fault"
            was = name in conditions.faults
            conditions.set_fault(name, device.detail if faulty else None)
            if faulty != was:
                log.log(
                    logging.WARNING if faulty else logging.INFO,
                    "%s %s",
                    name,
                    f"fault: {device.detail}" if faulty else "works again",
                    extra={"event": "device", "device": name, "state": device.state},
                )
        parts.hub.set_resting(conditions.resting())

    async def _status(self, parts: DoorParts) -> dict[str, Any]:
        try:
            stats = await parts.entry_log.stats()
            log_status: dict[str, Any] = {
                "log_id": stats.log_id,
                "last_seq": stats.last_seq,
                "backlog": stats.backlog,
                "set_aside": stats.set_aside,
                "entries": stats.entries,
                "storage_used_ratio": stats.storage_used_ratio,
            }
            warnings = storage_warnings(stats.storage_used_ratio)
        except StoreError as exc:
            log_status = {"error": exc.reason}
            warnings = []
        knowledge = parts.knowledge.current()
        return {
            "kiosk_id": self.config.kiosk.id,
            "venue_id": self.config.kiosk.venue_id,
            "entry_log": log_status,
            "sensors": {
                "camera": parts.camera.status(),
                "thermometer": parts.thermometer.status(),
                "mask": parts.mask.status(),
            },
            "policy_version": knowledge.policy.version,
            "knowledge_source": knowledge.source,
            "trust_age_s": knowledge.trust_age_s(self._clock()),
            "conditions": parts.conditions.summary(),
            "decisions": parts.engine.decisions,
            "not_recorded": parts.engine.not_recorded,
            "visits_opened": parts.engine.visits_opened,
            "open_visits": parts.engine.open_visits,
            "warnings": warnings,
            **{name: source() for name, source in parts.runtime.status_sources.items()},
        }


def storage_warnings(used_ratio: float) -> list[dict[str, str]]:
    """The attendant's warnings about the entry log's bound (zh first, as on the door)."""
    if used_ratio < STORAGE_NEARLY_FULL:
        return []
    percent = f"{used_ratio:.0%}"
    return [
        {
            "code": "storage_nearly_full",
            "zh": f"本地存储将满（{percent}）：数据未能上传，满后将无法放行",
            "en": f"Storage nearly full ({percent} of the local log holds entries not yet sent "
            "to the collector): when it is full, nobody can be admitted",
        }
    ]


async def _open_entry_log(config: KioskConfig) -> EntryLog:
    path = config.kiosk.state_dir / ENTRY_LOG_NAME
    try:
        return await EntryLog.open(
            path,
            kiosk_id=config.kiosk.id,
            venue_id=config.kiosk.venue_id,
            max_entries=config.kiosk.max_entries,
            # A damaged page amid the entries opens without a word and fails appends or sync
            # later, at every start again. quick_check finds it first (about 0.5 s per
            # 100,000 entries), so the file is moved aside and the door starts a new log.
            check=True,
        )
    except StoreError as exc:
        raise KioskError(
            f"cannot open the entry log {path} ({exc.reason}): without it nobody may enter; "
            "check kiosk.state_dir and the disk"
        ) from None


async def _start(stack: contextlib.AsyncExitStack, parts: DoorParts) -> None:
    """Start the input devices; each is stopped by the exit stack, in reverse order."""
    for device in (parts.thermometer, parts.mask, parts.camera):
        await device.start()
        stack.push_async_callback(device.stop)


def _temperature(parts: DoorParts) -> Callable[[Any], None]:
    return lambda reading: parts.engine.on_temperature(reading.celsius)


def _mask(parts: DoorParts) -> Callable[[Any], None]:
    return lambda reading: parts.engine.on_mask(reading.mask)


async def _drain(queue: asyncio.Queue[Any], handle: Callable[[Any], None]) -> None:
    while True:
        handle(await queue.get())


def _bound_address(runner: web.AppRunner, host: str, port: int) -> tuple[str, int]:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return str(address[0]), int(address[1])
    return host, port


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
