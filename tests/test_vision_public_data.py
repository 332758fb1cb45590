"""The decoder chain on real public images (../shared/data): a sample of the EU certificates in
the four ways bench/decode.py shows them, and a few BoofCV phone photos. Skipped without the data.
The full sets and the timings are bench/decode.py's job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from kiosk.vision.decode import DecoderChain, read_qr_texts
from kiosk.vision.images import read_image_file

# Every 40th certificate, and ones that zxing-cpp's first pass misses in a 640×480 frame, so the
# fallback steps are exercised too.
HARD_CERTIFICATES = ("CZ/png/2.png", "DK/2DCode/png/1.png", "CH/png/3.png")
PHOTOS = (
    "boofcv-v3/detection/nominal/image014.jpg",
    "boofcv-v3/detection/nominal/image065.jpg",
    "boofcv-v3/detection/perspective/image001.jpg",
    "boofcv-v3/detection/glare/image050.jpg",
    "boofcv-v3/detection/curved/image050.jpg",
    "boofcv-v3/detection/high_version/image032.jpg",
    "issues/invert.jpg",
)


def certificates(shared_data: Path) -> list[dict[str, Any]]:
    manifest = json.loads((shared_data / "dgc-testdata" / "manifest.json").read_text())
    chosen = manifest[::40] + [e for e in manifest if e["image"] in HARD_CERTIFICATES]
    assert len(chosen) >= 15
    return chosen


def placed(code: np.ndarray, width: int, height: int) -> np.ndarray:
    """The code scaled to 60% of the frame height, centred on grey (as bench/decode.py does)."""
    side = round(height * 0.6)
    interpolation = cv2.INTER_AREA if code.shape[0] > side else cv2.INTER_LINEAR
    frame = np.full((height, width), 128, np.uint8)
    top, left = (height - side) // 2, (width - side) // 2
    frame[top : top + side, left : left + side] = cv2.resize(
        code, (side, side), interpolation=interpolation
    )
    return frame


def test_chain_reads_every_sampled_certificate_four_ways(shared_data: Path) -> None:
    missed = []
    for entry in certificates(shared_data):
        code = read_image_file(shared_data / "dgc-testdata" / entry["image"])
        variants = {
            "as issued": code,
            "inverted": np.bitwise_not(code),
            "1280×720": placed(code, 1280, 720),
            "640×480": placed(code, 640, 480),
        }
        for variant, image in variants.items():
            if read_qr_texts(image) != entry["expected"]:
                missed.append(f"{entry['image']} {variant}")
    assert missed == []


@pytest.mark.parametrize("photo", PHOTOS)
def test_chain_reads_phone_photos(shared_data: Path, photo: str) -> None:
    root = shared_data / "boofcv-qrcodes-v3"
    entry = next(e for e in json.loads((root / "manifest.json").read_text()) if e["image"] == photo)
    image = cv2.imread(str(root / photo), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    assert image is not None
    assert set(read_qr_texts(image)) & set(entry["expected"])


def test_on_a_large_frame_pyzbar_reads_around_a_symbol_zxing_could_not_decode(
    shared_data: Path,
) -> None:
    # A 1000×1088 photo (larger than pyzbar reads whole) that only pyzbar decodes.
    image = cv2.imread(
        str(shared_data / "boofcv-qrcodes-v3/boofcv-v3/detection/noncompliant/image007.jpg"),
        cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION,
    )
    chain = DecoderChain()
    assert chain.read(image, fallback=False) == []
    (read,) = chain.read(image)
    assert read.decoder == "pyzbar"
    assert read.text == "http://www.radians.com/sizing_charts/"
    # Its corners are in frame coordinates (the labelled outline's centre is near 516, 551).
    x, y = read.centre
    assert abs(x - 516) < 30 and abs(y - 551) < 30
