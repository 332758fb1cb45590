"""The door's thermometer and mask inputs: small protocols, real adapters and simulated ones.

Every source hands the engine timestamped readings through one bounded asyncio queue and exposes a
`state` ("ok" or "fault") with a readable `detail`. A source is started and stopped by its owner
(the engine's TaskGroup), directly or as an async context manager; stopping is idempotent and
leaves no thread or task behind.

The configured calibration offset is applied once, here, so every consumer sees the same value.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, Self, TypeVar

import serial

from kiosk.door.config import MaskSection, ThermometerSection
from kiosk.model import Mask

log = logging.getLogger(__name__)

SensorState = Literal["ok", "fault"]

# Readings are only useful within the pairing window (seconds); a consumer that stalls must not
# let them pile up, so the oldest are dropped and counted.
QUEUE_SIZE = 64

# Normal body temperatures a simulated visitor shows, and the range a simulated fever falls in.
NORMAL_RANGE_C = (36.2, 36.9)
FEVER_RANGE_C = (37.5, 39.2)

_READING_LINE = re.compile(r"^\s*(?:T\s*=\s*)?([-+]?\d{1,3}(?:\.\d+)?)\s*(?:°?\s*C)?\s*$", re.I)


@dataclass(frozen=True, slots=True)
class Reading:
    """A temperature in °C (calibration offset applied) and when it was taken (time.monotonic)."""

    celsius: float
    at: float


@dataclass(frozen=True, slots=True)
class MaskReading:
    mask: Mask
    at: float


ItemT = TypeVar("ItemT", Reading, MaskReading)


class Thermometer(Protocol):
    """What the engine needs from a thermometer: a queue to read, a state, a lifecycle."""

    @property
    def queue(self) -> asyncio.Queue[Reading]: ...

    @property
    def state(self) -> SensorState: ...

    @property
    def detail(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def visit_opened(self) -> None:
        """A code opened a visit: a simulated sensor measures now, real ones ignore it."""


class MaskSensor(Protocol):
    @property
    def queue(self) -> asyncio.Queue[MaskReading]: ...

    @property
    def state(self) -> SensorState: ...

    @property
    def detail(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def visit_opened(self) -> None: ...


class _QueueSource(Generic[ItemT]):
    """The queue, state and lifecycle every adapter shares."""

    kind = "sensor"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._queue: asyncio.Queue[ItemT] = asyncio.Queue(QUEUE_SIZE)
        self._clock = clock
        self._state: SensorState = "ok"
        self._detail = ""
        self.dropped = 0
        self.delivered = 0

    @property
    def queue(self) -> asyncio.Queue[ItemT]:
        return self._queue

    @property
    def state(self) -> SensorState:
        return self._state

    @property
    def detail(self) -> str:
        return self._detail

    def status(self) -> dict[str, Any]:
        """For the local status page and the heartbeat's `sensors` member."""
        return {
            "state": self._state,
            "detail": self._detail,
            "delivered": self.delivered,
            "dropped": self.dropped,
        }

    def _set_state(self, state: SensorState, detail: str = "") -> None:
        if state != self._state:
            if state == "fault":
                log.warning("%s fault: %s", self.kind, detail)
            else:
                log.info("%s ok again", self.kind)
        self._state = state
        self._detail = detail

    def _deliver(self, item: ItemT) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)
        self.delivered += 1

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def visit_opened(self) -> None:
        pass

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class _Thermometer(_QueueSource[Reading]):
    kind = "thermometer"

    def __init__(self, *, offset_c: float = 0.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(clock=clock)
        if not math.isfinite(offset_c):
            raise ValueError("offset_c must be finite")
        self.offset_c = offset_c

    def _reading(self, raw_celsius: float, at: float | None = None) -> Reading:
        return Reading(raw_celsius + self.offset_c, self._clock() if at is None else at)


class HttpThermometer(_Thermometer):
    """Readings POSTed to the local API by a networked thermometer; this is only their sink."""

    def submit(self, celsius: float) -> Reading:
        # bool is an int; a JSON `true` is not 1 °C. The local API already checks; this is the
        # last line for any other caller.
        if isinstance(celsius, bool) or not isinstance(celsius, int | float):
            raise TypeError("celsius must be a number")
        if not math.isfinite(celsius):
            raise ValueError("celsius must be finite")
        reading = self._reading(float(celsius))
        self._deliver(reading)
        return reading


class SimulatedThermometer(_Thermometer):
    """Plausible readings for the demo: one per visit (and optionally one every `interval`),
    random, or the scripted `readings` in turn."""

    def __init__(
        self,
        *,
        fever_share: float = 0.1,
        seed: int | None = None,
        interval: float | None = None,
        offset_c: float = 0.0,
        readings: Sequence[float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(offset_c=offset_c, clock=clock)
        if not 0.0 <= fever_share <= 1.0:
            raise ValueError("fever_share must be between 0 and 1")
        self.fever_share = fever_share
        self.interval = interval
        self._random = random.Random(seed)
        self._script = itertools.cycle(list(readings)) if readings else None
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> float:
        """One raw reading in °C, rounded to 0.1 as a real thermometer displays it."""
        if self._script is not None:
            return float(next(self._script))
        low, high = FEVER_RANGE_C if self._random.random() < self.fever_share else NORMAL_RANGE_C
        return round(self._random.uniform(low, high), 1)

    def measure_now(self) -> Reading:
        reading = self._reading(self.sample())
        self._deliver(reading)
        return reading

    async def measure(self) -> Reading:
        return self.measure_now()

    def visit_opened(self) -> None:
        self.measure_now()

    async def start(self) -> None:
        if self.interval is not None and self._task is None:
            self._task = asyncio.create_task(self._every(self.interval), name="sim-thermometer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.measure_now()


def parse_reading_line(line: bytes | str) -> float | None:
    """°C from one line such as `36.6`, `36.6C`, `36.6 °C` or `T=36.6`; None when it is not one."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            return None
    match = _READING_LINE.match(line)
    if match is None:
        return None
    value = float(match.group(1))
    return value if math.isfinite(value) else None


class SerialThermometer(_Thermometer):
    """A thermometer on a serial line, one reading in °C per line.

    pyserial blocks, so the read loop runs in its own thread and hands readings to the event loop
    with call_soon_threadsafe. A bad line is skipped and counted. When the port cannot be opened or
    fails, the thermometer reports fault and the thread reopens it with backoff (0.5 s doubling to
    `max_backoff`), so unplugging and replugging the device recovers without a restart.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        offset_c: float = 0.0,
        max_backoff: float = 30.0,
        read_timeout: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(offset_c=offset_c, clock=clock)
        self.port = port
        self.baudrate = baudrate
        self.max_backoff = max_backoff
        self.read_timeout = read_timeout
        self.bad_lines = 0
        self.reopens = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serial: serial.Serial | None = None

    def status(self) -> dict[str, Any]:
        return {**super().status(), "bad_lines": self.bad_lines, "reopens": self.reopens}

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"thermometer {self.port}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        # The thread wakes within read_timeout; joining in a worker keeps the loop responsive.
        await asyncio.to_thread(thread.join, 5.0)
        if thread.is_alive():
            log.error("thermometer thread on %s did not stop", self.port)

    # Everything below runs in the reader thread.

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # The loop may close between the check and the call (shutdown); the reading is moot.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    def _run(self) -> None:
        backoff = 0.5
        first = True
        while not self._stopping.is_set():
            try:
                port = serial.serial_for_url(
                    self.port, baudrate=self.baudrate, timeout=self.read_timeout
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                self._post(self._set_state, "fault", f"cannot open {self.port}: {exc}")
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if not first:
                self.reopens += 1
            first = False
            self._post(self._set_state, "ok", "")
            backoff = 0.5
            try:
                self._read_lines(port)
            except (serial.SerialException, OSError) as exc:
                self._post(self._set_state, "fault", f"{self.port} failed: {exc}")
                self._stopping.wait(backoff)
            finally:
                port.close()

    def _read_lines(self, port: serial.Serial) -> None:
        pending = b""
        while not self._stopping.is_set():
            chunk = port.readline()
            if not chunk:
                continue
            pending += chunk
            if not pending.endswith(b"\n"):
                # A timeout split the line; a line that never ends is bounded, then dropped.
                if len(pending) > 256:
                    self._bad_line(pending)
                    pending = b""
                continue
            line, pending = pending, b""
            if not line.strip():
                continue
            value = parse_reading_line(line)
            if value is None:
                self._bad_line(line)
                continue
            self._post(self._deliver, self._reading(value))

    def _bad_line(self, line: bytes) -> None:
        self.bad_lines += 1
        log.debug("thermometer %s: skipped %r", self.port, line[:40])


class _Mask(_QueueSource[MaskReading]):
    kind = "mask"


class HttpMask(_Mask):
    """Mask states POSTed to the local API by a detector."""

    def submit(self, mask: Mask) -> MaskReading:
        if mask is Mask.UNCHECKED:
            raise ValueError("a mask sensor reports on or off")
        reading = MaskReading(Mask(mask), self._clock())
        self._deliver(reading)
        return reading


class AttendantMask(HttpMask):
    """Mask states an attendant keys in on the local page (sent through the same POST)."""


class SimulatedMask(_Mask):
    """A mask state per visit: random, or the scripted `states` in turn."""

    def __init__(
        self,
        *,
        off_share: float = 0.05,
        seed: int | None = None,
        states: Sequence[Mask | str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        if not 0.0 <= off_share <= 1.0:
            raise ValueError("off_share must be between 0 and 1")
        self.off_share = off_share
        self._random = random.Random(seed)
        self._script = itertools.cycle([Mask(s) for s in states]) if states else None

    def observe_now(self) -> MaskReading:
        if self._script is not None:
            mask = next(self._script)
        else:
            mask = Mask.OFF if self._random.random() < self.off_share else Mask.ON
        reading = MaskReading(mask, self._clock())
        self._deliver(reading)
        return reading

    def visit_opened(self) -> None:
        self.observe_now()


AnyThermometer = SerialThermometer | HttpThermometer | SimulatedThermometer
AnyMask = HttpMask | AttendantMask | SimulatedMask


def build_thermometer(section: ThermometerSection) -> AnyThermometer:
    """The thermometer the [thermometer] section describes."""
    if section.source == "serial":
        return SerialThermometer(
            section.serial.port, baudrate=section.serial.baudrate, offset_c=section.offset_c
        )
    if section.source == "simulated":
        sim = section.simulated
        return SimulatedThermometer(
            fever_share=sim.fever_share,
            seed=sim.seed,
            interval=sim.interval,
            offset_c=section.offset_c,
            readings=sim.readings,
        )
    return HttpThermometer(offset_c=section.offset_c)


def build_mask(section: MaskSection) -> AnyMask:
    """The mask input the [mask] section describes."""
    if section.source == "simulated":
        sim = section.simulated
        return SimulatedMask(off_share=sim.off_share, seed=sim.seed, states=sim.states)
    if section.source == "attendant":
        return AttendantMask()
    return HttpMask()
