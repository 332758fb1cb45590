"""systemd's notify protocol against a real Unix datagram socket, as systemd listens."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from kiosk.door.notify import Notifier


def listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    return sock


def test_ready_watchdog_and_stopping_reach_the_socket(tmp_path: Path) -> None:
    with listening(tmp_path / "notify") as sock:
        notifier = Notifier(
            {
                "NOTIFY_SOCKET": str(tmp_path / "notify"),
                "WATCHDOG_USEC": "30000000",
                "WATCHDOG_PID": str(os.getpid()),
            }
        )
        assert notifier.enabled and notifier.watchdog_interval == 15.0
        assert notifier.ready("serving")
        assert notifier.watchdog()
        assert notifier.stopping()
        received = [sock.recv(4096).decode() for _ in range(3)]
    assert received == ["READY=1\nSTATUS=serving", "WATCHDOG=1", "STOPPING=1"]


def test_an_abstract_socket_name_works() -> None:
    name = f"kiosk-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"


def test_outside_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    quiet = Notifier({})
    assert not quiet.enabled and quiet.watchdog_interval is None
    assert not quiet.ready() and not quiet.watchdog()
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert not gone.watchdog()  # logged once; the door goes on
    other_pid = Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_interval is None
