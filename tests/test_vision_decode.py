"""The decoder chain on frames made here with OpenCV: what it reads, what it survives, and that
decoding in the worker thread leaves the event loop free."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import pytest
import segno

from kiosk.demo.frames import camera_frame
from kiosk.vision.decode import (
    ChainSettings,
    DecoderChain,
    candidate_regions,
    read_qr_texts,
    read_qr_texts_async,
    to_gray,
)
from kiosk.vision.decoders import (
    ZxingOptions,
    read_opencv,
    read_pyzbar,
    read_pyzbar_inverted,
    read_zxing,
    text_of,
)

CODE = "VHC1:eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"


def gray(frame: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))


def test_reads_one_code_from_bgr_and_gray_frames() -> None:
    frame = camera_frame([CODE])
    assert read_qr_texts(frame) == [CODE]
    assert read_qr_texts(gray(frame)) == [CODE]
    assert read_qr_texts(gray(frame)[:, :, np.newaxis]) == [CODE]
    assert read_qr_texts(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)) == [CODE]


def test_two_phones_give_two_texts_left_to_right_and_a_repeat_counts_once() -> None:
    assert read_qr_texts(camera_frame(["left person", "right person"])) == [
        "left person",
        "right person",
    ]
    assert read_qr_texts(camera_frame(["same", "same"])) == ["same"]


def test_a_frame_without_a_code_gives_nothing() -> None:
    assert read_qr_texts(camera_frame([])) == []


def test_dark_mode_codes_are_read() -> None:
    assert read_qr_texts(np.bitwise_not(camera_frame([CODE], size=(640, 480)))) == [CODE]


def test_a_non_contiguous_view_is_read() -> None:
    frame = camera_frame([CODE], size=(1280, 720))
    view = frame[:, 200:1100]  # a crop shares memory and is not contiguous
    assert not view.flags["C_CONTIGUOUS"]
    assert read_qr_texts(view) == [CODE]


GARBAGE: list[object] = [
    None,
    "not a frame",
    [[0, 255], [255, 0]],
    np.zeros((0, 0), np.uint8),
    np.zeros((0, 640, 3), np.uint8),
    np.zeros((1, 1), np.uint8),
    np.zeros((1, 1, 3), np.uint8),
    np.zeros((20, 2000), np.uint8),
    np.zeros((480, 640), np.float32),
    np.random.default_rng(1).random((480, 640, 3)),
    np.zeros((480, 640), np.uint16),
    np.zeros((480, 640), bool),
    np.zeros((480, 640, 2), np.uint8),
    np.zeros((480, 640, 5), np.uint8),
    np.zeros((4, 480, 640, 3), np.uint8),
    np.random.default_rng(2).integers(0, 256, (480, 640, 4), dtype=np.uint8),
    np.random.default_rng(3).integers(0, 256, (720, 1280), dtype=np.uint8),
    np.full((720, 1280, 3), 255, np.uint8),
    np.zeros((5000, 5000), np.uint8),  # larger than any kiosk camera: refused unread
]


@pytest.mark.parametrize("frame", GARBAGE, ids=lambda f: type(f).__name__ + str(np.shape(f)))
def test_garbage_frames_give_nothing_and_never_raise(frame: object) -> None:
    chain = DecoderChain()
    assert chain.read_texts(frame) == []
    assert chain.stats.frames == 1 and chain.stats.frames_with_code == 0


def test_refused_frames_are_counted() -> None:
    chain = DecoderChain()
    for frame in (None, np.zeros((1, 1), np.uint8), np.zeros((480, 640), np.float32)):
        chain.read(frame)
    chain.read(camera_frame([CODE], size=(640, 480)))
    stats = chain.stats.as_dict()
    assert stats["frames"] == 4 and stats["rejected_frames"] == 3
    assert stats["frames_with_code"] == 1 and stats["errors"] == {}


def test_a_failing_decoder_is_counted_and_the_next_one_reads() -> None:
    # A binarizer zxing-cpp does not have makes its pass raise on every frame.
    broken = ChainSettings(zxing_passes=(ZxingOptions(binarizer="NoSuchBinarizer"),))
    chain = DecoderChain(broken)
    frame = camera_frame([CODE], size=(640, 480))
    assert chain.read_texts(frame) == [CODE]  # pyzbar, the fallback, read it
    stats = chain.stats
    assert stats.errors["zxing"] == 1
    assert "zxing" in stats.last_error and "NoSuchBinarizer" in stats.last_error
    # Without the fallback only the (broken) zxing-cpp pass runs.
    assert chain.read_texts(frame, fallback=False) == []
    assert chain.stats.errors["zxing"] == 2


def test_the_zxing_passes_alone_read_normal_and_dark_codes() -> None:
    frame = camera_frame([CODE], size=(1280, 720))
    assert read_qr_texts(frame, fallback=False) == [CODE]
    assert read_qr_texts(np.bitwise_not(frame), fallback=False) == [CODE]
    names = DecoderChain().step_names
    assert names == ["zxing", "zxing-global", "pyzbar", "pyzbar-inverted"]


def test_binary_payloads_become_text_without_raising() -> None:
    payload = bytes([0xFF, 0xFE, 0x00, 0x81]) + b"VHC1:binary" + bytes(range(0x80, 0x90))
    code = segno.make_qr(payload, error="m", mode="byte")
    image = np.kron(np.asarray(code.matrix, dtype=np.uint8), np.ones((6, 6), np.uint8))
    image = np.pad((1 - image) * 255, 24, constant_values=255).astype(np.uint8)
    texts = read_qr_texts(image)
    assert len(texts) == 1 and isinstance(texts[0], str) and "VHC1:binary" in texts[0]
    assert text_of(payload) == payload.decode("latin-1")
    assert text_of("é".encode()) == "é"
    for reader in (read_zxing, read_pyzbar):
        reads = reader(image)
        assert len(reads) == 1 and "VHC1:binary" in reads[0].text


def test_each_decoder_alone_reports_text_and_outline() -> None:
    frame = gray(camera_frame([CODE], size=(1280, 720)))
    for reader in (read_zxing, read_pyzbar, read_opencv):
        (read,) = reader(frame)
        assert read.text == CODE
        x, y = read.centre
        assert abs(x - 640) < 20 and abs(y - 360) < 20, (reader.__name__, read.corners)
    assert read_pyzbar(np.bitwise_not(frame)) == []
    assert [r.text for r in read_pyzbar_inverted(np.bitwise_not(frame))] == [CODE]


def test_to_gray_converts_once_and_refuses_what_cannot_hold_a_code() -> None:
    frame = camera_frame([CODE], size=(640, 480))
    converted = to_gray(frame)
    assert converted is not None and converted.shape == (480, 640)
    assert converted.dtype == np.uint8 and converted.flags["C_CONTIGUOUS"]
    assert to_gray(np.zeros((20, 640), np.uint8)) is None


async def test_decoding_leaves_the_event_loop_free() -> None:
    """A 10 ms ticker keeps ticking while 1920×1080 frames decode in the worker thread."""
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    with_code = camera_frame([CODE], size=(1920, 1080), seed=3)
    # pyzbar over the whole of an empty frame: the longest decode one frame can cost.
    without_code = camera_frame([], size=(1920, 1080), seed=4)
    exhaustive = DecoderChain(ChainSettings.exhaustive())
    task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.03)
        assert await read_qr_texts_async(with_code) == [CODE]
        start = time.monotonic()
        assert await exhaustive.read_texts_async(without_code) == []
        end = time.monotonic()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    inside = [t for t in ticks if start < t < end]
    # Had the decode blocked the loop, no tick could fall inside its window.
    expected_ticks = (end - start) / 0.01
    assert len(inside) >= max(2, int(expected_ticks * 0.3)), (len(inside), end - start)
    gaps = np.diff([start, *inside, end])
    assert gaps.max() < max(0.1, (end - start) / 2), gaps


def test_pyzbar_crops_cover_each_undecoded_symbol_once() -> None:
    square = ((100.0, 100.0), (300.0, 100.0), (300.0, 300.0), (100.0, 300.0))
    again = tuple((x + 3, y - 2) for x, y in square)  # the same symbol from another pass
    edge = ((1200.0, 650.0), (1279.0, 650.0), (1279.0, 719.0), (1200.0, 719.0))
    tiny = ((5.0, 5.0), (9.0, 5.0), (9.0, 9.0), (5.0, 9.0))
    regions = candidate_regions([square, again, edge, tiny, ()], 1280, 720)
    assert regions == [(67, 67, 334, 334), (1182, 633, 1280, 720)]
    many = [((x, 10.0), (x + 40, 10.0), (x + 40, 50.0), (x, 50.0)) for x in range(0, 1000, 100)]
    assert len(candidate_regions(many, 1280, 720)) == 4
