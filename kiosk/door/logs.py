"""Logs of the long-running door process: one JSON object per line on stdout (journald keeps
them), beside the canonical decision lines the engine's DecisionLines writes to the same stream.

Messages name devices, files and reasons, never a code's text, a pseudonym, a key or a token:
that is a rule for every log call in kiosk, and this module adds no fields of its own that
could carry one.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any, TextIO

from kiosk.wire import format_rfc3339

# Attributes every LogRecord has; anything else was passed with `extra=` and goes in the line.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": format_rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": "log",
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            # A bug, not an operator's error: keep the traceback, in one line.
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _LockedStream(logging.StreamHandler[TextIO]):
    """Log lines and decision lines share stdout; a shared lock keeps them whole."""

    def __init__(self, stream: TextIO, lock: threading.Lock) -> None:
        super().__init__(stream)
        self._shared = lock

    def emit(self, record: logging.LogRecord) -> None:
        with self._shared:
            super().emit(record)


STDOUT_LOCK = threading.Lock()


def use_json_lines(*, verbose: bool = False, stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stdout) as JSON lines; replaces earlier handlers."""
    handler = _LockedStream(stream or sys.stdout, STDOUT_LOCK)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # Our own records at info (debug with -v); libraries only when they warn.
    logging.getLogger("kiosk").setLevel(logging.DEBUG if verbose else logging.INFO)
