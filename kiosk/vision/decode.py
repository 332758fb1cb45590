"""Every QR text in a camera frame: the decoder chain the door process runs on each frame.

The order, the passes and the bounds come from `bench/decode.py` (bench/results/decode.md; 2
cores, single-threaded; times vary with the machine's load, which the report states):

1. zxing-cpp with its defaults (downscaled pyramid, inverted image): it alone reads 100% of the
   507 certificates as issued and inverted, 99% in a 1280×720 frame, 96% in 640×480, and 69% of
   the BoofCV phone photos, in 1–3 ms per 1280×720 frame, hit or miss. Its inverted pass is what
   reads dark-mode phones (0 of 507 inverted certificates without it), its downscaled pyramid
   what reads most photos (49% without it). A cheaper first pass without both (about 1 ms less
   per hit at 1280×720) was measured and dropped: it stops at the first, nearest code, and in
   frames holding several it missed the one that mattered (2 of the 96 photos); two visitors
   may hold up phones at once.
2. zxing-cpp again with the global-histogram binarizer, only when the first pass read nothing:
   it reads the 22 certificates in 640×480 frames and the 3 in 1280×720 that the first pass
   misses, and costs under 1 ms on a 1280×720 frame without a code.
3. pyzbar (the fallback), only when zxing-cpp read nothing: it reads a few photos zxing-cpp
   cannot (pathological and noncompliant codes; 69% → 75% of the photos with steps 2 and 3).
   It costs 10–45 ms on an empty 640×480 to 1280×720 frame and 100–180 ms at 1920×1080, so it
   reads whole frames only up to 800×600; on larger frames it reads crops around the symbols
   zxing-cpp found but could not decode (a few ms each). On the public sets the bound loses no
   read, and an empty 1280×720 frame costs the zxing-cpp passes' 1.5 ms instead of about 90 ms.
   zbar reads light-on-dark codes only from the negative, so pyzbar also runs on the negative
   (measured apart: it read the one dark-mode certificate in a 640×480 frame that both
   zxing-cpp passes missed).
4. OpenCV's QRCodeDetector is off: it adds one BoofCV photo to the chain's reads while costing
   well over 100 ms (median) on every 1280×720 frame without a code here, and seconds on some
   photos (its multi-code search took 100 s on one); it cannot be interrupted, so it cannot be
   time-boxed. `ChainSettings(opencv_max_pixels=...)` turns it on below a frame size.

Grayscale conversion happens once per frame (0.3 ms at 1280×720); nothing is upscaled. Every
decoder call is guarded: a library that raises on a frame (OpenCV on some ECI codes, zxing-cpp's
binding on text that is not UTF-8) costs that step, is counted in `stats`, and the next step
runs. The door may skip the fallback on most frames of a stream (`fallback=False`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import cv2
import numpy as np

from kiosk.vision.decoders import (
    Gray,
    Point,
    QrRead,
    ZxingOptions,
    read_opencv,
    read_pyzbar,
    read_pyzbar_inverted,
    read_zxing_with_candidates,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The smallest QR code (version 1) is 21 modules wide; nothing smaller can hold one.
MIN_FRAME_SIDE = 21
# Beyond 4096×4096 a frame is a misconfigured camera or garbage; decoding it would stall the door.
MAX_FRAME_PIXELS = 4096 * 4096

ZXING_FULL = ZxingOptions(name="zxing")
ZXING_GLOBAL = ZxingOptions(name="zxing-global", binarizer="GlobalHistogram")

# Around a symbol zxing-cpp found but could not decode, pyzbar reads a crop this much larger
# than the symbol on each side: about its quiet zone, and corners placed imprecisely. (zbar is
# sensitive to it: on the one photo of the public sets read this way, 10–15% work, 5% and 20%
# do not.)
CANDIDATE_MARGIN = 0.125
MAX_CANDIDATES = 4


@dataclass(frozen=True, slots=True)
class ChainSettings:
    """What the chain runs. The zxing-cpp passes are its primary steps; pyzbar (on the frame and
    its negative) and OpenCV are its fallback, which a caller may leave out for a frame
    (`read(frame, fallback=False)`), as the door does on most frames of a stream.

    pyzbar reads whole frames up to `pyzbar_frame_max_pixels` and, on larger ones, only crops
    around the symbols zxing-cpp found but could not decode. OpenCV runs on frames up to
    `opencv_max_pixels` (0: never).
    """

    zxing_passes: tuple[ZxingOptions, ...] = (ZXING_FULL, ZXING_GLOBAL)
    pyzbar_frame_max_pixels: int = 800 * 600
    pyzbar_inverted: bool = True
    opencv_max_pixels: int = 0

    @classmethod
    def exhaustive(cls) -> ChainSettings:
        """pyzbar on the whole of any frame: for one image, where time matters less."""
        return cls(pyzbar_frame_max_pixels=MAX_FRAME_PIXELS)


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


Region = tuple[int, int, int, int]  # x0, y0, x1, y1


def candidate_regions(
    outlines: Sequence[tuple[Point, ...]], width: int, height: int
) -> list[Region]:
    """Crops around undecoded symbols, grown by CANDIDATE_MARGIN, one per place (at most 4)."""
    regions: list[Region] = []
    for outline in outlines:
        if not outline:
            continue
        xs = [x for x, _ in outline]
        ys = [y for _, y in outline]
        centre_x, centre_y = sum(xs) / len(xs), sum(ys) / len(ys)
        if any(x0 <= centre_x < x1 and y0 <= centre_y < y1 for x0, y0, x1, y1 in regions):
            continue  # the same symbol, found again by another pass
        grow_x = (max(xs) - min(xs)) * CANDIDATE_MARGIN + 8
        grow_y = (max(ys) - min(ys)) * CANDIDATE_MARGIN + 8
        x0, x1 = max(0, int(min(xs) - grow_x)), min(width, int(max(xs) + grow_x) + 1)
        y0, y1 = max(0, int(min(ys) - grow_y)), min(height, int(max(ys) + grow_y) + 1)
        if x1 - x0 >= MIN_FRAME_SIDE and y1 - y0 >= MIN_FRAME_SIDE:
            regions.append((x0, y0, x1, y1))
        if len(regions) == MAX_CANDIDATES:
            break
    return regions


def _shifted(read: QrRead, x0: int, y0: int) -> QrRead:
    return QrRead(read.text, tuple((x + x0, y + y0) for x, y in read.corners), read.decoder)


class DecoderChain:
    """Runs the decoders in order on one grayscale copy of a frame; never raises.

    Thread-safe: the door decodes in a worker thread while its status page reads `stats`.
    """

    def __init__(self, settings: ChainSettings | None = None) -> None:
        self.settings = settings or ChainSettings()
        self._stats = DecodeStats()
        self._lock = threading.Lock()
        pyzbar_steps = [("pyzbar", read_pyzbar)]
        if self.settings.pyzbar_inverted:
            pyzbar_steps.append(("pyzbar-inverted", read_pyzbar_inverted))
        self._pyzbar_steps: tuple[tuple[str, Callable[[Gray], list[QrRead]]], ...] = tuple(
            pyzbar_steps
        )

    @property
    def step_names(self) -> list[str]:
        """The steps in the order they run (the fallback ones last)."""
        names = [options.name for options in self.settings.zxing_passes]
        names += [name for name, _ in self._pyzbar_steps]
        if self.settings.opencv_max_pixels > 0:
            names.append("opencv")
        return names

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

    def read(self, frame: object, *, fallback: bool = True) -> list[QrRead]:
        """Every distinct QR code in the frame, left to right; [] for a frame that holds none.
        `fallback=False` runs the zxing-cpp passes only."""
        gray = to_gray(frame)
        if gray is None:
            with self._lock:
                self._stats.frames += 1
                self._stats.rejected_frames += 1
            return []
        reads = self._decode(gray, fallback)
        distinct = _distinct(reads)
        with self._lock:
            self._stats.frames += 1
            if distinct:
                self._stats.frames_with_code += 1
        return distinct

    def read_texts(self, frame: object, *, fallback: bool = True) -> list[str]:
        return [read.text for read in self.read(frame, fallback=fallback)]

    async def read_texts_async(self, frame: object, *, fallback: bool = True) -> list[str]:
        """`read_texts` in a worker thread: the decoders release the GIL, so the loop runs on."""
        return await asyncio.to_thread(partial(self.read_texts, frame, fallback=fallback))

    def _decode(self, gray: Gray, fallback: bool) -> list[QrRead]:
        outlines: list[tuple[Point, ...]] = []
        for options in self.settings.zxing_passes:
            found = self._guarded(
                options.name, partial(read_zxing_with_candidates, options=options), gray
            )
            if found is None:
                continue
            reads = [read for read in found[0] if read.text]
            if reads:
                return reads
            outlines += found[1]
        if not fallback:
            return []
        height, width = gray.shape
        whole = gray.size <= self.settings.pyzbar_frame_max_pixels
        regions = [(0, 0, width, height)] if whole else candidate_regions(outlines, width, height)
        for name, step in self._pyzbar_steps:
            reads = []
            for x0, y0, x1, y1 in regions:
                crop = gray if whole else np.ascontiguousarray(gray[y0:y1, x0:x1])
                for read in self._guarded(name, step, crop) or []:
                    if read.text:
                        reads.append(_shifted(read, x0, y0))
            if reads:
                return reads
        if gray.size <= self.settings.opencv_max_pixels:
            return [read for read in self._guarded("opencv", read_opencv, gray) or [] if read.text]
        return []

    def _guarded(self, name: str, step: Callable[[Gray], T], gray: Gray) -> T | None:
        """The step's result, or None when its library raised (counted, and logged at debug)."""
        try:
            return step(gray)
        except Exception as exc:  # a library failing on one frame must not stop the door
            detail = f"{name}: {type(exc).__name__}: {exc}"[:200]
            with self._lock:
                self._stats.errors[name] += 1
                self._stats.last_error = detail
            log.debug("decoder failed on a frame: %s", detail)
            return None


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


def read_qr_texts(frame: object, *, fallback: bool = True) -> list[str]:
    """Every distinct QR text in a BGR, BGRA or gray uint8 frame; [] when none; never raises.
    `fallback=False` runs the zxing-cpp passes only."""
    return _default_chain.read_texts(frame, fallback=fallback)


async def read_qr_texts_async(frame: object, *, fallback: bool = True) -> list[str]:
    """`read_qr_texts` in a worker thread, so the event loop never waits on a decoder."""
    return await _default_chain.read_texts_async(frame, fallback=fallback)
