"""bench/decode.py --quick still runs and reports (its figures are never asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_decode_benchmark_quick_run_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "decode.py"), "--quick", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,  # generous: a loaded CI machine; the run itself is ~10 s of CPU
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "decode.md").read_text()
    assert done.stdout.strip() == report.strip()
    assert "| images | n | zxing-cpp | pyzbar | opencv | chain |" in report
    assert "VHC1 1280×720" in report and "Python 3." in report and "zxing-cpp " in report
    assert (tmp_path / "decode.png").read_bytes().startswith(b"\x89PNG")
