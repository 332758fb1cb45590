"""`kiosk run --config FILE`: the door process at one entrance, until SIGTERM.

It loads the configuration once and refuses to start half-configured (every problem is listed,
one line each, before anything is opened). From then on it logs JSON lines on stdout, one per
event and one canonical line per decision; errors that stop it are still one `kiosk: ...` line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from kiosk.door.config import KioskConfig, check_referenced_files, load_kiosk_config
from kiosk.errors import ConfigError, KioskError

log = logging.getLogger(__name__)


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    parser = subcommands.add_parser(
        "run",
        help="run the door process (camera, sensors, decisions, door screen)",
        description="Run the kiosk at one entrance until SIGTERM or Ctrl-C.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("config/kiosk.toml"),
        help="kiosk configuration file (default: config/kiosk.toml)",
    )
    parser.set_defaults(func=run_command)


def load_for_run(path: Path) -> KioskConfig:
    """The validated configuration, with every file it names present; ConfigError otherwise."""
    config = load_kiosk_config(path)
    problems, notes = check_referenced_files(config)
    # Under systemd the credential variables are set, so a note here is a real missing file.
    problems += notes
    if problems:
        raise ConfigError(
            f"{path}: {len(problems)} configuration error(s):\n  " + "\n  ".join(problems),
            problems,
        )
    return config


def run_command(args: argparse.Namespace) -> int:
    config = load_for_run(args.config)
    from kiosk.door.logs import use_json_lines

    use_json_lines(verbose=bool(getattr(args, "verbose", False)))
    try:
        asyncio.run(serve(config))
    except KioskError:
        raise
    except Exception:
        # A bug, not an operator's mistake: one JSON line with the traceback for the journal,
        # and a failure exit so systemd restarts the door (Restart=on-failure).
        log.critical("the door stopped on an unexpected error", exc_info=True)
        return 1
    return 0


async def serve(config: KioskConfig) -> None:
    """Run the door until SIGTERM or SIGINT, then stop cleanly."""
    from kiosk.door.app import DoorApp

    app = DoorApp(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.request_stop)
    try:
        await app.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped", extra={"event": "stopped"})
