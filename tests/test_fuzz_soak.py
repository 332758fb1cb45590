"""The long fuzz run under `make soak` (KIOSK_SOAK=1, -m slow): every fuzz target of the suite
(codes, lists, configuration, ingest) for KIOSK_SOAK_FUZZ_EXAMPLES structured inputs each (3,000
by default), with the figures written for the README. `python bench/fuzz.py` runs the same
targets by time budget, with atheris's coverage-guided bytes besides."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_fuzz_codes import codes_targets
from test_fuzz_config import config_targets
from test_fuzz_ingest import ingest_targets
from test_fuzz_support import SOAK, LiveCollector, Target, record_figures, run_target, sqlite_config

EXAMPLES = int(os.environ.get("KIOSK_SOAK_FUZZ_EXAMPLES", "3000"))
NAMES = [t.name for t in [*codes_targets(), *config_targets()]] + [
    "ingest-entries-any-body", "ingest-heartbeat-any-body",
    "ingest-entries-mutated", "ingest-heartbeat-mutated",
]


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    folder: Path = tmp_path_factory.mktemp("fuzz-soak")
    with LiveCollector(sqlite_config(folder)) as live:
        found = [*codes_targets(), *config_targets(), *ingest_targets(live)]
        yield {target.name: target for target in found}


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="the long fuzz run is for make soak (KIOSK_SOAK=1)")
@pytest.mark.parametrize("name", NAMES)
def test_long_fuzz(targets: dict[str, Target], name: str) -> None:
    started = time.monotonic()
    tried = run_target(targets[name], EXAMPLES)
    record_figures("fuzz-soak", {"inputs": tried, "engine": "hypothesis",
                                 "seconds": round(time.monotonic() - started, 1)}, target=name)
    assert tried >= EXAMPLES // 2
