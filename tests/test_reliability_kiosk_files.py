"""Damaged files at the start of a real `kiosk run` (issue 8).

- The entry log: garbage, damaged pages in the middle of the file, or cut in half. The door says
  so in one log line, moves the file aside (byte for byte as it was: nothing is deleted) and
  starts a new log under a new log_id.
- The configuration and the standalone trust list, revocation list and pseudonym key, cut short
  or garbage: `kiosk run` refuses to start with one line naming the file (exit 2).
- The cached collector configuration cut short: the door starts anyway, says so, and shows amber
  "cannot verify now" until the collector answers, rather than crash or admit on nothing.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import cv2
from door_process import DoorProcess, assert_chain, kiosk_command, stored_entries
from faults.entries import NO_CODE_DENY
from faults.report import report
from test_door_kill import busy_door

from kiosk.demo.frames import camera_frame
from kiosk.demo.kit import KIOSK_ID, VENUE_ID, make_kit, to_toml
from kiosk.door.knowledge import CACHE_NAME
from kiosk.door.store import EntryLog

DRAFT = NO_CODE_DENY


async def written_log(database: Path, count: int) -> str:
    """A log of `count` entries, checkpointed into the database file; returns its log_id."""
    log = await EntryLog.open(database, kiosk_id=KIOSK_ID, venue_id=VENUE_ID)
    for i in range(count):
        await log.append(replace(DRAFT, ts=DRAFT.ts + i))
    await log.close()
    return log.log_id


def damage(database: Path, how: str) -> None:
    data = bytearray(database.read_bytes())
    page = 4096
    if how == "garbage":
        data = bytearray(b"not an entry log, whatever it was " * 500)
    elif how == "damaged pages":
        # Pages in the middle of the entries: header, schema and head are intact, so only a
        # check of the whole file can tell.
        middle = len(data) // page // 2
        data[middle * page : (middle + 3) * page] = b"\xa5" * (3 * page)
    elif how == "cut in half":
        data = data[: len(data) // 2]
    database.write_bytes(bytes(data))


DAMAGES = ("garbage", "damaged pages", "cut in half")


def run_doors(configs: list[Path]) -> list[DoorProcess]:
    """Start a door on each configuration at once; each decides once and is stopped."""
    doors = [DoorProcess(config, verbose=False) for config in configs]
    try:
        for door in doors:
            door.wait_for("ready", timeout=60)
            door.wait_for("decision")
        for door in doors:
            assert door.stop() == 0
    finally:
        for door in doors:
            door.ensure_gone()
    return doors


async def test_a_damaged_entry_log_is_moved_aside_whole_and_a_new_log_starts(
    tmp_path: Path,
) -> None:
    configs, damaged, old_ids = [], [], []
    for how in DAMAGES:
        folder = tmp_path / how.replace(" ", "-")
        folder.mkdir()
        configs.append(busy_door(folder))
        database = folder / "state" / "entries.db"
        old_ids.append(await written_log(database, 60))
        damage(database, how)
        damaged.append(database.read_bytes())
    doors = await asyncio.to_thread(run_doors, configs)
    for how, config, door, before, old_id in zip(
        DAMAGES, configs, doors, damaged, old_ids, strict=True
    ):
        database = config.parent / "state" / "entries.db"
        moved = [line for line in door.lines if line.get("event") == "log_recovered"]
        assert len(moved) == 1, how
        [aside] = list(database.parent.glob("entries.db.corrupt-*[0-9]Z"))
        assert aside.read_bytes() == before, how  # kept whole: a human may salvage it
        assert str(aside) in moved[0]["message"] and moved[0]["level"] == "error"
        entries = stored_entries(database)
        assert_chain(entries)
        assert entries and entries[0]["log_id"] != old_id, how
    report(
        "corrupt-log",
        f"entry log {', '.join(DAMAGES)} at start: each said so, moved aside byte for byte, "
        "a new log_id started",
        cases=len(DAMAGES),
        moved_bytes=sum(len(before) for before in damaged),
    )


def start_refusals(cases: dict[str, Path]) -> dict[str, tuple[int, list[str], str]]:
    """`kiosk run --config FILE` for each case at once: (exit code, stderr lines, stdout)."""
    children = {
        name: subprocess.Popen(
            [*kiosk_command(), "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, config in cases.items()
    }
    results = {}
    for name, child in children.items():
        out, err = child.communicate(timeout=60)
        results[name] = (child.returncode, err.strip().splitlines(), out)
    return results


def test_damaged_config_and_list_files_stop_the_start_with_one_line_naming_the_file(
    tmp_path: Path,
) -> None:
    cases: dict[str, tuple[Path, str]] = {}
    for name, how in [
        ("config", "cut short"),
        ("trust_list", "cut short"),
        ("revocation_list", "empty"),
        ("pseudonym_key_file", "garbage"),
    ]:
        folder = tmp_path / f"{name}-{how.replace(' ', '-')}"
        folder.mkdir()
        kit = make_kit(folder)
        config = kit.write_config()
        target = {
            "config": config,
            "trust_list": kit.trust_list,
            "revocation_list": kit.revocation_list,
            "pseudonym_key_file": kit.pseudonym_key_file,
        }[name]
        good = target.read_bytes()
        target.write_bytes(
            {"cut short": good[: len(good) // 2], "empty": b"", "garbage": b"\xff\xfe\x00\x17"}[how]
        )
        cases[f"{name} {how}"] = (config, target.name)
    results = start_refusals({case: config for case, (config, _) in cases.items()})
    for case, (code, lines, out) in results.items():
        assert code == 2, (case, lines)
        assert len(lines) == 1 and lines[0].startswith("kiosk: "), (case, lines)
        assert cases[case][1] in lines[0], (case, lines)  # names the file
        assert out == ""  # nothing started: no log line, no decision
    report(
        "corrupt-files",
        f"{len(cases)} damaged config/list/key files: each stops kiosk run with one line "
        "naming the file",
        cases=len(cases),
    )


def test_a_damaged_cached_collector_config_starts_amber_not_a_crash(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    token = tmp_path / "token"
    token.write_text("t" * 43 + "\n")
    settings = {k: v for k, v in kit.config().items() if k != "standalone"}
    # Nobody listens on port 9: the collector is unreachable, only the cache could help.
    settings["collector"] = {"url": "http://127.0.0.1:9", "token_file": str(token)}
    settings["thermometer"] = {"source": "simulated", "simulated": {"seed": 1}}
    settings["mask"] = {"source": "simulated", "simulated": {"seed": 2}}
    settings["camera"] = {"source": str(kit.frames), "fps": 10.0, "loop": True}
    config = tmp_path / "kiosk.toml"
    config.write_text(to_toml(settings))
    cv2.imwrite(
        str(kit.frames / "green.png"),
        camera_frame([kit.issuer.code("green", int(time.time()))], size=(480, 360)),
    )
    kit.state.mkdir()
    cache = kit.state / CACHE_NAME
    cache.write_text('{"refreshed_at": 1646500000.0, "config": {"kiosk_id": "k-de')
    door = DoorProcess(config, verbose=False)
    try:
        door.wait_for("ready")
        decision = door.wait_for("decision")
        assert door.stop() == 0
    finally:
        door.ensure_gone()
    [warning] = [line for line in door.lines if CACHE_NAME in line.get("message", "")]
    assert warning["level"] == "warning" and "unreadable" in warning["message"]
    assert (decision["decision"], decision["reasons"]) == ("deny", ["trust_stale"])
    assert cache.exists()  # left for the next good pull to replace, not deleted
    json.dumps(decision)
    with sqlite3.connect(kit.state / "entries.db") as db:
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] >= 1
    db.close()
