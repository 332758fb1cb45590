"""Camera frames for the door: blocking frame sources behind one small protocol, and the `Camera`
that runs one in a capture thread and hands frames to the event loop.

A `FrameSource` is plain blocking code (OpenCV's VideoCapture for a device, video file or stream
URL; an image folder replayed in sorted order; frames held in memory for tests and the demo). The
`Camera` owns the thread: it paces replays, stamps each frame with its monotonic arrival time,
and delivers it through a bounded queue that drops the oldest frame when the consumer is behind
(the newest frame is the one worth decoding) and counts every drop.

Like the door's sensors (kiosk/door/sensors.py), a camera has a `state` ("ok" or "fault") with a
readable `detail`: a source that cannot be opened, fails, or delivers no frame for `stall_after`
seconds is reported as a fault, closed and reopened with backoff (0.5 s doubling to
`max_backoff`), so unplugging a camera or losing a stream recovers without a restart and never
ends the process. Start and stop mirror each other (also as an async context manager); stopping
is idempotent and joins the thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import cv2
import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

Image = NDArray[np.uint8]
CameraState = Literal["ok", "fault"]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
)

# Decoding latency matters more than completeness: a short queue keeps frames fresh.
DEFAULT_QUEUE_SIZE = 2
INITIAL_BACKOFF = 0.5
# How long a live source may return no frame before the thread pauses briefly (no busy loop).
_IDLE_WAIT = 0.01


class CameraError(Exception):
    """A source cannot be opened or failed while reading; the camera reopens it later."""


class EndOfReplay(Exception):
    """A replay (video file, folder, frames in memory) has no more frames."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame: the image (BGR or gray, uint8), when it arrived (time.monotonic()),
    and its sequence number from this camera (gaps mean dropped frames)."""

    image: Image
    at: float
    index: int


class FrameSource(Protocol):
    """Blocking frame producer run in the camera's capture thread.

    `interval` is the pause between frames for a replay (None: the source paces itself, like a
    live camera). `read` returns the next frame, None when a live source has none right now, and
    raises EndOfReplay after a replay's last frame and CameraError when the source failed.
    """

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float | None: ...

    def open(self) -> None: ...

    def read(self) -> Image | None: ...

    def close(self) -> None: ...


class VideoCaptureSource:
    """OpenCV VideoCapture: a device index, a video file, or an rtsp/http stream URL.

    Open and read timeouts bound how long a dead stream can block the thread (FFmpeg backend).
    A video file is replayed at its own frame rate (`fps` when the file does not say).
    """

    def __init__(self, target: int | str, *, fps: float = 5.0, timeout: float = 5.0) -> None:
        self.target = target
        self._is_file = isinstance(target, str) and "://" not in target
        self._fallback_fps = fps
        self._timeout_ms = int(timeout * 1000)
        self._capture: Any = None
        self._interval: float | None = None

    @property
    def name(self) -> str:
        return f"camera {self.target}" if isinstance(self.target, int) else str(self.target)

    @property
    def interval(self) -> float | None:
        return self._interval

    def open(self) -> None:
        if self._is_file and not Path(str(self.target)).is_file():
            raise CameraError(f"no video file at {self.target}")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            self._timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            self._timeout_ms,
        ]
        capture = cv2.VideoCapture(self.target, cv2.CAP_ANY, params)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open {self.name}")
        self._capture = capture
        if self._is_file:
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            self._interval = 1.0 / (fps if 0 < fps <= 240 else self._fallback_fps)

    def read(self) -> Image | None:
        if self._capture is None:
            raise CameraError(f"{self.name} is not open")
        ok, image = self._capture.read()
        if ok and image is not None:
            return np.asarray(image, dtype=np.uint8)
        if self._is_file:
            raise EndOfReplay
        return None

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


class FolderSource:
    """The images of a folder in sorted file-name order, one every 1/fps seconds.

    The folder is listed again at every open, so a replay that loops picks up new files. A file
    OpenCV cannot read is skipped and counted.
    """

    def __init__(self, folder: Path | str, *, fps: float = 5.0) -> None:
        if not fps > 0:
            raise ValueError("fps must be positive")
        self.folder = Path(folder)
        self.fps = fps
        self.unreadable = 0
        self._files: list[Path] = []
        self._next = 0

    @property
    def name(self) -> str:
        return f"folder {self.folder}"

    @property
    def interval(self) -> float | None:
        return 1.0 / self.fps

    def open(self) -> None:
        try:
            files = sorted(
                path
                for path in self.folder.iterdir()
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
            )
        except OSError as exc:
            raise CameraError(f"cannot list {self.folder}: {exc.strerror or exc}") from exc
        if not files:
            raise CameraError(f"no images in {self.folder}")
        self._files = files
        self._next = 0

    def read(self) -> Image | None:
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return np.asarray(image, dtype=np.uint8)
            self.unreadable += 1
            log.warning("camera replay: skipped unreadable image %s", path)
        raise EndOfReplay

    def close(self) -> None:
        self._files = []


class MemorySource:
    """Frames held in memory, replayed at `fps`: the demo's camera and a test double."""

    def __init__(self, images: Sequence[Image], *, fps: float = 5.0, name: str = "memory") -> None:
        if not fps > 0:
            raise ValueError("fps must be positive")
        self.images = list(images)
        self.fps = fps
        self._name = name
        self._next = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def interval(self) -> float | None:
        return 1.0 / self.fps

    def open(self) -> None:
        if not self.images:
            raise CameraError(f"{self._name}: no frames")
        self._next = 0

    def read(self) -> Image | None:
        if self._next >= len(self.images):
            raise EndOfReplay
        image = self.images[self._next]
        self._next += 1
        return image

    def close(self) -> None:
        pass


class CameraSettings(Protocol):
    """The shape of the door configuration's [camera] section (kiosk.door.config.CameraSection)."""

    @property
    def source(self) -> int | str: ...

    @property
    def fps(self) -> float: ...

    @property
    def loop(self) -> bool: ...

    @property
    def stall_after(self) -> float: ...


def source_for(target: int | str, *, fps: float = 5.0) -> FrameSource:
    """The source a configured `camera.source` names: a device index, a URL, a folder or a file.

    A path that does not exist yet is a folder unless it has a file suffix; either way the camera
    reports a fault until it appears.
    """
    if isinstance(target, int):
        return VideoCaptureSource(target, fps=fps)
    if "://" in target:
        return VideoCaptureSource(target, fps=fps)
    path = Path(target)
    if path.is_dir() or (not path.exists() and not path.suffix):
        return FolderSource(path, fps=fps)
    return VideoCaptureSource(str(path), fps=fps)


def build_camera(settings: CameraSettings, **options: Any) -> Camera:
    """The camera a [camera] configuration section describes; `options` go to `Camera`."""
    return Camera(
        source_for(settings.source, fps=settings.fps),
        loop=settings.loop,
        stall_after=settings.stall_after,
        **options,
    )


class Camera:
    """Runs a FrameSource in a capture thread and delivers `Frame`s to `queue` (drop-oldest).

    `loop` replays a finished replay from its start; otherwise the camera is `finished` after
    the last frame (the queue keeps what is left for the consumer). One consumer reads `queue`
    (or awaits `next_frame()`).
    """

    kind = "camera"

    def __init__(
        self,
        source: FrameSource,
        *,
        loop: bool = False,
        stall_after: float = 5.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if not stall_after > 0:
            raise ValueError("stall_after must be positive")
        self.source = source
        self.loop = loop
        self.stall_after = stall_after
        self.max_backoff = max_backoff
        self._clock = clock
        self._queue: asyncio.Queue[Frame] = asyncio.Queue(queue_size)
        self._state: CameraState = "ok"
        self._detail = ""
        self.delivered = 0
        self.dropped = 0
        self.reopens = 0
        self.faults = 0
        self._last_frame_at: float | None = None
        self._started_at: float | None = None
        # Frames the thread captured that the loop has not taken yet; bounded like the queue.
        self._pending: collections.deque[Frame] = collections.deque()
        self._pending_lock = threading.Lock()
        self._transfer_scheduled = False
        self._captured = 0
        self._due: float | None = None  # when the next replayed frame is due (capture thread)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished = asyncio.Event()
        self._wakeup = asyncio.Event()

    # --- what the door reads --------------------------------------------------------------------

    @property
    def queue(self) -> asyncio.Queue[Frame]:
        return self._queue

    @property
    def state(self) -> CameraState:
        # A thread stuck in a blocking read cannot report itself: judge by the last frame.
        if self._state == "ok" and self._stalled_for() is not None:
            return "fault"
        return self._state

    @property
    def detail(self) -> str:
        stalled = self._stalled_for()
        if self._state == "ok" and stalled is not None:
            return f"{self.source.name}: no frame for {stalled:.0f} s"
        return self._detail

    @property
    def finished(self) -> bool:
        """True once a replay without `loop` delivered its last frame."""
        return self._finished.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        """For the local status page and the heartbeat's `sensors` member."""
        age = None if self._last_frame_at is None else self._clock() - self._last_frame_at
        return {
            "state": self.state,
            "detail": self.detail,
            "source": self.source.name,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "reopens": self.reopens,
            "faults": self.faults,
            "last_frame_age_s": None if age is None else round(age, 3),
            "finished": self.finished,
        }

    async def next_frame(self) -> Frame | None:
        """The oldest queued frame, waiting for one; None once a finished replay is drained."""
        while True:
            if not self._queue.empty():
                return self._queue.get_nowait()
            if self._finished.is_set():
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    async def wait_finished(self) -> None:
        await self._finished.wait()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._finished.clear()
        self._due = None
        self._started_at = self._clock()
        self._thread = threading.Thread(
            target=self._run, name=f"camera {self.source.name}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        # The thread wakes at once from pacing and backoff waits; a blocking read ends within
        # the source's timeout. Joining in a worker keeps the loop responsive meanwhile.
        await asyncio.to_thread(thread.join, 10.0)
        if thread.is_alive():
            log.error("camera thread for %s did not stop", self.source.name)
        self._wakeup.set()

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

    # --- on the event loop ----------------------------------------------------------------------

    def _stalled_for(self) -> float | None:
        if self._thread is None or self.finished:
            return None
        since = self._last_frame_at if self._last_frame_at is not None else self._started_at
        if since is None:
            return None
        # Grace of one pacing interval: a slow replay is not a stalled camera.
        silent = self._clock() - since
        limit = self.stall_after + (self.source.interval or 0.0)
        return silent if silent > limit else None

    def _set_state(self, state: CameraState, detail: str = "") -> None:
        if state != self._state:
            if state == "fault":
                self.faults += 1
                log.warning("%s fault: %s", self.kind, detail)
            else:
                log.info("%s ok again (%s)", self.kind, self.source.name)
        self._state = state
        self._detail = detail

    def _transfer(self) -> None:
        with self._pending_lock:
            frames = list(self._pending)
            self._pending.clear()
            self._transfer_scheduled = False
        for frame in frames:
            if self._queue.full():
                self._queue.get_nowait()
                self.dropped += 1
            self._queue.put_nowait(frame)
            self.delivered += 1
            self._last_frame_at = frame.at
        self._wakeup.set()

    def _finish(self) -> None:
        self._finished.set()
        self._wakeup.set()

    # --- in the capture thread ------------------------------------------------------------------

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # RuntimeError: the loop closed between the check and the call.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    def _hand_over(self, image: Image) -> None:
        frame = Frame(image, self._clock(), self._captured)
        self._captured += 1
        with self._pending_lock:
            self._pending.append(frame)
            # Never hold more frames than the queue can: a blocked loop must not fill memory.
            overflow = len(self._pending) - self._queue.maxsize
            for _ in range(max(0, overflow)):
                self._pending.popleft()
            schedule = not self._transfer_scheduled
            self._transfer_scheduled = True
        if overflow > 0:
            self._post(self._count_drops, overflow)
        if schedule:
            self._post(self._transfer)

    def _count_drops(self, count: int) -> None:
        self.dropped += count

    def _run(self) -> None:
        backoff = INITIAL_BACKOFF
        opened_before = False
        rewinding = False
        while not self._stopping.is_set():
            try:
                self.source.open()
            except Exception as exc:
                rewinding = False
                self._post(self._set_state, "fault", _describe(exc, self.source.name))
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if opened_before and not rewinding:
                self.reopens += 1
            opened_before = True
            if not rewinding:
                self._due = None  # pacing restarts after a fault; a loop keeps its rhythm
            rewinding = False
            try:
                outcome, delivered = self._pump()
            finally:
                try:
                    self.source.close()
                except Exception as exc:
                    log.debug("closing %s failed: %s", self.source.name, exc)
            if delivered:
                backoff = INITIAL_BACKOFF
            if outcome == "stopped":
                break
            if outcome == "end":
                if not self.loop:
                    self._post(self._finish)
                    break
                if delivered:
                    rewinding = True
                    continue
                outcome = f"{self.source.name}: nothing to replay"
            self._post(self._set_state, "fault", outcome)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def _pump(self) -> tuple[str, bool]:
        """Reads until stopped, the replay ends, or the source fails or stalls."""
        delivered = False
        last_frame = self._clock()
        while not self._stopping.is_set():
            try:
                image = self.source.read()
            except EndOfReplay:
                return "end", delivered
            except Exception as exc:
                return _describe(exc, self.source.name), delivered
            now = self._clock()
            if image is None:
                if now - last_frame > self.stall_after:
                    silent = now - last_frame
                    return f"{self.source.name}: no frame for {silent:.0f} s", delivered
                self._stopping.wait(_IDLE_WAIT)
                continue
            interval = self.source.interval
            if interval is not None:
                due = now if self._due is None else self._due + interval
                if due > now:
                    if self._stopping.wait(due - now):
                        break
                elif now - due > interval:
                    due = now  # far behind (slow disk, busy machine): do not burst to catch up
                self._due = due
            if not delivered:
                self._post(self._set_state, "ok", "")
            self._hand_over(image)
            delivered = True
            last_frame = self._clock()
        return "stopped", delivered


def _describe(exc: Exception, name: str) -> str:
    if isinstance(exc, CameraError):
        return str(exc)
    return f"{name} failed: {type(exc).__name__}: {exc}"[:300]
