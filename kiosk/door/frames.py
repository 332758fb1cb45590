"""The door's view of the camera: the narrow interface the app reads frames through, and the
adapter onto kiosk.vision (capture thread, drop-oldest queue, reopen with backoff, decoders),
which owns that work.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from kiosk.door.config import CameraSection

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


def decode_frame(image: Any) -> list[str]:
    """Every QR text in a frame's image; blocking, so the app runs it in its decode thread."""
    from kiosk.vision.decode import read_qr_texts

    return read_qr_texts(image)


def build_camera(section: CameraSection) -> FrameSource:
    """The camera the [camera] section describes."""
    from kiosk.vision.camera import build_camera as vision_camera

    return vision_camera(section)
