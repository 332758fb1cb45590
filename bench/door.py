"""Door latency: the real `kiosk run` replaying camera-like frames at 30 fps, frame in → decision
on the screen's event stream.

    python bench/door.py            # 1280×720 and 640×480, 60 s of replay each (about 3 min)
    python bench/door.py --quick    # 640×480, 6 s: proves the benchmark still works

Then the entry log's write rate, one entry per committed transaction (bench/log_write.py).

What runs is what runs at a door: `kiosk run` as its own process, its camera an image folder
(JPEG, as a USB camera's MJPEG stream delivers them) replayed at 30 fps, the simulated
thermometer and mask detector answering each visit at once, the entry log committed to SQLite
before the screen shows anything. The frames (kiosk.demo.frames) show visitors one after another:
each holds a freshly issued green code (kiosk.codes issuing, through kiosk.demo.kit) up to the
camera for `hold` frames, then nobody is in view for `gap` frames; noisy empty frames are what a
door camera sees most of the time, and every one of them goes through the decoder chain too.

Latency: each decision's event on `/events` carries `frame_at`, the camera's monotonic arrival
time of the frame whose code opened the visit; this process notes its own monotonic time when
the event arrives (CLOCK_MONOTONIC is one clock for every process on the machine). So a figure
is everything from the camera handing the frame over to the screen receiving the decision:
queueing behind earlier frames, decoding, verifying, pairing, the committed SQLite write and the
push. Also reported: visitors without a decision, frames dropped by the camera's drop-oldest
queue, CPU time of the door process over the replay's wall time, and its peak resident memory.
Goal (issue 7): p95 < 100 ms after the code is readable; CPU < 1 core.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import log_write
from bench.common import (
    RESULTS,
    command_line,
    fmt_ms,
    machine_lines,
    markdown_table,
    percentile,
    progress,
    write_report,
)
from kiosk.demo.frames import camera_frame
from kiosk.demo.kit import make_kit
from kiosk.wire import parse_rfc3339

PACKAGES = ("zxing-cpp", "pyzbar", "opencv-python-headless", "aiohttp", "aiosqlite", "numpy")
FPS = 30.0
LEAD_IN_S = 2.0  # empty frames first: the bench connects to /events meanwhile
TAIL_S = 1.0
BLANK_VARIANTS = 12  # distinct noisy empty frames, reused (file links) to keep set-up short
LATENCY_GOAL_MS = 100.0
THREAD_LINE = re.compile(r'^Thread (\d+) \([a-z]+\): "([^"]*)"', re.MULTILINE)
# Which part of the door a thread is, by its Python name.
ROLES = (
    ("kiosk-decode", "decode"),
    ("camera", "camera"),
    ("MainThread", "event loop"),
    ("_connection_worker_thread", "entry log"),
)
LATENCY_PARTS = ("to decision", "log write", "push")
ROLE_ORDER = ("decode", "camera", "event loop", "entry log", "other")
CPU_GOAL_CORES = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    size: tuple[int, int]
    seconds: float
    hold: int = 20  # frames a visitor holds the code up (0.67 s at 30 fps)
    gap: int = 25  # empty frames between visitors

    @property
    def label(self) -> str:
        return f"{self.size[0]}×{self.size[1]}"


@dataclass
class Result:
    scenario: Scenario
    frames: int
    visitors: int
    latencies_ms: list[float] = field(default_factory=list)
    # The same latency in three parts (ms): camera → the decision starts (queue, decode, verify,
    # pairing), the entry log's committed write, and the push to the page.
    parts_ms: dict[str, list[float]] = field(
        default_factory=lambda: {part: [] for part in LATENCY_PARTS}
    )
    decisions: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    delivered: int = 0
    replay_s: float = math.nan
    cpu_s: float = math.nan
    peak_rss_mb: float = math.nan
    cpu_by_role: dict[str, float] = field(default_factory=dict)
    load: tuple[float, float] = (math.nan, math.nan)

    @property
    def cpu_cores(self) -> float:
        return self.cpu_s / self.replay_s if self.replay_s > 0 else math.nan

    def p(self, share: float) -> float:
        return percentile(self.latencies_ms, share)


# --- frames -----------------------------------------------------------------------------------


def write_frames(folder: Path, scenario: Scenario, codes: list[str]) -> int:
    """The replay folder: frame-NNNNNN.jpg in order, each a link to one of a few distinct images
    (one per visitor's code, a dozen empty views). Returns the number of frames."""
    images = folder / "images"
    frames = folder / "frames"
    images.mkdir()
    frames.mkdir(exist_ok=True)
    quality = [cv2.IMWRITE_JPEG_QUALITY, 90]
    blanks = []
    for index in range(BLANK_VARIANTS):
        path = images / f"empty-{index:02d}.jpg"
        cv2.imwrite(str(path), camera_frame(None, size=scenario.size, seed=1000 + index), quality)
        blanks.append(path)
    sequence: list[Path] = []

    def empty(count: int) -> None:
        for _ in range(count):
            sequence.append(blanks[len(sequence) % len(blanks)])

    empty(round(LEAD_IN_S * FPS))
    for index, code in enumerate(codes):
        path = images / f"visitor-{index:04d}.jpg"
        # A slight tilt, different per visitor: a phone is never held quite straight.
        tilt = ((index * 7) % 11 - 5) * 1.5
        image = camera_frame([code], size=scenario.size, seed=index, angle_deg=tilt)
        cv2.imwrite(str(path), image, quality)
        sequence += [path] * scenario.hold
        empty(scenario.gap)
    empty(round(TAIL_S * FPS))
    for index, target in enumerate(sequence):
        (frames / f"frame-{index:06d}.jpg").symlink_to(target)
    return len(sequence)


# --- the door process -------------------------------------------------------------------------


def kiosk_command() -> list[str]:
    script = Path(sys.executable).with_name("kiosk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kiosk"]


class Door:
    """`kiosk run --config FILE` as a child process; its stdout JSON lines read in a thread."""

    def __init__(self, config: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self.process = subprocess.Popen(
            [*kiosk_command(), "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=config.parent,
        )
        self.lines: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.decisions: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                if line.get("event") == "decision":
                    self.decisions.append(line)
                self.lines.put((time.monotonic(), line))

    def wait_for(self, event: str, timeout: float) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.process.poll() is not None and self.lines.empty():
                break
            try:
                at, line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line.get("event") == event:
                return at, line
        raise RuntimeError(f"kiosk run: no {event!r} within {timeout:.0f} s; {self.stderr()}")

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode("utf-8", "replace")[-1500:]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu(self) -> dict[int, float]:
        """CPU seconds of each of the process's threads so far, by native thread id."""
        found = {}
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the thread ended meanwhile
            found[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return found

    def thread_roles(self) -> dict[int, str]:
        """What each thread does, from its Python name (py-spy dump); {} without py-spy."""
        py_spy = Path(sys.executable).with_name("py-spy")
        command = [str(py_spy) if py_spy.exists() else "py-spy", "dump", "--nonblocking"]
        try:
            dump = subprocess.run(
                [*command, "--pid", str(self.process.pid)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return {}
        roles = {}
        for match in THREAD_LINE.finditer(dump):
            name = match.group(2)
            role = next((r for prefix, r in ROLES if prefix in name), "other")
            roles[int(match.group(1))] = role
        return roles

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self._reader.join(10)
        return code


class EventStream:
    """Reads the door screen's /events in a thread; notes when each decision event arrives."""

    def __init__(self, host: str, port: int) -> None:
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self._connection = http.client.HTTPConnection(host, port, timeout=30)
        self._connection.request("GET", "/events", headers={"Accept": "text/event-stream"})
        self._response = self._connection.getresponse()
        if self._response.status != 200:
            raise RuntimeError(f"/events answered {self._response.status}")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._response:
                if raw.startswith(b"data: "):
                    arrived = time.monotonic()
                    payload = json.loads(raw[6:])
                    if payload.get("frame_at") is not None:
                        self.samples.append((arrived, payload))
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the door closed the stream at stop

    def close(self) -> None:
        """After the door stopped: its shutdown ends the stream, and with it the thread."""
        self._thread.join(10)
        self._connection.close()


def status(host: str, port: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", "/api/status")
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the door process (all threads, idle ones too) until interrupted; it writes
    collapsed stacks (flamegraph.pl / speedscope input) to `output`."""
    py_spy = Path(sys.executable).with_name("py-spy")
    command = [str(py_spy) if py_spy.exists() else "py-spy", "record", "--pid", str(pid)]
    command += ["--rate", "200", "--threads", "--idle", "--format", "raw", "-o", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait(10)


def cpu_by_role(
    total: float, start: dict[int, float], end: dict[int, float], roles: dict[int, str]
) -> dict[str, float]:
    """CPU seconds per part of the door between two looks at its threads."""
    used: dict[str, float] = {}
    for tid, seconds in end.items():
        role = roles.get(tid, "other")
        used[role] = used.get(role, 0.0) + seconds - start.get(tid, 0.0)
    # Threads that ended before the second look (the camera's, once the replay is over): the
    # rest of the process's CPU time is theirs.
    ended = {roles.get(tid, "other") for tid in start.keys() - end.keys()}
    role = "camera" if "camera" in ended else "other"
    used[role] = used.get(role, 0.0) + max(0.0, total - sum(used.values()))
    return used


def run_scenario(scenario: Scenario, workdir: Path, profile_dir: Path | None = None) -> Result:
    folder = workdir / scenario.name
    folder.mkdir()
    kit = make_kit(folder)
    now = int(time.time())
    per_visitor = (scenario.hold + scenario.gap) / FPS
    visitors = max(1, int((scenario.seconds - LEAD_IN_S - TAIL_S) / per_visitor))
    codes = [kit.issuer.code("green", now) for _ in range(visitors)]
    progress(f"[{scenario.name}] writing {visitors} visitors' frames ...")
    frames = write_frames(folder, scenario, codes)
    config = kit.write_config(
        kiosk={"pairing_window": 10.0, "repeat_after": 300.0},
        camera={"source": str(kit.frames), "fps": FPS, "loop": False},
        thermometer={"source": "simulated", "simulated": {"fever_share": 0.0, "seed": 7}},
        mask={"source": "simulated", "simulated": {"off_share": 0.0, "seed": 7}},
    )
    result = Result(scenario, frames, visitors)
    progress(f"[{scenario.name}] replaying {frames} frames at {FPS:.0f} fps ...")
    door = Door(config)
    try:
        _, ready = door.wait_for("ready", timeout=60)
        host, port = str(ready["url"]).split("//", 1)[1].rstrip("/").rsplit(":", 1)
        stream = EventStream(host, int(port))
        profiler = None
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            profiler = start_profiler(door.process.pid, profile_dir / f"{scenario.name}.txt")
        load_start = os.getloadavg()[0]
        started, cpu_start = time.monotonic(), door.cpu_seconds()
        threads_start = door.thread_cpu()
        roles = door.thread_roles()
        finished, _ = door.wait_for("replay_ended", timeout=scenario.seconds * 4 + 60)
        result.cpu_s = door.cpu_seconds() - cpu_start
        threads_end = door.thread_cpu()
        result.replay_s = finished - started
        result.load = (load_start, os.getloadavg()[0])
        if profiler is not None:
            stop_profiler(profiler)
        roles.update(door.thread_roles())
        result.cpu_by_role = cpu_by_role(result.cpu_s, threads_start, threads_end, roles)
        time.sleep(0.5)  # the last visitor's decision, if it is still being written
        result.peak_rss_mb = door.peak_rss_mb()
        camera = status(host, int(port))["sensors"]["camera"]
        result.dropped = int(camera.get("dropped", 0))
        result.delivered = int(camera.get("delivered", 0))
    finally:
        door.stop()
    stream.close()
    for arrived, payload in stream.samples:
        result.latencies_ms.append((arrived - float(payload["frame_at"])) * 1000.0)
        result.outcomes[payload["state"]] = result.outcomes.get(payload["state"], 0) + 1
    result.decisions = len(door.decisions)
    split_latency(result, stream.samples, door.decisions)
    return result


def split_latency(
    result: Result, samples: list[tuple[float, dict[str, Any]]], decisions: list[dict[str, Any]]
) -> None:
    """Parts of each latency, pairing the n-th decision event with the n-th decision line (the
    engine writes, shows and reports its decisions one at a time, in order). The line's `ts` is
    when the decision started (wall clock, ms), the event's `at` when the entry was committed and
    the screen state made: both wall clock, turned monotonic with this machine's offset."""
    if len(samples) != len(decisions):
        return
    offset = time.time() - time.monotonic()
    for (arrived, payload), line in zip(samples, decisions, strict=True):
        started = parse_rfc3339(str(line["ts"])) - offset
        shown = float(payload["at"]) - offset
        frame_at = float(payload["frame_at"])
        for part, ms in zip(
            LATENCY_PARTS,
            ((started - frame_at) * 1000, (shown - started) * 1000, (arrived - shown) * 1000),
            strict=True,
        ):
            result.parts_ms[part].append(ms)


# --- report -----------------------------------------------------------------------------------


def verdict(result: Result) -> str:
    ok = (
        result.p(0.95) < LATENCY_GOAL_MS
        and result.cpu_cores < CPU_GOAL_CORES
        and result.decisions == result.visitors
    )
    return "met" if ok else "missed"


def report(results: list[Result], quick: bool) -> str:
    rows = []
    for r in results:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
        rows.append(
            [
                r.scenario.label,
                f"{r.frames} ({r.replay_s:.1f} s)",
                f"{r.decisions} / {r.visitors}",
                outcomes or "–",
                fmt_ms(r.p(0.5)),
                fmt_ms(r.p(0.95)),
                fmt_ms(r.p(0.99)),
                fmt_ms(max(r.latencies_ms, default=math.nan)),
                f"{r.dropped} ({r.dropped / r.frames:.0%})",
                f"{r.cpu_cores:.2f}",
                f"{r.peak_rss_mb:.0f}",
                verdict(r),
            ]
        )
    table = markdown_table(
        [
            "frames",
            "replayed (wall)",
            "decisions / visitors",
            "screen",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "dropped frames",
            "CPU cores",
            "peak RSS MB",
            "goal",
        ],
        rows,
    )
    cpu_rows = []
    for r in results:
        decoded = max(1, r.frames - r.dropped)
        cells = [f"{r.cpu_by_role.get(role, 0.0) / r.replay_s:.2f}" for role in ROLE_ORDER]
        per_frame = r.cpu_by_role.get("decode", math.nan) / decoded * 1000
        cpu_rows.append(
            [r.scenario.label, *cells, fmt_ms(per_frame), f"{r.load[0]:.1f} / {r.load[1]:.1f}"]
        )
    cpu_table = markdown_table(
        ["frames", *ROLE_ORDER, "decode CPU ms / frame", "load avg (start / end)"], cpu_rows
    )
    part_rows = [
        [
            r.scenario.label,
            *(
                f"{fmt_ms(percentile(r.parts_ms[part], 0.5))} / "
                f"{fmt_ms(percentile(r.parts_ms[part], 0.95))}"
                for part in LATENCY_PARTS
            ),
        ]
        for r in results
    ]
    part_table = markdown_table(
        ["frames", *(f"{part} p50 / p95 ms" for part in LATENCY_PARTS)], part_rows
    )
    first = results[0].scenario
    return "\n\n".join(
        [
            "# Door benchmark: frame in → decision on the screen" + (" (quick)" if quick else ""),
            "\n".join(
                [
                    f"- Command: `{command_line()}`",
                    *machine_lines(PACKAGES),
                    f"- `kiosk run` replaying a JPEG folder at {FPS:.0f} fps; each visitor holds "
                    f"a fresh green code up for {first.hold} frames, then {first.gap} empty "
                    "frames; simulated thermometer and mask answer at once; SQLite entry log "
                    "committed before the screen shows the decision.",
                    "- Latency: the camera's arrival time of the frame that opened the visit → "
                    "the decision event received on `/events` (same machine, CLOCK_MONOTONIC).",
                    "- CPU cores: CPU time of the door process (all threads) / wall time of the "
                    "replay. Dropped: frames the camera's drop-oldest queue (2 frames) discarded "
                    "because decoding was behind.",
                    f"- Goal: p95 < {LATENCY_GOAL_MS:.0f} ms and CPU < {CPU_GOAL_CORES:.0f} core, "
                    "every visitor decided.",
                ]
            ),
            table,
            "## Where the latency goes",
            "to decision: from the camera handing the frame over to the engine starting the "
            "decision (waiting behind earlier frames, decoding, verifying the code, pairing it "
            "with the simulated readings); log write: the entry committed to SQLite (WAL, "
            "synchronous=FULL: an fsync) and the screen state made; push: from there to the "
            "event arriving on /events. Wall-clock stamps have millisecond resolution.",
            part_table,
            "## Where the CPU goes (cores, by thread)",
            "decode: the decoder chain's thread; camera: the capture thread (JPEG read, pacing); "
            "event loop: verifying, pairing, deciding, the local API and the event stream; "
            "entry log: aiosqlite's thread (the committed write). The load average counts "
            "everything else running on the machine's cores meanwhile: latency suffers when it "
            "is near or above the core count, CPU time per frame does not.",
            cpu_table,
        ]
    )


def chart(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[2, 1])
    for r in results:
        ordered = sorted(r.latencies_ms)
        shares = [(i + 1) / len(ordered) for i in range(len(ordered))]
        left.step(ordered, shares, where="post", label=r.scenario.label)
    left.axvline(LATENCY_GOAL_MS, color="red", linestyle="--", linewidth=1, label="goal (p95)")
    left.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    left.set_xlabel("frame arrival → decision on /events, ms")
    left.set_ylabel("share of decisions")
    left.set_title(f"Door latency, replay at {FPS:.0f} fps")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    labels = [r.scenario.label for r in results]
    right.bar(labels, [r.cpu_cores for r in results], color="tab:orange")
    right.axhline(CPU_GOAL_CORES, color="red", linestyle="--", linewidth=1)
    right.set_ylabel("CPU cores (door process)")
    right.set_title("CPU share")
    right.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="640×480 for 6 s (make test)")
    parser.add_argument("--seconds", type=float, help="replay length per size (default 60)")
    parser.add_argument(
        "--sizes",
        default=None,
        help="frame sizes, e.g. 1280x720,640x480 (default both; quick: 640x480)",
    )
    parser.add_argument(
        "--log-writes", type=int, default=5_000, help="entries for the entry log's write rate"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where .md and .png go")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="sample the door with py-spy during each replay; collapsed stacks go to DIR "
        "(the figures then include the sampling's cost)",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (6.0 if args.quick else 60.0)
    sizes = args.sizes or ("640x480" if args.quick else "1280x720,640x480")
    scenarios = []
    for text in sizes.split(","):
        width, height = (int(part) for part in text.lower().split("x"))
        scenarios.append(Scenario(f"door-{width}x{height}", (width, height), seconds))
    results = []
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-door-") as workdir:
        for scenario in scenarios:
            results.append(run_scenario(scenario, Path(workdir), args.py_spy))
        writes = log_write.measure(Path(workdir), 300 if args.quick else args.log_writes)
    text = report(results, args.quick) + "\n\n" + log_write.section(writes)
    print(text)
    if not args.quick or args.results != RESULTS:  # a quick run never replaces the figures
        path = write_report("door", text, args.results)
        chart(results, args.results / "door.png")
        progress(f"wrote {path} and {args.results / 'door.png'}")
    if not all(r.latencies_ms for r in results):
        progress("no decision reached the screen's stream: the door did not work")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
