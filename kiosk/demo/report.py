"""What the demo prints: a header with the addresses to open, one aligned line per decision
prefixed by its venue, and at the end the inspector's non-compliant list. Plain text for a
person at a terminal; the machine-readable forms are the kiosks' and collector's own APIs.
"""

from __future__ import annotations

import textwrap
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from kiosk.demo.story import ATTENDANT, ATTENDANT_PIN, CITY, INSPECTOR, STUCK_AT_C, Unit
from kiosk.door.engine import DecisionEvent

_REMEMBERED_DENIES = 256  # for naming the deny an override lets in


@dataclass
class Tally:
    allowed: int = 0
    denied: int = 0
    overrides: int = 0

    @property
    def decisions(self) -> int:
        return self.allowed + self.denied


@dataclass
class DecisionPrinter:
    """Observers for the doors' decisions (`observer(unit)`), writing one line each."""

    out: TextIO
    units: Sequence[Unit]
    tallies: dict[str, Tally] = field(default_factory=dict)
    _denied_seq: OrderedDict[str, int] = field(default_factory=OrderedDict)

    @property
    def width(self) -> int:
        return max(len(unit.venue_id) for unit in self.units)

    @property
    def total(self) -> Tally:
        total = Tally()
        for tally in self.tallies.values():
            total.allowed += tally.allowed
            total.denied += tally.denied
            total.overrides += tally.overrides
        return total

    def observer(self, unit: Unit) -> Callable[[DecisionEvent], None]:
        tally = self.tallies.setdefault(unit.venue_id, Tally())

        def print_decision(event: DecisionEvent) -> None:
            self._print(unit, tally, event.entry)

        return print_decision

    def column_heads(self) -> str:
        return f"{'venue':<{self.width + 2}} {'seq':>4}  {'time':<8}  decision"

    def _print(self, unit: Unit, tally: Tally, entry: Mapping[str, Any]) -> None:
        override = entry["override"]
        if entry["decision"] == "allow":
            tally.allowed += 1
        else:
            tally.denied += 1
            self._denied_seq[entry["id"]] = entry["seq"]
            while len(self._denied_seq) > _REMEMBERED_DENIES:
                self._denied_seq.popitem(last=False)
        if override is not None:
            tally.overrides += 1
            denied = self._denied_seq.get(override["entry_id"])
            which = f"#{denied}" if denied is not None else "a deny"
            detail = f"override of {which} by {override['by']}: {override['note']}"
        else:
            temperature = entry["temperature_c"]
            measured = "no reading" if temperature is None else f"{temperature:.1f} °C"
            reasons = ", ".join(entry["reasons"])
            detail = f"{reasons:<20}  ({measured}, mask {entry['mask']})"
        when = datetime.now().strftime("%H:%M:%S")
        venue = f"[{unit.venue_id}]"
        self.out.write(
            f"{venue:<{self.width + 2}} {entry['seq']:>4}  {when}  {entry['decision']:<5}  "
            f"{detail}\n"
        )
        self.out.flush()


def header(
    *,
    folder: str,
    collector_url: str,
    dashboard_url: str,
    inspector_token: str,
    doors: Sequence[tuple[Unit, str]],
) -> str:
    """The addresses to open and what to expect, before the first decision."""
    width = max(len(unit.venue_id) for unit, _ in doors) + 2
    indent = " " * (width + 1)
    lines = [
        f"kiosk demo: a collector and {len(doors)} kiosks on sample visitors; state in {folder} "
        "(removed at the end)",
        "",
        f"{'collector':<{width}} {collector_url}/  (SQLite in the state folder)",
        f"{'dashboard':<{width}} {dashboard_url}",
        f"{indent}sign in as {INSPECTOR} (all of {CITY}) with this throwaway token:",
        f"{indent}{inspector_token}",
    ]
    for unit, url in doors:
        lines += [
            f"{unit.venue_id:<{width}} {unit.name}, {unit.region}, {behaviour(unit)}",
            f"{indent}door screen {url}   attendant {url}attendant (PIN {ATTENDANT_PIN})",
        ]
    lines.append("")
    for unit, _ in doors:
        stories = "; ".join(visitor.story for visitor in unit.visitors)
        lines += textwrap.wrap(
            f"visitors at {unit.venue_id}, {unit.visitors_per_second:g} a second, in "
            f"turn: {stories}",
            width=100,
            subsequent_indent="  ",
        )
    return "\n".join(lines) + "\n\n"


def behaviour(unit: Unit) -> str:
    if not unit.misbehaving:
        return "does everything right"
    ways = []
    if unit.stuck_thermometer:
        ways.append(f"its thermometer is stuck at {STUCK_AT_C:.1f} °C")
    if unit.waves_through is not None:
        ways.append(f"{ATTENDANT} overrides every {unit.waves_through} deny")
    return "misbehaves: " + "; ".join(ways)
