"""Every QR text in a camera frame: the decoder chain the door process runs on each frame.

(The chain's order and settings are justified by `bench/decode.py`; the reasoning is filled in
below once measured.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import cv2
import numpy as np

from kiosk.vision.decoders import (
    Gray,
    QrRead,
    ZxingOptions,
    read_opencv,
    read_pyzbar,
    read_pyzbar_inverted,
    read_zxing,
)

log = logging.getLogger(__name__)

Step = Callable[[Gray], Sequence[QrRead]]

# The smallest QR code (version 1) is 21 modules wide; nothing smaller can hold one.
MIN_FRAME_SIDE = 21
# Beyond 4096×4096 a frame is a misconfigured camera or garbage; decoding it would stall the door.
MAX_FRAME_PIXELS = 4096 * 4096


@dataclass(frozen=True, slots=True)
class ChainSettings:
    """Which steps the chain runs, in order, each only when the ones before found nothing.

    A step with a pixel bound is skipped on larger frames: that is its time box (no decoder can
    be interrupted once called). 0 turns a step off.
    """

    zxing: ZxingOptions = field(default_factory=ZxingOptions)
    zxing_second_binarizer: str | None = "GlobalHistogram"
    pyzbar_max_pixels: int = MAX_FRAME_PIXELS
    pyzbar_inverted_max_pixels: int = 800 * 600
    opencv_max_pixels: int = 0

    @classmethod
    def exhaustive(cls) -> ChainSettings:
        """Every zxing-cpp and pyzbar step on any frame: for one image, where time matters less."""
        return cls(pyzbar_inverted_max_pixels=MAX_FRAME_PIXELS)


@dataclass
class DecodeStats:
    """Counters for the status page: frames seen, frames that held a code, what went wrong."""

    frames: int = 0
    frames_with_code: int = 0
    rejected_frames: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "frames_with_code": self.frames_with_code,
            "rejected_frames": self.rejected_frames,
            "errors": dict(self.errors),
            "last_error": self.last_error,
        }


def to_gray(frame: object) -> Gray | None:
    """The frame as one contiguous 8-bit grayscale image, or None when it cannot hold a code.

    Accepts grayscale (H×W or H×W×1), BGR and BGRA 8-bit frames as OpenCV captures them.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        return None
    if frame.ndim not in (2, 3) or frame.size == 0:
        return None
    height, width = frame.shape[:2]
    if min(height, width) < MIN_FRAME_SIDE or height * width > MAX_FRAME_PIXELS:
        return None
    if frame.ndim == 2:
        gray = frame
    elif frame.shape[2] == 1:
        gray = frame[:, :, 0]
    elif frame.shape[2] == 3:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif frame.shape[2] == 4:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    else:
        return None
    return np.ascontiguousarray(gray, dtype=np.uint8)


class DecoderChain:
    """Runs the decoders in order on one grayscale copy of a frame; never raises.

    Thread-safe: the door decodes in a worker thread while its status page reads `stats`.
    """

    def __init__(self, settings: ChainSettings = ChainSettings()) -> None:
        self.settings = settings
        self._stats = DecodeStats()
        self._lock = threading.Lock()
        steps: list[tuple[str, int, Step]] = [
            ("zxing", MAX_FRAME_PIXELS, partial(read_zxing, options=settings.zxing))
        ]
        if settings.zxing_second_binarizer:
            second = replace(settings.zxing, binarizer=settings.zxing_second_binarizer)
            steps.append(
                ("zxing-" + second.binarizer, MAX_FRAME_PIXELS, partial(read_zxing, options=second))
            )
        steps += [
            ("pyzbar", settings.pyzbar_max_pixels, read_pyzbar),
            ("pyzbar-inverted", settings.pyzbar_inverted_max_pixels, read_pyzbar_inverted),
            ("opencv", settings.opencv_max_pixels, read_opencv),
        ]
        self._steps = tuple(steps)

    @property
    def stats(self) -> DecodeStats:
        with self._lock:
            return DecodeStats(
                self._stats.frames,
                self._stats.frames_with_code,
                self._stats.rejected_frames,
                Counter(self._stats.errors),
                self._stats.last_error,
            )

    def read(self, frame: object) -> list[QrRead]:
        """Every distinct QR code in the frame, left to right; [] for a frame that holds none."""
        gray = to_gray(frame)
        if gray is None:
            with self._lock:
                self._stats.frames += 1
                self._stats.rejected_frames += 1
            return []
        reads: list[QrRead] = []
        for name, max_pixels, step in self._steps:
            if gray.size > max_pixels:
                continue
            reads = self._guarded(name, step, gray)
            if reads:
                break
        distinct = _distinct(reads)
        with self._lock:
            self._stats.frames += 1
            if distinct:
                self._stats.frames_with_code += 1
        return distinct

    def read_texts(self, frame: object) -> list[str]:
        return [read.text for read in self.read(frame)]

    async def read_texts_async(self, frame: object) -> list[str]:
        """`read_texts` in a worker thread: the decoders release the GIL, so the loop runs on."""
        return await asyncio.to_thread(self.read_texts, frame)

    def _guarded(self, name: str, step: Step, gray: Gray) -> list[QrRead]:
        try:
            return [read for read in step(gray) if read.text]
        except Exception as exc:  # a library failing on one frame must not stop the door
            detail = f"{name}: {type(exc).__name__}: {exc}"[:200]
            with self._lock:
                self._stats.errors[name] += 1
                self._stats.last_error = detail
            log.debug("decoder failed on a frame: %s", detail)
            return []


def _distinct(reads: Sequence[QrRead]) -> list[QrRead]:
    """One read per text (a code seen twice is one code), ordered left to right."""
    seen: dict[str, QrRead] = {}
    for read in reads:
        seen.setdefault(read.text, read)
    return sorted(seen.values(), key=lambda read: (read.centre[0], read.centre[1]))


_default_chain = DecoderChain()


def default_chain() -> DecoderChain:
    """The chain `read_qr_texts` uses; its `stats` count every frame decoded through it."""
    return _default_chain


def read_qr_texts(frame: object) -> list[str]:
    """Every distinct QR text in a BGR, BGRA or gray uint8 frame; [] when none; never raises."""
    return _default_chain.read_texts(frame)


async def read_qr_texts_async(frame: object) -> list[str]:
    """`read_qr_texts` in a worker thread, so the event loop never waits on a decoder."""
    return await _default_chain.read_texts_async(frame)
