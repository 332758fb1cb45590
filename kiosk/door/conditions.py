"""The door's own condition, as its screen shows it between visitors.

One place decides what the door says when nobody is being decided: venue closed for
rectification, out of service (a device failed), not recorded (the entry log refuses writes),
cannot verify now (trust lists too old or never loaded), or simply "show your code". Pure: the app
feeds it what it observes and hands `resting()` to the screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kiosk.door.screen import ScreenState
from kiosk.model import Reason


@dataclass
class DoorConditions:
    venue_closed: bool = False
    trust_fresh: bool = True
    store_failure: str | None = None  # the entry log's last failure reason, until a write works
    faults: dict[str, str] = field(default_factory=dict)  # device -> detail

    def set_fault(self, device: str, detail: str | None) -> None:
        """`detail` None: the device works again."""
        if detail is None:
            self.faults.pop(device, None)
        else:
            self.faults[device] = detail

    def resting(self) -> ScreenState:
        """What the screen shows between visitors, most important condition first."""
        if self.venue_closed:
            return ScreenState("closed", reasons=[Reason.VENUE_CLOSED.value])
        if self.faults:
            return ScreenState("out_of_service", message=",".join(sorted(self.faults)))
        if self.store_failure is not None:
            return ScreenState("not_recorded", reasons=[self.store_failure])
        if not self.trust_fresh:
            return ScreenState("amber", reasons=[Reason.TRUST_STALE.value], message="cannot_verify")
        return ScreenState("idle")

    def summary(self) -> dict[str, object]:
        """For the local status and the logs: no personal data here, only the door's state."""
        return {
            "venue_closed": self.venue_closed,
            "trust_fresh": self.trust_fresh,
            "store_failure": self.store_failure,
            "faults": dict(self.faults),
        }
