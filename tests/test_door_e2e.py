"""End to end: the real `kiosk run` as a process, a folder of 50 camera-like frames made from
codes this test issues, the HTTP thermometer and mask fed by this test when a visit opens, and
exactly the expected decisions, reasons and entries in the SQLite file it leaves."""

from __future__ import annotations

import http.client
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from door_process import DoorProcess, assert_chain, stored_entries

from kiosk.demo.frames import camera_frame
from kiosk.demo.kit import StandaloneKit, make_kit

FPS = 5.0
WINDOW = 1.2  # seconds; a visit without a reading is decided this long after its code
SIZE = (640, 480)


@dataclass(frozen=True)
class Expected:
    celsius: float | None  # what the thermometer posts when this visit opens (None: nothing)
    mask: str | None
    decision: str
    reasons: tuple[str, ...]
    logged_celsius: float | None


def allow(celsius: float, logged: float | None = None) -> Expected:
    return Expected(celsius, "on", "allow", (), celsius if logged is None else logged)


def deny(celsius: float | None, mask: str | None, *reasons: str, logged: Any = "same") -> Expected:
    return Expected(celsius, mask, "deny", reasons, celsius if logged == "same" else logged)


def build(kit: StandaloneKit) -> tuple[list[list[str]], list[Expected], dict[str, str]]:
    """The 50 frames (each a list of QR texts; [] is a frame without a code), the visits they
    must open in order, and which sample each code was."""
    now = int(time.time())
    code = {name: kit.issuer.code(kind, now) for name, kind in [
        ("green_a", "green"), ("yellow", "yellow"), ("red", "red"), ("expired", "expired"),
        ("forged", "forged"), ("revoked", "revoked"), ("green_b", "green"), ("green_c", "green"),
        ("green_d", "green"), ("unknown", "unknown"), ("green_e", "green"), ("green_f", "green"),
        ("green_g", "green"), ("green_h", "green"),
    ]}  # fmt: skip
    frames: list[list[str]] = [[]]
    visits: list[Expected] = []

    def show(
        names: list[str], *expected: Expected, frames_with_code: int = 1, gap: int = 1
    ) -> None:
        frames.extend([[code[n] for n in names]] * frames_with_code)
        frames.extend([[]] * gap)
        visits.extend(expected)

    show(["green_a"], allow(36.6))
    show(["yellow"], deny(36.5, "on", "status_yellow"))
    show(["red"], deny(36.4, "on", "status_red"))
    show(["expired"], deny(36.5, "on", "code_expired"))
    show(["forged"], deny(36.5, "on", "code_bad_signature"))
    show(["revoked"], deny(36.5, "on", "code_revoked"))
    show(["green_b"], deny(38.0, "on", "fever"))
    show(["green_c"], deny(36.65, "off", "mask_off", logged=36.7))  # rounded as decided
    # Held up for two frames: still one visit; no reading comes, so the window decides.
    show(["green_d"], deny(None, "on", "temperature_missing"), frames_with_code=2, gap=6)
    show(["unknown"], deny(36.5, "on", "code_unknown_format"))
    show(["green_a"])  # allowed a few seconds ago: it rests, no visit
    # Two codes in one frame: two visits, in order; readings pair first in, first out.
    show(["green_e", "green_f"], allow(36.5), deny(37.3, "on", "fever"))
    show(["green_g"], deny(31.0, "on", "temperature_implausible"), gap=6)
    show(["green_h"], allow(37.0))
    frames.extend([[]] * (50 - len(frames)))
    assert len(frames) == 50
    return frames, visits, code


class Devices:
    """The thermometer and mask detector: when visit n opens, they post visit n's values."""

    def __init__(self, visits: list[Expected]) -> None:
        self.visits = visits
        self.port: int | None = None
        self.posted: list[tuple[int, str, int]] = []

    def __call__(self, line: dict[str, Any]) -> None:
        if line.get("event") == "ready":
            self.port = int(str(line["url"]).rsplit(":", 1)[1].strip("/"))
        if line.get("event") != "visit_opened":
            return
        number = int(line["visit"])
        if number > len(self.visits):
            return
        visit = self.visits[number - 1]
        if visit.celsius is not None:
            self._post("/api/thermometer", {"celsius": visit.celsius}, number)
        if visit.mask is not None:
            self._post("/api/mask", {"mask": visit.mask}, number)

    def _post(self, path: str, body: dict[str, Any], number: int) -> None:
        assert self.port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            self.posted.append((number, path, conn.getresponse().status))
        finally:
            conn.close()


def write_frames(folder: Path, frames: list[list[str]]) -> None:
    blank = np.full((SIZE[1], SIZE[0], 3), 128, dtype=np.uint8)
    for index, texts in enumerate(frames):
        image = camera_frame(texts, size=SIZE, seed=index) if texts else blank
        cv2.imwrite(str(folder / f"frame-{index:03d}.png"), image)


def test_fifty_frames_make_exactly_the_expected_entries(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    frames, visits, codes = build(kit)
    kit.write_lists()  # the revoked sample is on the list now
    write_frames(kit.frames, frames)
    config = kit.write_config(
        kiosk={"pairing_window": WINDOW, "repeat_after": 30.0},
        camera={"fps": FPS, "loop": False},
    )
    devices = Devices(visits)
    door = DoorProcess(config, on_line=devices)
    try:
        door.wait_for("ready")
        while len(door.decisions()) < len(visits):
            door.wait_for("decision", timeout=30)
        time.sleep(WINDOW)  # nothing more may come: the last frames are blank
        assert door.stop() == 0
    finally:
        door.ensure_gone()

    entries = stored_entries(kit.state / "entries.db")
    assert_chain(entries)
    got = [(e["decision"], tuple(e["reasons"]), e["temperature_c"]) for e in entries]
    want = [(v.decision, v.reasons, v.logged_celsius) for v in visits]
    assert got == want
    assert all(status == 202 for _, _, status in devices.posted)
    # The canonical lines on stdout are the same decisions, one each, in order.
    lines = door.decisions()
    assert [(line["seq"], line["entry_id"]) for line in lines] == [
        (e["seq"], e["id"]) for e in entries
    ]
    # Signed codes carry a pseudonym in the log; nothing of a code reaches stdout or the disk.
    assert all((e["subject"] is None) == (e["code_verdict"] in ("bad_signature", "unknown_format"))
               for e in entries)  # fmt: skip
    stdout = b"".join(door.raw)
    on_disk = b"".join(p.read_bytes() for p in kit.state.iterdir() if p.is_file())
    for text in codes.values():
        payload = text.split(".")[1] if text.startswith("VHC1:") else text
        assert payload.encode() not in stdout and payload.encode() not in on_disk
    for entry in entries:
        if entry["subject"]:
            assert entry["subject"].encode() not in stdout
    assert not any(name.endswith((".png", ".jpg")) for name in os.listdir(kit.state))
    # Long-running logs: every stdout line is one JSON object; the key never appears anywhere.
    assert all(isinstance(json.loads(raw), dict) for raw in door.raw)
    key = kit.pseudonym_key_file.read_text().strip().encode()
    assert key not in stdout and key not in on_disk
