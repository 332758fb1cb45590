"""The door's view of the camera: the narrow interface the app reads frames through, and the
adapter onto kiosk.vision (capture thread, drop-oldest queue, reopen with backoff, decoders),
which owns that work.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, Protocol

from kiosk.door.config import CameraSection

if TYPE_CHECKING:
    from kiosk.vision.decode import DecoderChain

CameraState = Literal["ok", "fault"]


class CapturedFrame(Protocol):
    @property
    def image(self) -> Any: ...

    @property
    def at(self) -> float:
        """When the frame arrived from the camera (time.monotonic())."""


class FrameSource(Protocol):
    """Frames in capture order from a bounded queue that drops the oldest; a failing source says
    `fault` with a readable `detail` and keeps trying to reopen by itself
    (kiosk.vision.camera.Camera is the real one)."""

    @property
    def state(self) -> CameraState: ...

    @property
    def detail(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def next_frame(self) -> CapturedFrame | None:
        """The next frame, waiting for one; None once a replay without `loop` has ended."""


# pyzbar, the decoder chain's fallback, costs 13–40 ms of CPU on every frame that holds no code
# (640×480 to 1280×720); at 30 fps that alone needs more than a core, and a code shown meanwhile
# waits behind it. zxing-cpp reads a frame in a few ms, hit or miss (bench/door.py, decode.py).
FALLBACK_EVERY = 0.25


class FrameDecoder:
    """Every QR text in the door's frames; blocking, so the app calls it in its one decode thread.

    zxing-cpp reads every frame; the chain's slower fallback decoders run on at most one frame in
    every `fallback_every` seconds of camera time. A code only they can read is still read within
    that time of being shown (people hold a code up for a second or more), and a 30 fps stream of
    empty frames costs a fraction of a core.
    """

    def __init__(
        self, fallback_every: float = FALLBACK_EVERY, chain: DecoderChain | None = None
    ) -> None:
        from kiosk.vision.decode import default_chain

        self.fallback_every = fallback_every
        self._chain = chain or default_chain()
        self._next_fallback = -math.inf

    def __call__(self, image: Any, at: float) -> list[str]:
        """The texts in `image`, a frame that arrived at `at` (time.monotonic())."""
        fallback = at >= self._next_fallback
        if fallback:
            self._next_fallback = at + self.fallback_every
        return self._chain.read_texts(image, fallback=fallback)


def build_camera(section: CameraSection) -> FrameSource:
    """The camera the [camera] section describes."""
    from kiosk.vision.camera import build_camera as vision_camera

    return vision_camera(section)
