"""`kiosk demo --duration 20` from an unrelated folder: allow and deny lines, the door screen's
address, a clean exit 0, and no state left behind."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from door_process import kiosk_command


def test_the_demo_prints_allow_and_deny_lines_and_exits_0(tmp_path: Path) -> None:
    done = subprocess.run(
        [*kiosk_command(), "demo", "--duration", "20"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    decisions = re.findall(r"^\s*\d+\s+\d\d:\d\d:\d\d\s+(allow|deny)\s*(.*?)\s*\(", out, re.M)
    outcomes = {decision for decision, _ in decisions}
    assert outcomes == {"allow", "deny"}, out
    reasons = {reason for decision, text in decisions if decision == "deny" for reason in
               text.split(", ")}  # fmt: skip
    # The scripted visitors: every kind of sample, one fever, one without a mask.
    assert {
        "status_yellow",
        "status_red",
        "fever",
        "mask_off",
        "code_expired",
        "code_bad_signature",
        "code_revoked",
    } <= reasons
    assert all(text == "" for decision, text in decisions if decision == "allow")
    url = re.search(r"^door screen: (http://127\.0\.0\.1:\d+/)", out, re.M)
    assert url is not None, out
    state = re.search(r"its state in (\S+)", out)
    assert state is not None and not Path(state.group(1)).exists()
    assert "stopped cleanly" in out.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # nothing written where it was started
    assert "Traceback" not in done.stderr
