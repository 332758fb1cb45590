"""Helpers every benchmark under bench/ shares: the machine, timing figures, tables and charts.

Each benchmark prints a markdown report (machine, command, table), writes it to
bench/results/<name>.md, and draws a PNG chart beside it, so a reader can rerun the command and
compare.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED = Path(os.environ.get("KIOSK_SHARED_DIR", REPO.parent / "shared"))

T = TypeVar("T")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> str:
    """Other work on the machine skews timings; the report says how busy it was."""
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def package_versions(names: Iterable[str]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_lines(packages: Iterable[str] = ()) -> list[str]:
    """Markdown bullet lines describing where the figures were measured."""
    libs = ", ".join(f"{name} {version}" for name, version in package_versions(packages).items())
    lines = [
        f"- Machine: {usable_cores()} usable cores ({os.cpu_count()} online), {cpu_model()}, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
    ]
    if libs:
        lines.append(f"- Libraries: {libs}")
    lines.append(f"- Measured: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    lines.append(f"- Load average (1/5/15 min) when the report was written: {load_average()}")
    return lines


def command_line() -> str:
    """How this run was started, relative to the repository, for the reader to rerun it."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    return " ".join(["python", shown, *map(shlex.quote, sys.argv[1:])])


def pid_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and of its descendants now alive (a collector and its workers)."""
    return sum(pid_cpu_seconds(each) for each in _process_tree(pid))


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants now alive (Linux /proc)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pending += [int(child) for child in children.read_text().split()]
    return found


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` (0..1) percentile by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def timed_ms(function: Callable[[], T]) -> tuple[T, float]:
    """The function's result and how long it took, in milliseconds (one thread, wall clock)."""
    start = time.perf_counter()
    result = function()
    return result, (time.perf_counter() - start) * 1000.0


def best_of(
    function: Callable[[], T], *, max_calls: int = 5, budget_ms: float = 30.0
) -> tuple[T, float]:
    """The result and the fastest of up to `max_calls` timed calls, calling again only while
    the calls so far took less than `budget_ms` in all (an expensive call runs once).

    The fastest call is the one least disturbed by other work on the machine, so a busy
    machine skews it far less than a single call; an exception in the first call propagates."""
    result, best = timed_ms(function)
    spent, calls = best, 1
    while calls < max_calls and spent < budget_ms:
        _, elapsed = timed_ms(function)
        best = min(best, elapsed)
        spent += elapsed
        calls += 1
    return result, best


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def fmt_share(value: float) -> str:
    return "–" if math.isnan(value) else f"{value * 100:.0f}%"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def progress(message: str) -> None:
    """Progress goes to standard error so the report on standard output stays clean."""
    print(message, file=sys.stderr, flush=True)


def write_report(name: str, text: str, results_dir: Path = RESULTS) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.md"
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class BarGroup:
    """One group of bars in a chart: a label and one value per series (NaN: no bar)."""

    label: str
    values: Sequence[float]


def grouped_bar_chart(
    path: Path,
    *,
    title: str,
    series: Sequence[str],
    groups: Sequence[BarGroup],
    ylabel: str,
    log_scale: bool = False,
    second: tuple[str, Sequence[BarGroup]] | None = None,
) -> Path:
    """A PNG of grouped bars (one colour per series); `second` adds a panel below with the same
    series, e.g. read rate above and time below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(ylabel, groups, log_scale)]
    if second is not None:
        panels.append((second[0], second[1], True))
    width = max(8.0, 0.55 * len(groups) * max(1, len(series)) / 2 + 3)
    figure, axes = plt.subplots(len(panels), 1, figsize=(width, 4.2 * len(panels)), squeeze=False)
    bar = 0.8 / max(1, len(series))
    for axis, (label, panel_groups, log) in zip(axes[:, 0], panels, strict=True):
        positions = range(len(panel_groups))
        for index, name in enumerate(series):
            values = [
                group.values[index] if index < len(group.values) else math.nan
                for group in panel_groups
            ]
            axis.bar(
                [p + (index - (len(series) - 1) / 2) * bar for p in positions],
                [0.0 if math.isnan(v) else v for v in values],
                width=bar,
                label=name,
            )
        axis.set_xticks(list(positions))
        axis.set_xticklabels([g.label for g in panel_groups], rotation=35, ha="right", fontsize=8)
        axis.set_ylabel(label)
        if log:
            axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3)
    axes[0, 0].set_title(title)
    axes[0, 0].legend(fontsize=8, ncols=min(4, len(series)))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
