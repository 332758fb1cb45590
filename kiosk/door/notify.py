"""systemd's notify protocol (sd_notify(3)): READY=1 once the door works, WATCHDOG=1 from the
event loop, STOPPING=1 on the way out.

A few lines over a Unix datagram socket, so no library is needed. Outside systemd
(NOTIFY_SOCKET unset) every call does nothing. A notification that cannot be sent is logged once
and never stops the door: systemd then restarts it for a missed watchdog, which is the point.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        # A leading "@" names a socket in the abstract namespace (a leading NUL byte).
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address
        self._warned = False
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, message: str) -> bool:
        """Send one notification (`KEY=value` lines); False when not sent."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode("utf-8"))
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at NOTIFY_SOCKET: %s", exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings: half of WatchdogSec= as systemd advises, None when off.
    WATCHDOG_PID, when set, must be this process (a child must not ping for its parent)."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None
