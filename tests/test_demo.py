"""`kiosk demo --duration 20` from an unrelated folder: the addresses to open, allow and deny
lines from both kiosks (an attendant's override among them), the inspector's non-compliant list
naming the misbehaving venue with override_entries and thermometer_fault and not the clean one,
a clean exit 0, and no state left behind."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

import pytest
from door_process import kiosk_command

from kiosk.commands.demo import demo_command
from kiosk.demo.story import DAOWAI, NANGANG
from kiosk.errors import KioskError

DECISION = re.compile(
    r"^\[(?P<venue>[\w-]+)\]\s+(?P<seq>\d+)\s+\d\d:\d\d:\d\d\s+(?P<decision>allow|deny)\s*"
    r"(?P<detail>.*)$",
    re.M,
)


def test_the_demo_runs_the_whole_system_and_prints_the_inspectors_list(tmp_path: Path) -> None:
    # Warnings Python hides by default (unclosed sockets and files, coroutines never awaited)
    # are shown, so that the demo stopping cleanly means without them too.
    env = {**os.environ, "PYTHONWARNINGS": "default::ResourceWarning,default::RuntimeWarning"}
    done = subprocess.run(
        [*kiosk_command(), "demo", "--duration", "20"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr[-3000:]
    out = done.stdout
    head, _, listing = out.partition("the inspector's non-compliant list")
    assert listing, out

    # The addresses a person opens, and the inspector's throwaway token for the dashboard.
    dashboard = re.search(r"^dashboard\s+(http://127\.0\.0\.1:\d+/dashboard/)$", head, re.M)
    assert dashboard is not None, head
    assert re.search(r"^\s+[A-Za-z0-9_-]{43}$", head, re.M), head
    screens = re.findall(r"door screen (http://127\.0\.0\.1:\d+/)", head)
    assert len(set(screens)) == 2, head

    decisions = [m.groupdict() for m in DECISION.finditer(head)]
    by_venue = {
        unit.venue_id: [d for d in decisions if d["venue"] == unit.venue_id]
        for unit in (DAOWAI, NANGANG)
    }
    assert {d["venue"] for d in decisions} == set(by_venue), head
    for venue, lines in by_venue.items():
        assert {d["decision"] for d in lines} == {"allow", "deny"}, (venue, head)
        seqs = [int(d["seq"]) for d in lines]
        assert seqs == list(range(1, len(seqs) + 1)), (venue, seqs)

    def reasons(venue: str) -> set[str]:
        return {
            reason
            for d in by_venue[venue]
            if d["decision"] == "deny"
            for reason in d["detail"].split("(")[0].strip().split(", ")
        }

    assert {"status_yellow", "mask_off", "code_bad_signature", "code_revoked", "code_expired"} <= (
        reasons(DAOWAI.venue_id)
    )
    assert {"status_red", "fever", "mask_off", "code_unknown_format"} <= reasons(NANGANG.venue_id)

    # The stuck thermometer reads the same for everyone; the clean one does not.
    def readings(venue: str) -> set[str]:
        return {m for d in by_venue[venue] for m in re.findall(r"\((\S+) °C", d["detail"])}

    assert readings(DAOWAI.venue_id) == {"36.6"}
    assert len(readings(NANGANG.venue_id)) > 1
    overrides = [d for d in by_venue[DAOWAI.venue_id] if d["detail"].startswith("override of #")]
    assert overrides and all(d["decision"] == "allow" for d in overrides), head
    assert not any("override" in d["detail"] for d in by_venue[NANGANG.venue_id])

    # The inspector sees the misbehaving venue, with both of its findings, and only it.
    assert re.search(r"^1 non-compliant unit\(s\) from \S+ to \S+ in harbin$", listing, re.M)
    assert re.search(rf"^{DAOWAI.venue_id}\s+{DAOWAI.name}\s+\[{DAOWAI.region}\]", listing, re.M)
    findings = dict(re.findall(rf"^\s+(\w+)\s+\w+\s+{DAOWAI.kiosk_id}\s+(\d+)\s", listing, re.M))
    assert set(findings) == {"override_entries", "thermometer_fault"}, listing
    assert int(findings["override_entries"]) >= 1
    assert int(findings["thermometer_fault"]) >= 20  # readings; 20 make a stuck thermometer
    assert NANGANG.venue_id not in listing

    last = out.rstrip().splitlines()[-1]
    assert "stopped cleanly" in last, out[-2000:]
    state = re.search(r"state in (\S+)", head)
    assert state is not None and not Path(state.group(1)).exists()
    assert list(tmp_path.iterdir()) == []  # nothing written where it was started


@pytest.mark.parametrize("duration", [0.0, -1.0, float("nan"), float("inf")])
def test_a_duration_that_is_no_number_of_seconds_is_refused(duration: float) -> None:
    with pytest.raises(KioskError, match="--duration"):
        demo_command(argparse.Namespace(duration=duration, port=0))
