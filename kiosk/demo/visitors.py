"""The visitors in front of one kiosk's camera: camera-like frames in the folder the kiosk
replays (`camera.source`, `camera.loop = true`), rendered off the event loop.

The folder's path is a symbolic link, swapped whole (an atomic rename) between a folder with
one empty frame and the folder of visitors, because the replay lists the folder again at every
round: the visitors must appear all at once, from the first of them, once the kiosk holds the
collector's trust list (before that every code would be "cannot verify"). The scripted readings
and mask states then pair with the visitors in order (a code frame the kiosk drops under load
shifts them by one visitor from then on: the story changes, the findings do not). A round that
was listed before the swap reads its one file, `0000.jpg`, after it: an empty frame in both.

Green codes are issued afresh for every round, as new people would bring them: one code shown
round after round would be one person let in again and again, which the collector reports as
code_reuse. The other samples are denied whoever shows them, so they are rendered once; the
revoked holder is fixed up front, so the revocation list can be published before the kiosks
start. Each file is replaced by an atomic rename, so the replay reads an old or a new frame,
never half of one. At closing time the code frames become empty frames: nobody comes any more.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import Executor, Future
from pathlib import Path

import cv2

from kiosk.codes.issuing import random_sub
from kiosk.demo.frames import Image, camera_frame
from kiosk.demo.samples import SampleIssuer
from kiosk.demo.story import Unit

FRAME_SIZE = (640, 360)
JPEG_QUALITY = 90
FRESH_KINDS = frozenset({"green"})  # the kinds that may be let in: new people every round


def _jpeg(image: Image) -> bytes:
    # JPEG as a camera delivers it: a tenth of PNG's cost to write and a quarter to read.
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode a demo frame")
    return bytes(encoded.tobytes())


def _write_atomic(path: Path, data: bytes) -> None:
    # A name the replay ignores (no image suffix), then a rename over the frame.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class VisitorFrames:
    """One kiosk's camera folder. `camera` is what its configuration names."""

    def __init__(self, folder: Path, unit: Unit, issuer: SampleIssuer, pool: Executor) -> None:
        self.unit = unit
        self.camera = folder / "camera"
        self._waiting = folder / "frames-waiting"
        self._visitors = folder / "frames-visitors"
        self._issuer = issuer
        self._pool = pool
        self._revoked_sub = random_sub()
        issuer.revoked_subs.add(self._revoked_sub)
        # Frame 0 is empty; each visitor's code frame is followed by `blank_frames` empty ones.
        self._code_frames = {
            1 + number * (1 + unit.blank_frames): visitor.kind
            for number, visitor in enumerate(unit.visitors)
        }
        self.frame_count = 1 + len(unit.visitors) * (1 + unit.blank_frames)
        self._blank = b""
        self._rendered: Future[None] | None = None
        self._closed = False  # set on the event loop, read in the pool's thread

    @property
    def round_s(self) -> float:
        """How long one round of the replay takes."""
        return self.frame_count / self.unit.fps

    def prepare(self) -> None:
        """The camera folder with one empty frame, and the visitors' frames rendered in the
        background (`open` shows them)."""
        folder = self.camera.parent
        folder.mkdir(parents=True, exist_ok=True)
        self._blank = _jpeg(camera_frame([], size=FRAME_SIZE, seed=0))
        self._waiting.mkdir()
        _write_atomic(self._waiting / "0000.jpg", self._blank)
        self.camera.symlink_to(self._waiting.name, target_is_directory=True)
        self._rendered = self._pool.submit(self._render_all)

    async def open(self) -> None:
        """Let the visitors in: the camera folder becomes theirs, whole."""
        if self._rendered is None:
            raise RuntimeError("prepare() first")
        await asyncio.wrap_future(self._rendered)
        link = self.camera.with_name(".camera.tmp")
        link.symlink_to(self._visitors.name, target_is_directory=True)
        os.replace(link, self.camera)

    async def keep_coming(self) -> None:
        """New people with new green codes, every round, until cancelled."""
        while True:
            await asyncio.sleep(self.round_s)
            await asyncio.wrap_future(self._pool.submit(self._render_fresh))

    async def close(self) -> None:
        """Closing time: every code frame becomes an empty one (a refresh under way stops at its
        next frame rather than finish a round nobody will see)."""
        self._closed = True
        await asyncio.wrap_future(self._pool.submit(self._blank_codes))

    # -- in the pool's thread ----------------------------------------------------------------

    def _render_all(self) -> None:
        self._visitors.mkdir()
        now = int(time.time())
        for index in range(self.frame_count):
            kind = self._code_frames.get(index)
            data = self._blank if kind is None else self._code_frame(kind, index, now)
            _write_atomic(self._visitors / f"{index:04d}.jpg", data)

    def _render_fresh(self) -> None:
        now = int(time.time())
        for index, kind in self._code_frames.items():
            if self._closed:
                return
            if kind in FRESH_KINDS:
                _write_atomic(
                    self._visitors / f"{index:04d}.jpg", self._code_frame(kind, index, now)
                )

    def _blank_codes(self) -> None:
        if not self._visitors.is_dir():  # closed before the visitors' frames were rendered
            return
        for index in self._code_frames:
            _write_atomic(self._visitors / f"{index:04d}.jpg", self._blank)

    def _code_frame(self, kind: str, index: int, now: int) -> bytes:
        sub = self._revoked_sub if kind == "revoked" else None
        text = self._issuer.code(kind, now, sub=sub)
        return _jpeg(camera_frame([text], size=FRAME_SIZE, seed=index))
