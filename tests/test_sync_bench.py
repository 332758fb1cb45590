"""bench/sync.py --quick still works: a 5,000-entry backlog drained into a real collector, a
markdown report and a chart. (Its figures are not judged here: performance is never asserted by
timing in tests.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_quick_sync_benchmark_runs(tmp_path: Path) -> None:
    bench = [sys.executable, str(REPO / "bench" / "sync.py"), "--quick"]
    done = subprocess.run(
        [*bench, "--database", "sqlite", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "sync.md").read_text()
    assert report.strip() == done.stdout.strip()
    assert "usable cores" in report  # the machine is stated
    row = next(line for line in report.splitlines() if line.startswith("| SQLite |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "5,000" and cells[7] == "5"  # five full batches of 1,000
    assert (tmp_path / "sync.png").read_bytes().startswith(b"\x89PNG")
