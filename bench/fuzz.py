"""The long fuzz run of issue 8: every fuzz target of the test suite, for a time budget each.

    python bench/fuzz.py                  # 60 s per target (half hypothesis, half atheris)
    python bench/fuzz.py --seconds 600    # longer
    python bench/fuzz.py --quick          # 4 s per target: proves the command still works
    python bench/fuzz.py --only codes-verify --only ingest-entries-any-body

The targets, their inputs and their promises are the ones `make test` runs for a few seconds
(tests/test_fuzz_codes.py, test_fuzz_config.py, test_fuzz_ingest.py): the code verifier, the trust
and revocation list parsers and loaders, both configuration loaders, and the ingest endpoints of
a real collector on 127.0.0.1. Two engines share each target's budget:
- hypothesis: structured inputs (JSON shaped like entries, mutated example configs, codes signed
  over arbitrary claims), in this process;
- atheris (coverage-guided libFuzzer over raw bytes, kiosk's modules instrumented), in a child
  process per target, where atheris is installed (Linux x86-64 wheels); skipped, and said so,
  elsewhere.
Printed and written to bench/results/fuzz.md: inputs tried per target and engine, and every
failure with its input. Exit status 1 when any target failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.common import command_line, machine_lines, markdown_table, progress, write_report  # noqa: E402

MAX_FAILURES_KEPT = 5


@dataclass
class Outcome:
    target: str
    engine: str
    inputs: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    note: str = ""


def all_targets(stack: ExitStack) -> list[Any]:
    """Every target of the suite; the ingest ones against a collector kept up by `stack`."""
    from test_fuzz_codes import codes_targets
    from test_fuzz_config import config_targets
    from test_fuzz_ingest import ingest_targets
    from test_fuzz_support import LiveCollector, sqlite_config

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kiosk-fuzz-")))
    live = stack.enter_context(LiveCollector(sqlite_config(folder)))
    return [*codes_targets(), *config_targets(), *ingest_targets(live)]


def describe(exc: BaseException) -> str:
    notes = " | ".join(getattr(exc, "__notes__", []))
    lines = traceback.format_exception_only(type(exc), exc)
    return (" ".join(line.strip() for line in lines) + (f" | {notes}" if notes else ""))[:1500]


# -- hypothesis ---------------------------------------------------------------------------------


def run_hypothesis(target: Any, seconds: float) -> Outcome:
    from test_fuzz_support import run_target

    outcome = Outcome(target.name, "hypothesis")
    started = time.monotonic()
    while time.monotonic() - started < seconds and len(outcome.failures) < MAX_FAILURES_KEPT:
        try:
            run_target(target, 200)
        except Exception as exc:  # a broken promise: keep it, go on looking
            outcome.failures.append(describe(exc))
    outcome.inputs = target.tried
    outcome.seconds = time.monotonic() - started
    return outcome


# -- atheris (in a child process) ------------------------------------------------------------------


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_atheris_child(name: str, seconds: float) -> Outcome:
    outcome = Outcome(name, "atheris")
    with tempfile.TemporaryDirectory(prefix="kiosk-atheris-") as folder:
        result = Path(folder) / "result.json"
        log = Path(folder) / "libfuzzer.log"
        command = [sys.executable, __file__, "--atheris-child", name, "--seconds", str(seconds),
                   "--result", str(result)]
        with log.open("wb") as sink:
            child = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT,
                                   timeout=seconds + 120, check=False, cwd=folder)
        if result.exists():
            data = json.loads(result.read_text())
            outcome.inputs, outcome.seconds = data["inputs"], data["seconds"]
            outcome.failures = data["failures"]
        else:
            tail = log.read_text(errors="replace")[-1500:]
            outcome.failures.append(f"the atheris child exited {child.returncode}: {tail}")
    return outcome


def atheris_child(name: str, seconds: float, result: Path) -> None:
    """Runs in the child: instrument kiosk, then fuzz one target over raw bytes until the
    budget is spent; the result is written to `result` and the process leaves at once."""
    import atheris

    with atheris.instrument_imports(include=["kiosk"]):
        import kiosk.codes
        import kiosk.collector.app
        import kiosk.collector.config
        import kiosk.config
        import kiosk.door.config  # noqa: F401

    stack = ExitStack()
    target = next(t for t in all_targets(stack) if t.name == name)
    failures: list[str] = []
    started = time.monotonic()

    def finish() -> None:
        result.write_text(json.dumps({"inputs": target.tried, "failures": failures,
                                      "seconds": time.monotonic() - started}))
        sys.stdout.flush()
        os._exit(0)  # libFuzzer's loop never returns; the collector thread dies with us

    def one_input(data: bytes) -> None:
        if time.monotonic() - started >= seconds:
            finish()
        try:
            target.run(target.from_bytes(data))
        except Exception as exc:
            if len(failures) < MAX_FAILURES_KEPT:
                failures.append(f"input {data[:200]!r}: {describe(exc)}")
            if len(failures) >= MAX_FAILURES_KEPT:
                finish()

    atheris.Setup([sys.argv[0], "-max_len=4096", "-rss_limit_mb=4096", "-timeout=60"],
                  one_input)
    atheris.Fuzz()


# -- the report ------------------------------------------------------------------------------------


def report(outcomes: list[Outcome], seconds: float, engines: list[str]) -> str:
    rows = [
        (o.target, o.engine, f"{o.inputs:,}", f"{o.seconds:.0f}",
         f"{o.inputs / o.seconds:,.0f}" if o.seconds else "-", len(o.failures) or "none")
        for o in outcomes
    ]
    lines = [
        "# Fuzzing: inputs tried per target",
        "",
        f"- Command: `{command_line()}`",
        f"- Budget: {seconds:g} s per target, shared by {', '.join(engines)}",
        *machine_lines(["hypothesis", "atheris", "aiohttp", "pydantic"]),
        "",
        markdown_table(["target", "engine", "inputs", "s", "inputs/s", "failures"], rows),
        "",
    ]
    failed = [o for o in outcomes if o.failures]
    if failed:
        lines += ["## Failures", ""]
        for o in failed:
            lines += [f"- {o.target} ({o.engine}): {failure}" for failure in o.failures]
    else:
        lines.append("No target broke its promise.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="budget per target")
    parser.add_argument("--quick", action="store_true", help="4 s per target")
    parser.add_argument("--only", action="append", default=[], help="a target name (repeat)")
    parser.add_argument("--engine", choices=["both", "hypothesis", "atheris"], default="both")
    parser.add_argument("--atheris-child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = 4.0 if args.quick else args.seconds
    if args.atheris_child:
        atheris_child(args.atheris_child, seconds, args.result)
        return 0

    engines = ["hypothesis", "atheris"] if args.engine == "both" else [args.engine]
    if "atheris" in engines and not atheris_available():
        progress("atheris is not installed here: hypothesis alone gets the whole budget")
        engines = ["hypothesis"]
    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        targets = [t for t in all_targets(stack) if not args.only or t.name in args.only]
        if not targets:
            parser.error(f"no target named {args.only}")
        share = seconds / len(engines)
        for target in targets:
            for engine in engines:
                progress(f"{target.name}: {engine} for {share:g} s")
                if engine == "hypothesis":
                    outcome = run_hypothesis(target, share)
                else:
                    outcome = run_atheris_child(target.name, share)
                progress(f"  {outcome.inputs:,} inputs, {len(outcome.failures)} failures")
                outcomes.append(outcome)
    text = report(outcomes, seconds, engines)
    print(text)
    path = write_report("fuzz", text)
    figures = {f"{o.target}/{o.engine}": o.inputs for o in outcomes}
    (REPO / "tests" / "artifacts").mkdir(exist_ok=True)
    (REPO / "tests" / "artifacts" / "reliability-fuzz-long.json").write_text(
        json.dumps({"name": "fuzz-long", "seconds_per_target": seconds, "inputs": figures,
                    "failures": sum(len(o.failures) for o in outcomes)}, indent=2) + "\n"
    )
    progress(f"written to {path.relative_to(REPO)}")
    return 1 if any(o.failures for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
