"""The door's decision pipeline: codes, readings and mask states in; one logged decision per visit
out, shown on the door screen only after it is committed ("no record, no entry").

The engine holds no I/O of its own beyond the entry log and the screen it is handed; cameras and
sensors feed it through `on_frame_texts`, `on_temperature` and `on_mask`, and one task, `run`,
decides each visit as soon as its inputs are in or its window closes (tests may call `decide_due`
themselves instead). Clocks are injected so tests can drive time: `clock` is wall time (entries'
`ts`, code validity, trust age), `monotonic` times the pairing windows, so a clock step by NTP
neither closes nor stretches a visit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from kiosk.codes import verify
from kiosk.door.knowledge import Knowledge
from kiosk.door.logs import STDOUT_LOCK
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
    """An override named an entry that is not a deny of this kiosk's log, or an overridden one."""


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
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with STDOUT_LOCK:
            self._stream.write(text)
            self._stream.flush()


def screen_state_for(
    decision: Decision, temperature_c: float | None, frame_at: float | None = None
) -> ScreenState:
    if decision.allowed:
        return ScreenState(state="pass", temperature_c=temperature_c, frame_at=frame_at)
    reasons = [reason.value for reason in decision.reasons]
    if Reason.VENUE_CLOSED in decision.reasons:
        return ScreenState(state="closed", reasons=reasons, frame_at=frame_at)
    if Reason.TRUST_STALE in decision.reasons:
        return ScreenState(
            state="amber",
            reasons=reasons,
            message="cannot_verify",
            temperature_c=temperature_c,
            frame_at=frame_at,
        )
    return ScreenState(
        state="stop", reasons=reasons, temperature_c=temperature_c, frame_at=frame_at
    )


StoreHealth = Callable[[str | None], None]
"""Told after every write attempt: None when the entry was committed, else the failure reason."""


class DoorEngine:
    def __init__(
        self,
        *,
        entry_log: EntryLog,
        screen: Screen,
        tracker: VisitTracker,
        knowledge: Callable[[], Knowledge],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        clock_offset_ms: Callable[[], int | None] = lambda: None,
        on_visit_opened: Callable[[], None] | None = None,
        on_store_health: StoreHealth | None = None,
        observers: Sequence[Callable[[DecisionEvent], None]] = (),
    ) -> None:
        self._log = entry_log
        self._screen = screen
        self._tracker = tracker
        self._knowledge = knowledge
        self._clock = clock
        self._monotonic = monotonic
        self._clock_offset_ms = clock_offset_ms
        self._on_visit_opened = on_visit_opened
        self._on_store_health = on_store_health
        self._observers = list(observers)
        self._wake = asyncio.Event()
        self._stopping = False
        self.decisions = 0
        self.not_recorded = 0
        self._override_lock = asyncio.Lock()
        self.visits_opened = 0

    def add_observer(self, observer: Callable[[DecisionEvent], None]) -> None:
        self._observers.append(observer)

    @property
    def open_visits(self) -> int:
        return self._tracker.open_visits

    # -- inputs (called by the app's loops; never block) ---------------------------------

    def on_frame_texts(self, texts: Sequence[str], frame_at: float | None = None) -> None:
        """QR texts read from one frame: each is verified now, against the current lists.
        `frame_at` (the camera's monotonic arrival time of the frame) goes with the decision to
        the screen, so the delay from camera to screen can be measured."""
        if not texts:
            return
        now = self._clock()
        knowledge = self._knowledge()
        results = [
            (text, verify(text, knowledge.trust, knowledge.revocation, int(now))) for text in texts
        ]
        opened = self._tracker.on_codes(results, self._monotonic(), frame_at=frame_at)
        for _ in range(opened):
            self.visits_opened += 1
            # No code, no pseudonym: a counter is all a log line may say about a visitor.
            log.debug("visit opened", extra={"event": "visit_opened", "visit": self.visits_opened})
            if self._on_visit_opened is not None:
                self._on_visit_opened()
        if opened:
            self._wake.set()

    def on_temperature(self, celsius: float) -> None:
        outcome = self._tracker.on_temperature(celsius, self._monotonic())
        if outcome is TemperatureOutcome.MEASURE_AGAIN:
            self._screen.show(ScreenState(state="amber", message="measure_again"))
        self._wake.set()

    def on_mask(self, mask: Mask) -> None:
        self._tracker.on_mask(mask, self._monotonic())
        self._wake.set()

    # -- deciding ------------------------------------------------------------------------

    async def run(self) -> None:
        """Decide visits as they become due, until `stop()`; the visit being written when
        stop comes is finished (logged, then shown), visits still waiting for inputs are
        dropped: nobody was shown anything for them."""
        while not self._stopping:
            deadline = self._tracker.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._monotonic())
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that comes as the wake is set, and a door whose tasks are being cancelled (one of
            # them failed) then waited for this loop for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.decide_due()
            except Exception:
                # A bug deciding one visit must not stop the door: that visit is dropped
                # (nobody was let in), the next ones are decided.
                log.exception("deciding a visit failed")

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def decide_due(self) -> list[DecisionEvent]:
        """Decide, log and show every visit whose inputs are in or whose window has closed."""
        events = []
        for visit in self._tracker.due(self._monotonic()):
            event = await self._decide(visit)
            if event is not None:
                events.append(event)
        return events

    def _store_health(self, reason: str | None) -> None:
        if self._on_store_health is not None:
            self._on_store_health(reason)

    def _tell(self, event: DecisionEvent) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.exception("a decision observer failed")

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
        key = knowledge.pseudonym_key
        subject = (
            subject_pseudonym(key, claims.iss, claims.sub)
            if claims is not None and signed and key
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
            log.error(
                "decision not recorded (%s): nobody is let in",
                exc.reason,
                extra={"event": "not_recorded", "reason": exc.reason},
            )
            # The door's condition first, so the visitor's screen already falls back to it.
            self._store_health(exc.reason)
            self._screen.show(ScreenState(state="not_recorded", reasons=[exc.reason]))
            return None
        self._store_health(None)
        self._tracker.record_decision(visit, decision.allowed, self._monotonic())
        self._screen.show(screen_state_for(decision, facts.temperature_c, visit.frame_at))
        self.decisions += 1
        event = DecisionEvent(entry=entry, decision=decision)
        self._tell(event)
        return event

    async def override(self, entry_id: str, attendant: str, note: str) -> dict[str, Any]:
        """An attendant lets in someone the rule denied: a new entry pointing at the deny.

        One deny can be overridden once; the lock keeps two attendants' clicks from both passing
        the check before either is written."""
        async with self._override_lock:
            return await self._override(entry_id, attendant, note)

    async def _override(self, entry_id: str, attendant: str, note: str) -> dict[str, Any]:
        denied = await self._log.get(entry_id)
        if denied is None or denied["decision"] != Outcome.DENY.value:
            raise UnknownDeny(entry_id)
        if await self._log.override_of(entry_id) is not None:
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
            self._store_health(exc.reason)
            self._screen.show(ScreenState(state="not_recorded", reasons=[exc.reason]))
            raise
        self._store_health(None)
        self._screen.show(ScreenState(state="pass", temperature_c=denied["temperature_c"]))
        decision = Decision(Outcome.ALLOW, tuple(Reason(r) for r in denied["reasons"]))
        event = DecisionEvent(entry=entry, decision=decision)
        self._tell(event)
        return entry
