"""The frames in front of a demo kiosk's camera (kiosk.demo.visitors), read as the kiosk reads
them: an empty doorway until the visitors come, then all of them at once, in the script's order
and with the verdicts their kinds promise; new green codes every round and the same others;
nobody after closing time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import pytest

from kiosk.codes import verify
from kiosk.demo.samples import SampleIssuer, new_sample_issuer
from kiosk.demo.story import DAOWAI
from kiosk.demo.visitors import VisitorFrames
from kiosk.door.frames import FrameDecoder
from kiosk.vision.camera import IMAGE_SUFFIXES

# Every round within a fraction of a second, so a refresh comes quickly.
QUICK = dataclasses.replace(DAOWAI, fps=60.0)

EXPECTED_VERDICT = {
    "green": "valid",
    "yellow": "valid",
    "forged": "bad_signature",
    "revoked": "revoked",
    "expired": "expired",
}


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=True)


def camera_texts(folder: Path) -> list[list[str]]:
    """What the kiosk's replay reads in one round: the texts of each image, in file order."""
    decoder = FrameDecoder(fallback_every=0.0)
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [decoder(cv2.imread(str(path)), float(n)) for n, path in enumerate(images)]


def verdicts(texts: list[list[str]], issuer: SampleIssuer) -> list[str]:
    now = int(time.time())
    revocation = issuer.revocation(now)
    return [verify(t, issuer.trust, revocation, now).verdict.value for ts in texts for t in ts]


async def test_the_doorway_is_empty_until_the_visitors_come_all_at_once(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    issuer = new_sample_issuer()
    frames = VisitorFrames(tmp_path / "daowai", QUICK, issuer, pool)
    frames.prepare()
    assert camera_texts(frames.camera) == [[]]

    await frames.open()
    texts = camera_texts(frames.camera)
    assert len(texts) == frames.frame_count
    assert [len(t) for t in texts] == [0, *([1] + [0] * QUICK.blank_frames) * len(QUICK.visitors)]
    assert verdicts(texts, issuer) == [EXPECTED_VERDICT[v.kind] for v in QUICK.visitors]


async def test_green_codes_are_new_every_round_and_none_after_closing(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    issuer = new_sample_issuer()
    frames = VisitorFrames(tmp_path / "daowai", QUICK, issuer, pool)
    frames.prepare()
    await frames.open()
    first = camera_texts(frames.camera)

    coming = asyncio.create_task(frames.keep_coming())
    try:
        await asyncio.sleep(frames.round_s * 1.5 + 1.0)  # one refresh, rendered
    finally:
        coming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await coming
    later = camera_texts(frames.camera)
    code_frames = [n for n, t in enumerate(first) if t]
    for n, visitor in zip(code_frames, QUICK.visitors, strict=True):
        if visitor.kind == "green":
            assert later[n] != first[n], n  # someone new
        else:
            assert later[n] == first[n], n  # denied whoever shows it: the same frame will do
    assert verdicts(later, issuer) == [EXPECTED_VERDICT[v.kind] for v in QUICK.visitors]

    await frames.close()
    assert camera_texts(frames.camera) == [[]] * frames.frame_count
