"""Camera-like frames holding QR codes, made with OpenCV: the demo's camera and the tests' input.

A code is rendered with segno at a whole number of pixels per module, then placed on a grey,
slightly noisy background, optionally rotated, so the frames look like a phone held up to a camera
rather than a clean file.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import segno
from numpy.typing import NDArray

Image = NDArray[np.uint8]


def render_qr(text: str, *, module_px: int = 6, quiet_zone: int = 4) -> Image:
    """The code as a grayscale image, black modules on white, `module_px` pixels per module."""
    code = segno.make_qr(text, error="m")
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=module_px, border=quiet_zone)
    decoded = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    if decoded is None:
        raise ValueError("segno produced an image OpenCV cannot read")
    return np.asarray(decoded, dtype=np.uint8)


def camera_frame(
    texts: list[str] | None = None,
    *,
    size: tuple[int, int] = (1280, 720),
    height_share: float = 0.6,
    angle_deg: float = 0.0,
    seed: int = 0,
    module_px: int | None = None,
) -> Image:
    """A BGR frame of `size` (width, height) with each code side by side, scaled to
    `height_share` of the frame height (fewer if they would not fit), rotated by `angle_deg`.

    With `module_px`, each code is drawn unscaled at that many pixels per module instead (a code
    far from the camera); it must fit its share of the frame width."""
    width, height = size
    rng = np.random.default_rng(seed)
    frame = np.full((height, width), 128, dtype=np.int16)
    frame += rng.integers(-6, 7, size=frame.shape, dtype=np.int16)
    codes = texts or []
    if codes:
        slot = width // len(codes)
        for index, text in enumerate(codes):
            if module_px is not None:
                qr = render_qr(text, module_px=module_px)
                side = qr.shape[0]
                if side > min(height, slot):
                    raise ValueError(f"a {side} px code does not fit a {slot}×{height} slot")
            else:
                qr = render_qr(text)
                side = int(min(height * height_share, slot * 0.9))
                qr = np.asarray(
                    cv2.resize(qr, (side, side), interpolation=cv2.INTER_AREA), dtype=np.uint8
                )
            x = index * slot + (slot - side) // 2
            y = (height - side) // 2
            frame[y : y + side, x : x + side] = qr
    gray = np.clip(frame, 0, 255).astype(np.uint8)
    if angle_deg:
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle_deg, 1.0)
        gray = np.asarray(
            cv2.warpAffine(gray, matrix, (width, height), borderValue=(128,)), dtype=np.uint8
        )
    return np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
