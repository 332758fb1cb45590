"""Every benchmark under bench/ still runs: its `--quick` mode as a subprocess, writing its report
and chart to a temporary folder. Figures are never asserted (timing belongs in bench/).

Scripts whose quick run another test already makes (tests/test_vision_bench.py runs decode.py,
tests/test_sync_bench.py sync.py) are left to that test; a new script is picked up here without
any change, as long as it takes `--quick` and `--results DIR` like the others (one without
`--results` is skipped, saying so: its quick run would overwrite bench/results).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
TESTS = Path(__file__).resolve().parent


def is_script(path: Path) -> bool:
    """A benchmark command: a main guard and a --quick option (bench/common.py and other helper
    modules have neither)."""
    text = path.read_text(encoding="utf-8")
    return "__main__" in text and "--quick" in text


def quick_run_elsewhere(name: str) -> Path | None:
    """Another test file that runs `bench/<name> --quick`, if there is one."""
    mentions = re.compile(rf"[\"'/]{re.escape(name)}[\"']")
    for test in sorted(TESTS.glob("test_*.py")):
        if test.name == Path(__file__).name:
            continue
        text = test.read_text(encoding="utf-8")
        if mentions.search(text) and "--quick" in text:
            return test
    return None


SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if is_script(path))


def test_the_benchmarks_of_issue_7_are_all_found() -> None:
    assert {"decode.py", "door.py", "ingest.py", "sync.py"} <= set(SCRIPTS)
    assert quick_run_elsewhere("decode.py") == TESTS / "test_vision_bench.py"
    assert quick_run_elsewhere("door.py") is None


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_mode_runs_and_writes_its_report_and_chart(script: str, tmp_path: Path) -> None:
    elsewhere = quick_run_elsewhere(script)
    if elsewhere is not None:
        pytest.skip(f"{elsewhere.name} runs bench/{script} --quick")
    if "--results" not in (BENCH / script).read_text(encoding="utf-8"):
        pytest.skip(
            f"bench/{script} takes no --results DIR: a quick run would overwrite its figures"
        )
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    name = Path(script).stem
    report = (tmp_path / f"{name}.md").read_text(encoding="utf-8")
    assert report.strip() in done.stdout  # the table is printed as well as written
    assert "| " in report and "Python 3." in report and f"python bench/{script} --quick" in report
    assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")
