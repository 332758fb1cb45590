"""Image files as the decoder chain wants them: one 8-bit grayscale image.

Used by `kiosk check --image` (an operator's screenshot or photo of a code). Transparent pixels
are laid over white, as a phone or a browser shows them: QR images exported with an alpha
channel often keep black colour under full transparency, which would hide the code.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from kiosk.errors import DataFileError

Gray = NDArray[np.uint8]


def read_image_file(path: Path | str) -> Gray:
    """The image at `path` in 8-bit grayscale; DataFileError naming the file when it cannot be."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: image not found")
    if not path.is_file():
        raise DataFileError(f"{path}: not a file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise DataFileError(f"{path}: not an image OpenCV can read (PNG, JPEG, BMP, TIFF, WebP…)")
    return to_gray_on_white(np.asarray(image))


def to_gray_on_white(decoded: NDArray[np.generic]) -> Gray:
    """8-bit gray from a decoded image of any depth and channel count; alpha over white."""
    image: NDArray[np.uint8]
    if decoded.dtype == np.uint8:
        image = np.asarray(decoded, dtype=np.uint8)
    elif decoded.dtype == np.uint16:
        image = (np.asarray(decoded, dtype=np.uint16) // 257).astype(np.uint8)
    else:  # 32-bit float or integer images (TIFF, EXR): stretch to the 8-bit range
        wide = np.nan_to_num(np.asarray(decoded, dtype=np.float64))
        low, high = float(wide.min()), float(wide.max())
        image = ((wide - low) * (255.0 / (high - low or 1.0))).astype(np.uint8)
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(image[:, :, 0], dtype=np.uint8)
    if channels == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        colour = image[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        image = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
