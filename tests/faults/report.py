"""The figures of a reliability test: printed (visible under `pytest -s`) and kept as one JSON
line in tests/artifacts/reliability-<name>.json, which the README's Reliability table quotes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def report(name: str, summary: str, **figures: Any) -> None:
    """Print `summary` with the figures and write them to reliability-<name>.json."""
    record = {"test": name, "summary": summary, **figures, "at": time.strftime("%Y-%m-%d %H:%M")}
    print(f"\n[reliability] {name}: {summary}  " + json.dumps(figures, sort_keys=True))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"reliability-{name}.json").write_text(json.dumps(record, sort_keys=True) + "\n")
