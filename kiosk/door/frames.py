"""The door's view of the camera: the narrow interface the app reads frames through, and the
adapter onto kiosk.vision (capture threads, reopen with backoff, decoders), which owns the work.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from kiosk.door.config import CameraSection

CameraState = Literal["ok", "fault"]


class FrameSource(Protocol):
    """Frames in capture order from a bounded queue that drops the oldest; a failing source says
    `fault` with a readable `detail` and keeps trying to reopen by itself."""

    @property
    def state(self) -> CameraState: ...

    @property
    def detail(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def get(self) -> Any:
        """The next frame (a numpy image); waits while there is none."""


def decode_frame(frame: Any) -> list[str]:
    """Every QR text in `frame`; blocking, so the app runs it in its decode thread."""
    from kiosk.vision.decode import read_qr_texts

    return read_qr_texts(frame)


def build_camera(section: CameraSection) -> FrameSource:
    """The camera the [camera] section describes."""
    raise NotImplementedError("waiting for kiosk.vision.camera")
