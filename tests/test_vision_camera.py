"""Camera sources: folder and video replay, drop-oldest delivery, faults and reopening, clean stop.

Real image and video files written with OpenCV in tmp_path; short intervals keep it fast.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.door.config import CameraSection
from kiosk.vision.camera import (
    Camera,
    CameraError,
    FolderSource,
    Frame,
    MemorySource,
    VideoCaptureSource,
    build_camera,
    source_for,
)


def shade(value: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    width, height = size
    return np.full((height, width, 3), value, dtype=np.uint8)


def write_images(folder: Path, names_values: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in names_values.items():
        assert cv2.imwrite(str(folder / name), shade(value))


def value_of(frame: Frame) -> int:
    return int(frame.image[0, 0, 0])


async def take(camera: Camera, count: int) -> list[Frame]:
    frames = []
    async with asyncio.timeout(5.0):
        while len(frames) < count:
            frame = await camera.next_frame()
            assert frame is not None, "replay finished early"
            frames.append(frame)
    return frames


async def until(predicate: object) -> None:
    deadline = time.monotonic() + 5.0
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def camera_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("camera ")]


async def test_folder_replays_images_in_name_order_at_the_set_rate(tmp_path: Path) -> None:
    folder = tmp_path / "replay"
    # Written out of order; a non-image file and an unreadable image are skipped.
    write_images(folder, {"frame-03.png": 30, "frame-01.png": 10, "frame-02.jpg": 20})
    (folder / "notes.txt").write_text("not a frame")
    (folder / "frame-025.png").write_bytes(b"not a png")
    source = FolderSource(folder, fps=25)
    camera = Camera(source, queue_size=8)
    before = time.monotonic()
    async with camera:
        await camera.wait_finished()
        frames = [frame async for frame in drain(camera)]
    after = time.monotonic()

    assert [value_of(f) for f in frames] == [10, 20, 30]
    assert [f.index for f in frames] == [0, 1, 2]
    assert source.unreadable == 1
    assert camera.finished and camera.state == "ok"
    # Arrival stamps are monotonic times, in order, at least one interval (40 ms) apart.
    stamps = [f.at for f in frames]
    assert before <= stamps[0] <= stamps[-1] <= after
    gaps = np.diff(stamps)
    assert all(gap >= 0.04 * 0.9 for gap in gaps), gaps
    assert await camera.next_frame() is None


async def drain(camera: Camera):  # type: ignore[no-untyped-def]
    while (frame := await camera.next_frame()) is not None:
        yield frame


async def test_folder_replay_loops_when_asked(tmp_path: Path) -> None:
    write_images(tmp_path, {"a.png": 1, "b.png": 2, "c.png": 3})
    camera = Camera(FolderSource(tmp_path, fps=100), loop=True, queue_size=16)
    async with camera:
        frames = await take(camera, 7)
    assert [value_of(f) for f in frames] == [1, 2, 3, 1, 2, 3, 1]
    assert not camera.finished
    assert camera.reopens == 0 and camera.faults == 0


async def test_a_slow_consumer_gets_the_newest_frames_and_drops_are_counted() -> None:
    images = [shade(i) for i in range(20)]
    camera = Camera(MemorySource(images, fps=400), queue_size=2)
    async with camera:
        await camera.wait_finished()
        # Nothing was read meanwhile: only the two newest frames are left.
        await until(lambda: camera.delivered == 20)
        frames = [frame async for frame in drain(camera)]
    assert [value_of(f) for f in frames] == [18, 19]
    assert camera.dropped == 18
    assert camera.status()["dropped"] == 18 and camera.status()["delivered"] == 20


async def test_a_missing_folder_is_a_fault_until_it_appears(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    camera = Camera(FolderSource(folder, fps=50), loop=True, max_backoff=0.2)
    async with camera:
        await until(lambda: camera.state == "fault")
        assert "cannot list" in camera.detail and str(folder) in camera.detail
        write_images(folder, {"1.png": 7})
        frame = (await take(camera, 1))[0]
        assert value_of(frame) == 7
        assert camera.state == "ok" and camera.detail == ""
        assert camera.faults == 1


async def test_a_source_that_disappears_is_reopened_when_it_returns(tmp_path: Path) -> None:
    folder, away = tmp_path / "frames", tmp_path / "away"
    write_images(folder, {"1.png": 1, "2.png": 2})
    camera = Camera(FolderSource(folder, fps=100), loop=True, max_backoff=0.2, queue_size=1)
    async with camera:
        await take(camera, 2)
        folder.rename(away)
        await until(lambda: camera.state == "fault")
        # Depending on when the thread looks: the folder is gone, or its files went with it.
        assert re.search("cannot list|no images|nothing to replay", camera.detail)
        away.rename(folder)
        await until(lambda: camera.state == "ok" and camera.reopens >= 1)
        await take(camera, 2)
    assert camera.faults == 1


class SilentCamera:
    """A live source that opens and then never delivers (a frozen USB camera)."""

    name = "silent test camera"
    interval = None

    def __init__(self) -> None:
        self.opens = 0

    def open(self) -> None:
        self.opens += 1

    def read(self) -> np.ndarray | None:
        time.sleep(0.005)
        return None

    def close(self) -> None:
        pass


async def test_a_stalled_camera_is_a_fault_and_is_reopened_with_backoff() -> None:
    source = SilentCamera()
    camera = Camera(source, stall_after=0.1, max_backoff=0.2)
    async with camera:
        await until(lambda: camera.state == "fault")
        assert "no frame for" in camera.detail
        await until(lambda: source.opens >= 3)
    assert camera.reopens >= 2
    assert not camera_threads()


async def test_a_video_file_is_replayed_and_a_missing_one_is_a_fault(tmp_path: Path) -> None:
    video = tmp_path / "door.avi"
    camera = Camera(VideoCaptureSource(str(video)), max_backoff=0.2, queue_size=16)
    async with camera:
        await until(lambda: camera.state == "fault")
        assert "no video file" in camera.detail
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 50.0, (64, 48))
        assert writer.isOpened()
        for value in (40, 120, 200):
            writer.write(shade(value))
        writer.release()
        await camera.wait_finished()
        frames = [frame async for frame in drain(camera)]
    # MJPG is lossy: compare shades loosely.
    assert [round(value_of(f) / 40) for f in frames] == [1, 3, 5]
    assert camera.state == "ok"


async def test_stop_is_prompt_and_leaves_no_thread_even_during_backoff(tmp_path: Path) -> None:
    camera = Camera(FolderSource(tmp_path / "never", fps=5), max_backoff=30.0)
    await camera.start()
    await until(lambda: camera.faults == 1)
    await camera.start()  # idempotent: still one thread
    assert len(camera_threads()) == 1
    started = time.monotonic()
    await camera.stop()
    await camera.stop()
    assert time.monotonic() - started < 2.0
    assert not camera.running and not camera_threads()


async def test_an_unopenable_device_is_a_fault_not_a_crash() -> None:
    camera = Camera(VideoCaptureSource(97), max_backoff=0.2)
    async with camera:
        await until(lambda: camera.state == "fault")
        assert "camera 97" in camera.detail
    assert not camera_threads()


def test_sources_follow_the_camera_section(tmp_path: Path) -> None:
    assert isinstance(source_for(0), VideoCaptureSource)
    assert isinstance(source_for("rtsp://10.0.0.5/stream"), VideoCaptureSource)
    assert isinstance(source_for(str(tmp_path)), FolderSource)
    assert isinstance(source_for(str(tmp_path / "not-yet")), FolderSource)
    assert isinstance(source_for(str(tmp_path / "clip.mp4")), VideoCaptureSource)

    section = CameraSection(source=str(tmp_path), fps=12.5, loop=True, stall_after="2s")
    camera = build_camera(section, queue_size=3)
    assert isinstance(camera.source, FolderSource) and camera.source.fps == 12.5
    assert camera.loop and camera.stall_after == 2.0 and camera.queue.maxsize == 3


def test_memory_and_folder_sources_refuse_nothing_to_replay(tmp_path: Path) -> None:
    with pytest.raises(CameraError):
        MemorySource([]).open()
    with pytest.raises(CameraError, match="no images"):
        FolderSource(tmp_path).open()
