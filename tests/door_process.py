"""A real `kiosk run` process for the door's end-to-end tests: started with a config file,
its stdout read line by line in a thread (JSON lines: logs and one line per decision), stopped
by pid. Also the independent chain check those tests apply to the SQLite file it leaves."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rfc8785

REPO = Path(__file__).resolve().parents[1]
GENESIS = "0" * 64


def kiosk_command() -> list[str]:
    script = Path(sys.executable).with_name("kiosk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kiosk"]


class DoorProcess:
    """`kiosk -v run --config FILE` as a child; `on_line` sees each parsed line as it comes."""

    def __init__(
        self,
        config: Path,
        on_line: Callable[[dict[str, Any]], None] | None = None,
        *,
        verbose: bool = True,
    ) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self.process = subprocess.Popen(
            [*kiosk_command(), *(["-v"] if verbose else []), "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=config.parent,
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._on_line = on_line
        self.url: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.raw.append(raw)
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # a line cut by kill -9
            if not isinstance(line, dict):
                continue
            if line.get("event") == "ready":
                self.url = line.get("url")
            self.lines.append(line)
            if self._on_line is not None:
                self._on_line(line)
            self._events.put(line)

    def wait_for(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (self.process.poll() is not None and self._events.empty()):
                raise AssertionError(
                    f"no {event!r} line within {timeout} s; stderr: {self.stderr_text()[-2000:]}"
                )
            try:
                line = self._events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line.get("event") == event:
                return line

    def decisions(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == "decision"]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._reader.join(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait: the exit status."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    def stderr_text(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode("utf-8", "replace")

    def ensure_gone(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def stored_entries(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seq, body FROM entries ORDER BY seq").fetchall()
    conn.close()
    entries = []
    for seq, body in rows:
        entry = json.loads(body)
        assert entry["seq"] == seq
        entries.append(entry)
    return entries


def assert_chain(entries: list[dict[str, Any]]) -> None:
    """seq 1..N without a gap, one log_id, each chain recomputed here from sync-api.md."""
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert len({e["log_id"] for e in entries}) <= 1
    previous = GENESIS
    for entry in entries:
        body = {key: value for key, value in entry.items() if key != "chain"}
        expected = hashlib.sha256(previous.encode("ascii") + rfc8785.dumps(body)).hexdigest()
        assert entry["chain"] == expected, f"chain broken at seq {entry['seq']}"
        previous = entry["chain"]
