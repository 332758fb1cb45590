"""One adapter per QR decoding library, each a plain function of a grayscale frame.

Each adapter returns `QrRead`s (text, the corners the library reported, which library read it)
and may raise whatever its library raises: `kiosk.vision.decode` wraps every call, and the
benchmark calls these one by one to compare the libraries alone.

Texts: zxing-cpp transcodes the payload itself (ECI or its guess) but its binding raises on bytes
that are not UTF-8; pyzbar and OpenCV hand over bytes. Bytes become text as UTF-8 when they are,
else Latin-1 (the QR default character set), so a binary payload still yields one stable string
that a verifier can reject, never an exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import zxingcpp
from numpy.typing import NDArray
from pyzbar import pyzbar

Gray = NDArray[np.uint8]
Point = tuple[float, float]

# Only QR codes: phones show QR, and every other symbology costs time and invites false reads.
_ZXING_QR = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
_ZBAR_QR = [pyzbar.ZBarSymbol.QRCODE]


@dataclass(frozen=True, slots=True)
class QrRead:
    """One decoded QR code: its text, the outline the decoder reported, and which decoder."""

    text: str
    corners: tuple[Point, ...]
    decoder: str

    @property
    def centre(self) -> Point:
        if not self.corners:
            return (float("nan"), float("nan"))
        xs = [x for x, _ in self.corners]
        ys = [y for _, y in self.corners]
        return (sum(xs) / len(xs), sum(ys) / len(ys))


def text_of(payload: bytes) -> str:
    """UTF-8 when the bytes are UTF-8, else Latin-1 (which maps every byte)."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")


@dataclass(frozen=True, slots=True)
class ZxingOptions:
    """One zxing-cpp pass: its reader settings and the name its errors are counted under.
    The defaults are zxing-cpp's own; the chain's passes and their reasons are in decode.py."""

    name: str = "zxing"
    try_rotate: bool = True
    try_downscale: bool = True
    try_invert: bool = True
    binarizer: str = "LocalAverage"


def read_zxing(gray: Gray, options: ZxingOptions = ZxingOptions()) -> list[QrRead]:
    return read_zxing_with_candidates(gray, options)[0]


def read_zxing_with_candidates(
    gray: Gray, options: ZxingOptions = ZxingOptions()
) -> tuple[list[QrRead], list[tuple[Point, ...]]]:
    """zxing-cpp's reads, and the outlines of the symbols it found but could not decode (where
    another decoder may still succeed)."""
    barcodes = zxingcpp.read_barcodes(
        gray,
        formats=_ZXING_QR,
        try_rotate=options.try_rotate,
        try_downscale=options.try_downscale,
        try_invert=options.try_invert,
        text_mode=zxingcpp.TextMode.Plain,
        binarizer=getattr(zxingcpp.Binarizer, options.binarizer),
        return_errors=True,
    )
    reads = []
    candidates = []
    for barcode in barcodes:
        position = barcode.position
        corners = tuple(
            (float(point.x), float(point.y))
            for point in (
                position.top_left,
                position.top_right,
                position.bottom_right,
                position.bottom_left,
            )
        )
        if barcode.valid:
            reads.append(QrRead(_zxing_text(barcode), corners, options.name))
        else:
            candidates.append(corners)
    return reads, candidates


def _zxing_text(barcode: Any) -> str:
    try:
        return str(barcode.text)
    except UnicodeDecodeError:
        return text_of(bytes(barcode.bytes))


def read_pyzbar(gray: Gray) -> list[QrRead]:
    reads = []
    for symbol in pyzbar.decode(gray, symbols=_ZBAR_QR):
        corners = tuple((float(point.x), float(point.y)) for point in symbol.polygon)
        reads.append(QrRead(text_of(bytes(symbol.data)), corners, "pyzbar"))
    return reads


def read_pyzbar_inverted(gray: Gray) -> list[QrRead]:
    """pyzbar on the negative: zbar finds no light-on-dark code (phones in dark mode)."""
    reads = read_pyzbar(np.bitwise_not(gray))
    return [QrRead(read.text, read.corners, "pyzbar-inverted") for read in reads]


# OpenCV detectors keep state between calls; one per thread keeps them safe to share.
_opencv_local = threading.local()


def _opencv_detector() -> Any:
    detector = getattr(_opencv_local, "detector", None)
    if detector is None:
        detector = cv2.QRCodeDetector()
        _opencv_local.detector = detector
    return detector


def read_opencv(gray: Gray) -> list[QrRead]:
    """One code per call: the multi-code search took minutes on a photo of many codes."""
    payload, points, _ = _opencv_detector().detectAndDecodeBytes(gray)
    if not payload or points is None:
        return []
    corners = tuple((float(x), float(y)) for x, y in np.asarray(points).reshape(-1, 2))
    return [QrRead(text_of(bytes(payload)), corners, "opencv")]


Decoder = Callable[[Gray], Sequence[QrRead]]

# Each library alone, as the benchmark compares them (zxing-cpp with its own defaults).
SINGLE_DECODERS: dict[str, Decoder] = {
    "zxing-cpp": read_zxing,
    "pyzbar": read_pyzbar,
    "opencv": read_opencv,
}
