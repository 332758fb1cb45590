"""The door's decision pipeline: codes, readings and mask states in; one logged decision per visit
out, shown on the door screen only after it is committed ("no record, no entry").

The engine holds no I/O of its own beyond the entry log and the screen it is handed; cameras and
sensors feed it through `on_frame_texts`, `on_temperature` and `on_mask`, and the app's loops call
`decide_due` often. The clock is injected so tests can drive time.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from kiosk.codes import verify
from kiosk.door.knowledge import Knowledge
from kiosk.door.screen import ScreenState
from kiosk.door.store import EntryDraft, EntryLog, NotRecorded
from kiosk.door.visit import ReadyVisit, TemperatureOutcome, VisitTracker
from kiosk.model import CodeFormat, Decision, Mask, Outcome, Reason, Verdict
from kiosk.pseudonym import subject_pseudonym
from kiosk.rules import decide

log = logging.getLogger(__name__)


class Screen(Protocol):
    def show(self, state: ScreenState) -> None: ...


class UnknownDeny(LookupError):
    """An override named an entry that is not a deny of this kiosk's log."""


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """What the engine tells its observers after a decision was committed and shown."""

    entry: dict[str, Any]
    decision: Decision


class DecisionLines:
    """One canonical JSON line per decision on stdout (journald keeps them). No personal data:
    the subject pseudonym is left out of the line; it is in the entry log only."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def __call__(self, event: DecisionEvent) -> None:
        entry = event.entry
        line = {
            "event": "decision",
            "ts": entry["ts"],
            "seq": entry["seq"],
            "entry_id": entry["id"],
            "decision": entry["decision"],
            "reasons": entry["reasons"],
            "code_format": entry["code_format"],
            "code_verdict": entry["code_verdict"],
            "code_status": entry["code_status"],
            "temperature_c": entry["temperature_c"],
            "mask": entry["mask"],
            "override": entry["override"] is not None,
        }
        self._stream.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._stream.flush()


def screen_state_for(decision: Decision, temperature_c: float | None) -> ScreenState:
    if decision.allowed:
        return ScreenState(state="pass", temperature_c=temperature_c)
    reasons = [reason.value for reason in decision.reasons]
    if Reason.VENUE_CLOSED in decision.reasons:
        return ScreenState(state="closed", reasons=reasons)
    if Reason.TRUST_STALE in decision.reasons:
        return ScreenState(
            state="amber", reasons=reasons, message="cannot_verify", temperature_c=temperature_c
        )
    return ScreenState(state="stop", reasons=reasons, temperature_c=temperature_c)


class DoorEngine:
    def __init__(
        self,
        *,
        entry_log: EntryLog,
        screen: Screen,
        tracker: VisitTracker,
        knowledge: Callable[[], Knowledge],
        clock: Callable[[], float],
        clock_offset_ms: Callable[[], int | None] = lambda: None,
        on_visit_opened: Callable[[], None] | None = None,
        observers: Sequence[Callable[[DecisionEvent], None]] = (),
    ) -> None:
        self._log = entry_log
        self._screen = screen
        self._tracker = tracker
        self._knowledge = knowledge
        self._clock = clock
        self._clock_offset_ms = clock_offset_ms
        self._on_visit_opened = on_visit_opened
        self._observers = list(observers)
        self.decisions = 0
        self.not_recorded = 0

    def add_observer(self, observer: Callable[[DecisionEvent], None]) -> None:
        self._observers.append(observer)

    def on_frame_texts(self, texts: Sequence[str]) -> None:
        """QR texts read from one frame: each is verified now, against the current lists."""
        if not texts:
            return
        now = self._clock()
        knowledge = self._knowledge()
        results = [
            (text, verify(text, knowledge.trust, knowledge.revocation, int(now))) for text in texts
        ]
        opened = self._tracker.on_codes(results, now)
        if opened and self._on_visit_opened is not None:
            for _ in range(opened):
                self._on_visit_opened()

    def on_temperature(self, celsius: float) -> None:
        outcome = self._tracker.on_temperature(celsius, self._clock())
        if outcome is TemperatureOutcome.MEASURE_AGAIN:
            self._screen.show(ScreenState(state="amber", message="measure_again"))

    def on_mask(self, mask: Mask) -> None:
        self._tracker.on_mask(mask, self._clock())

    async def decide_due(self) -> list[DecisionEvent]:
        """Decide, log and show every visit whose inputs are in or whose window has closed."""
        events = []
        for visit in self._tracker.due(self._clock()):
            event = await self._decide(visit)
            if event is not None:
                events.append(event)
        return events

    async def _decide(self, visit: ReadyVisit) -> DecisionEvent | None:
        now = self._clock()
        knowledge = self._knowledge()
        facts = visit.facts(
            trust_updated_at=knowledge.trust_updated_at, venue_closed=knowledge.venue_closed
        )
        decision = decide(facts, knowledge.policy, now)
        code = visit.code
        claims = code.claims if code is not None else None
        # A pseudonym is only worth keeping for a code whose signature was checked: anything
        # else could name a person the holder is not.
        signed = code is not None and code.verdict in (
            Verdict.VALID,
            Verdict.EXPIRED,
            Verdict.REVOKED,
            Verdict.NOT_YET_VALID,
        )
        subject = (
            subject_pseudonym(knowledge.pseudonym_key, claims.iss, claims.sub)
            if claims is not None and signed
            else None
        )
        draft = EntryDraft(
            ts=now,
            code_format=(code.format if code is not None else CodeFormat.NONE).value,
            code_verdict=(code.verdict if code is not None else Verdict.NONE).value,
            code_status=claims.sta.value if claims is not None and signed else None,
            subject=subject,
            subject_key_version=knowledge.pseudonym_key_version if subject else None,
            temperature_c=facts.temperature_c,
            mask=facts.mask.value,
            decision=decision.outcome.value,
            reasons=tuple(reason.value for reason in decision.reasons),
            override=None,
            policy_version=knowledge.policy.version,
            clock_offset_ms=self._clock_offset_ms(),
        )
        try:
            entry = await self._log.append(draft)
        except NotRecorded as exc:
            self.not_recorded += 1
            log.error("decision not recorded (%s): nobody is let in", exc.reason)
            self._screen.show(ScreenState(state="not_recorded", reasons=[exc.reason]))
            return None
        self._tracker.record_decision(visit, decision.allowed, now)
        self._screen.show(screen_state_for(decision, facts.temperature_c))
        self.decisions += 1
        event = DecisionEvent(entry=entry, decision=decision)
        for observer in self._observers:
            observer(event)
        return event

    async def override(self, entry_id: str, attendant: str, note: str) -> dict[str, Any]:
        """An attendant lets in someone the rule denied: a new entry pointing at the deny."""
        denied = await self._log.get(entry_id)
        if denied is None or denied["decision"] != Outcome.DENY.value or denied["override"]:
            raise UnknownDeny(entry_id)
        knowledge = self._knowledge()
        draft = EntryDraft(
            ts=self._clock(),
            code_format=denied["code_format"],
            code_verdict=denied["code_verdict"],
            code_status=denied["code_status"],
            subject=denied["subject"],
            subject_key_version=denied["subject_key_version"],
            temperature_c=denied["temperature_c"],
            mask=denied["mask"],
            decision=Outcome.ALLOW.value,
            reasons=tuple(denied["reasons"]),
            override={"by": attendant, "note": note, "entry_id": entry_id},
            policy_version=knowledge.policy.version,
            clock_offset_ms=self._clock_offset_ms(),
        )
        try:
            entry = await self._log.append(draft)
        except NotRecorded as exc:
            self._screen.show(ScreenState(state="not_recorded", reasons=[exc.reason]))
            raise
        self._screen.show(ScreenState(state="pass", temperature_c=denied["temperature_c"]))
        decision = Decision(Outcome.ALLOW, tuple(Reason(r) for r in denied["reasons"]))
        event = DecisionEvent(entry=entry, decision=decision)
        for observer in self._observers:
            observer(event)
        return entry
