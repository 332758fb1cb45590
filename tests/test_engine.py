"""The door's decision pipeline with a real entry log (SQLite file) and real signed codes: what
is decided, what is written before it is shown, and what happens when it cannot be written."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import time
from pathlib import Path

import pytest

from kiosk.codes import RevocationList
from kiosk.demo.samples import SampleIssuer, new_sample_issuer
from kiosk.door.engine import DecisionEvent, DecisionLines, DoorEngine, UnknownDeny
from kiosk.door.knowledge import Knowledge
from kiosk.door.screen import ScreenState
from kiosk.door.store import EntryLog, NotRecorded
from kiosk.door.visit import VisitTracker
from kiosk.model import Mask, Policy

KEY = bytes(range(32))
NOW = 1_700_000_000.0


class RecordingScreen:
    def __init__(self) -> None:
        self.states: list[ScreenState] = []

    def show(self, state: ScreenState) -> None:
        self.states.append(state)

    @property
    def kinds(self) -> list[str]:
        return [s.state for s in self.states]


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Door:
    """An engine over a real log, with hand-driven clocks."""

    def __init__(self, log: EntryLog, issuer: SampleIssuer, **knowledge_changes: object) -> None:
        self.log = log
        self.issuer = issuer
        self.screen = RecordingScreen()
        self.wall = Clock(NOW)
        self.mono = Clock(100.0)
        self.events: list[DecisionEvent] = []
        self.health: list[str | None] = []
        base = {
            "policy": Policy(),
            "trust": issuer.trust,
            "revocation": issuer.revocation(int(NOW)),
            "pseudonym_key": KEY,
            "pseudonym_key_version": 3,
            "trust_updated_at": NOW - 60,
        }
        base.update(knowledge_changes)
        self.knowledge = Knowledge(**base)  # type: ignore[arg-type]
        self.lines = io.StringIO()
        self.engine = DoorEngine(
            entry_log=log,
            screen=self.screen,
            tracker=VisitTracker(pairing_window_s=10, repeat_after_s=30),
            knowledge=lambda: self.knowledge,
            clock=self.wall,
            monotonic=self.mono,
            clock_offset_ms=lambda: -120,
            on_store_health=self.health.append,
            observers=[self.events.append, DecisionLines(self.lines)],
        )

    def later(self, seconds: float) -> None:
        self.wall.now += seconds
        self.mono.now += seconds

    async def visit(
        self, text: str, celsius: float | None, mask: Mask | None
    ) -> list[DecisionEvent]:
        self.engine.on_frame_texts([text])
        if celsius is not None:
            self.engine.on_temperature(celsius)
        if mask is not None:
            self.engine.on_mask(mask)
        return await self.engine.decide_due()


def files_bytes(folder: Path) -> bytes:
    """The database, its WAL and anything else SQLite left in `folder`."""
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith("entries"))


@pytest.fixture
async def door(tmp_path: Path) -> Door:
    log = await EntryLog.open(tmp_path / "entries.db", kiosk_id="k-1", venue_id="v-1")
    door = Door(log, new_sample_issuer())
    yield door  # type: ignore[misc]
    await log.close()


async def test_a_green_code_with_a_normal_reading_and_a_mask_is_allowed(door: Door) -> None:
    sub = "holder-0000000000000001"
    text = door.issuer.code("green", int(NOW), sub=sub)
    [event] = await door.visit(text, 36.64, Mask.ON)
    entry = event.entry
    assert (entry["decision"], entry["reasons"], entry["temperature_c"]) == ("allow", [], 36.6)
    assert (entry["code_format"], entry["code_verdict"], entry["code_status"]) == (
        "vhc1",
        "valid",
        "green",
    )
    expected = hmac.new(KEY, f"demo-health:{sub}".encode(), hashlib.sha256).hexdigest()
    assert (entry["subject"], entry["subject_key_version"]) == (expected, 3)
    assert entry["clock_offset_ms"] == -120
    assert door.screen.kinds == ["pass"]
    assert door.screen.states[0].temperature_c == 36.6
    assert await door.log.get(entry["id"]) == entry
    assert door.health == [None]


async def test_the_decision_line_has_no_code_and_no_pseudonym(door: Door) -> None:
    sub = "holder-0000000000000002"
    text = door.issuer.code("red", int(NOW), sub=sub)
    [event] = await door.visit(text, 36.5, Mask.OFF)
    line = json.loads(door.lines.getvalue())
    assert line["event"] == "decision"
    assert (line["decision"], line["reasons"], line["seq"]) == (
        "deny",
        ["status_red", "mask_off"],
        1,
    )
    raw = door.lines.getvalue()
    assert sub not in raw and text not in raw and event.entry["subject"] not in raw
    assert door.screen.kinds == ["stop"]
    assert list(door.screen.states[0].reasons) == ["status_red", "mask_off"]


async def test_nothing_of_the_code_reaches_the_database_file(door: Door, tmp_path: Path) -> None:
    sub = "holder-secret-000000000003"
    text = door.issuer.code("green", int(NOW), sub=sub)
    await door.visit(text, 36.5, Mask.ON)
    await door.log.close()
    stored = files_bytes(tmp_path)
    assert sub.encode() not in stored
    assert text.split(".")[1].encode() not in stored  # not even the payload part


@pytest.mark.parametrize(
    ("kind", "reasons", "verdict"),
    [
        ("yellow", ["status_yellow"], "valid"),
        ("expired", ["code_expired"], "expired"),
        ("forged", ["code_bad_signature"], "bad_signature"),
        ("revoked", ["code_revoked"], "revoked"),
        ("not_yet_valid", ["code_not_yet_valid"], "not_yet_valid"),
        ("unknown", ["code_unknown_format"], "unknown_format"),
    ],
)
async def test_each_sample_code_is_denied_for_its_own_reason(
    tmp_path: Path, kind: str, reasons: list[str], verdict: str
) -> None:
    log = await EntryLog.open(tmp_path / "entries.db", kiosk_id="k-1", venue_id="v-1")
    issuer = new_sample_issuer()
    text = issuer.code(kind, int(NOW))  # before the door reads the lists: revoked is listed
    door = Door(log, issuer)
    [event] = await door.visit(text, 36.5, Mask.ON)
    await log.close()
    assert (event.entry["decision"], event.entry["reasons"]) == ("deny", reasons)
    assert event.entry["code_verdict"] == verdict
    # A signature that did not verify names nobody.
    assert (event.entry["subject"] is None) == (kind in ("forged", "unknown"))


async def test_a_deny_may_be_tried_again_at_once_an_allow_rests(door: Door) -> None:
    red = door.issuer.code("red", int(NOW))
    green = door.issuer.code("green", int(NOW))
    assert len(await door.visit(red, 36.5, Mask.ON)) == 1
    door.later(0.5)
    assert len(await door.visit(red, 36.5, Mask.ON)) == 1
    assert len(await door.visit(green, 36.5, Mask.ON)) == 1
    door.later(0.5)
    door.engine.on_frame_texts([green])
    assert door.engine.open_visits == 0
    assert [e["seq"] for e in await door.log.unsent(10)] == [1, 2, 3]


async def test_a_window_that_closes_without_a_reading_is_temperature_missing(door: Door) -> None:
    door.engine.on_frame_texts([door.issuer.code("green", int(NOW))])
    door.engine.on_mask(Mask.ON)
    assert await door.engine.decide_due() == []
    door.later(10)
    [event] = await door.engine.decide_due()
    assert event.entry["reasons"] == ["temperature_missing"]
    assert event.entry["temperature_c"] is None


async def test_an_implausible_reading_asks_again_then_is_logged(door: Door) -> None:
    door.engine.on_frame_texts([door.issuer.code("green", int(NOW))])
    door.engine.on_mask(Mask.ON)
    door.engine.on_temperature(31.04)
    assert door.screen.states[-1] == ScreenState(
        "amber", message="measure_again", at=door.screen.states[-1].at
    )
    door.later(10)
    [event] = await door.engine.decide_due()
    assert (event.entry["reasons"], event.entry["temperature_c"]) == (
        ["temperature_implausible"],
        31.0,
    )


async def test_stale_lists_show_cannot_verify_and_never_allow(tmp_path: Path) -> None:
    log = await EntryLog.open(tmp_path / "entries.db", kiosk_id="k-1", venue_id="v-1")
    issuer = new_sample_issuer()
    door = Door(log, issuer, trust_updated_at=NOW - 49 * 3600)
    [event] = await door.visit(issuer.code("green", int(NOW)), 36.5, Mask.ON)
    await log.close()
    assert (event.entry["decision"], event.entry["reasons"]) == ("deny", ["trust_stale"])
    shown = door.screen.states[-1]
    assert (shown.state, shown.message) == ("amber", "cannot_verify")


async def test_without_a_pseudonym_key_no_subject_is_made(tmp_path: Path) -> None:
    log = await EntryLog.open(tmp_path / "entries.db", kiosk_id="k-1", venue_id="v-1")
    issuer = new_sample_issuer()
    door = Door(log, issuer, pseudonym_key=None, revocation=RevocationList())
    [event] = await door.visit(issuer.code("green", int(NOW)), 36.5, Mask.ON)
    await log.close()
    assert (event.entry["subject"], event.entry["subject_key_version"]) == (None, None)


async def test_a_read_only_database_shows_not_recorded_and_lets_nobody_in(door: Door) -> None:
    green = door.issuer.code("green", int(NOW))
    assert door.log._db is not None
    # Tests run as root, so file modes prove nothing: SQLite itself refuses the write here,
    # with SQLITE_READONLY, as it does on a read-only mount.
    await door.log._db.execute("PRAGMA query_only = 1")
    assert await door.visit(green, 36.5, Mask.ON) == []
    assert door.screen.kinds == ["not_recorded"]
    assert door.events == [] and door.lines.getvalue() == ""
    assert door.health == ["read_only"]
    assert door.engine.not_recorded == 1
    await door.log._db.execute("PRAGMA query_only = 0")
    door.later(11)  # the unrecorded visit lapses after its window; the code may try again
    [event] = await door.visit(green, 36.5, Mask.ON)
    assert (event.entry["seq"], event.entry["decision"]) == (1, "allow")
    assert door.health == ["read_only", None]


async def test_a_full_database_shows_not_recorded_and_lets_nobody_in(door: Door) -> None:
    assert door.log._db is not None
    await door.visit(door.issuer.code("red", int(NOW)), 36.5, Mask.ON)
    pages = next(iter(await door.log._db.execute_fetchall("PRAGMA page_count")))[0]
    await door.log._db.execute(f"PRAGMA max_page_count = {pages}")
    outcomes = []
    for i in range(200):
        door.later(0.1)
        outcomes.append(
            await door.visit(door.issuer.code("green", int(NOW), sub=f"h-{i:020d}"), 36.5, Mask.ON)
        )
        if door.screen.kinds[-1] == "not_recorded":
            break
    assert door.screen.kinds[-1] == "not_recorded", "the database never filled up"
    assert door.health[-1] == "disk_full"
    assert outcomes[-1] == []
    # Every PASS shown was a committed entry; the one that was not committed showed no PASS.
    assert door.screen.kinds.count("pass") == len(door.events) - 1
    stats = await door.log.stats()
    assert stats.last_seq == len(door.events)


async def test_an_override_is_a_new_entry_pointing_at_the_deny(door: Door) -> None:
    [deny] = await door.visit(door.issuer.code("green", int(NOW)), 38.2, Mask.ON)
    door.later(5)
    entry = await door.engine.override(deny.entry["id"], "att-7", "re-measured 37.0")
    assert entry["seq"] == 2 and entry["decision"] == "allow"
    assert entry["reasons"] == ["fever"]
    assert entry["override"] == {
        "by": "att-7",
        "note": "re-measured 37.0",
        "entry_id": deny.entry["id"],
    }
    assert entry["subject"] == deny.entry["subject"]
    assert door.screen.kinds == ["stop", "pass"]
    with pytest.raises(UnknownDeny):
        await door.engine.override(entry["id"], "att-7", "")  # an allow cannot be overridden
    with pytest.raises(UnknownDeny):  # one deny lets one person in, once
        await door.engine.override(deny.entry["id"], "att-8", "again")
    assert (await door.log.stats()).last_seq == 2
    door.later(60)
    [other] = await door.visit(door.issuer.code("green", int(NOW) + 60), 38.4, Mask.ON)
    with pytest.raises(NotRecorded):  # a note over 200 characters is refused, nothing written
        await door.engine.override(other.entry["id"], "att-7", "x" * 201)
    assert (await door.log.stats()).last_seq == 3


async def test_run_decides_when_the_window_closes_and_stops_cleanly(tmp_path: Path) -> None:
    log = await EntryLog.open(tmp_path / "entries.db", kiosk_id="k-1", venue_id="v-1")
    issuer = new_sample_issuer()
    decided = asyncio.Event()
    engine = DoorEngine(
        entry_log=log,
        screen=RecordingScreen(),
        tracker=VisitTracker(pairing_window_s=0.2),
        knowledge=lambda: Knowledge(Policy(), issuer.trust, RevocationList(), KEY, 1, time.time()),
        observers=[lambda event: decided.set()],
    )
    runner = asyncio.create_task(engine.run())
    engine.on_frame_texts([issuer.code("green", int(time.time()))])
    await asyncio.wait_for(decided.wait(), 5)
    [entry] = await log.unsent(5)
    assert entry["reasons"] == ["temperature_missing", "mask_unchecked"]
    engine.stop()
    await asyncio.wait_for(runner, 5)
    await log.close()


async def test_a_full_log_bound_keeps_everything_and_admits_nobody(tmp_path: Path) -> None:
    log = await EntryLog.open(tmp_path / "e.db", kiosk_id="k-1", venue_id="v-1", max_entries=2)
    door = Door(log, new_sample_issuer())
    for _ in range(2):
        door.later(1)
        await door.visit(door.issuer.code("red", int(NOW)), 36.5, Mask.ON)
    door.later(1)
    assert await door.visit(door.issuer.code("green", int(NOW)), 36.5, Mask.ON) == []
    await log.close()
    assert door.screen.kinds == ["stop", "stop", "not_recorded"]
    assert door.health[-1] == "storage_full"


async def test_the_decision_shown_carries_the_arrival_time_of_the_frame_that_opened_it(
    door: Door,
) -> None:
    # bench/door.py measures camera → screen with it; later frames of the same code do not move it.
    text = door.issuer.code("green", int(NOW))
    door.engine.on_frame_texts([text], 99.25)
    door.engine.on_frame_texts([text], 99.5)
    door.engine.on_temperature(36.6)
    door.engine.on_mask(Mask.ON)
    [event] = await door.engine.decide_due()
    assert event.decision.allowed
    assert [(s.state, s.frame_at) for s in door.screen.states] == [("pass", 99.25)]
