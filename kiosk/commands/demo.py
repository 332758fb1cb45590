"""`kiosk demo [--duration SECONDS]`: the whole system on sample visitors (the README's
`make demo`): a collector and the kiosks of two venues in two districts, one of them
misbehaving, and at the end the inspector's non-compliant list. Runs from any directory with the
package's own data, in a temporary folder, on free ports of 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

from kiosk.errors import KioskError


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    parser = subcommands.add_parser(
        "demo",
        help="run a collector and two kiosks on sample visitors; print decisions and findings",
        description="Run a collector and two real kiosks of two venues in two districts on "
        "scripted sample visitors (green, yellow, red, expired, forged and revoked codes; a "
        "fever; no mask). One venue misbehaves: its thermometer is stuck and its attendant "
        "overrides denies. Prints one line per decision, and at the end the non-compliant list "
        "an inspector reads. Runs until Ctrl-C, or for about --duration seconds in all.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after about this many seconds, the list included (default: at Ctrl-C); "
        "20 shows everything",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="the collector's (and its dashboard's) port (default: a free one)",
    )
    parser.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    started = time.monotonic() - _process_age()
    duration = args.duration
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise KioskError(f"--duration {duration}: give a number of seconds above 0")
    if not 0 <= args.port <= 65535:
        raise KioskError(f"--port {args.port}: give a TCP port from 0 (any free one) to 65535")
    from kiosk.demo.world import run_demo

    return asyncio.run(run_demo(duration, port=args.port, started=started))


def _process_age() -> float:
    """Seconds since this process began (Linux), so that `--duration` counts the start-up
    (a few seconds of imports on a busy machine) too; 0 where that cannot be known."""
    import os

    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            # Field 22, starttime, in clock ticks after boot; fields counted after "(comm)".
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
        age = up - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
    return age if 0.0 <= age < 600.0 else 0.0
