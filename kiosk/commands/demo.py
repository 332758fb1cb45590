"""`kiosk demo [--duration SECONDS]`: the whole system on sample visitors (the README's
`make demo`). Runs from any directory with the package's own data, in a temporary folder, on a
free port; prints one line per decision and the door screen's address."""

from __future__ import annotations

import argparse
import asyncio
import math
from typing import Any

from kiosk.errors import KioskError


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    parser = subcommands.add_parser(
        "demo",
        help="run a door on sample visitors and print its decisions",
        description="Run a real door process on scripted sample visitors (green, yellow, red, "
        "expired, forged and revoked codes; one fever; one without a mask) and print one line "
        "per decision. Runs until Ctrl-C, or for --duration seconds.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="door screen port (default: a free one)"
    )
    parser.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    duration = args.duration
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise KioskError(f"--duration {duration}: give a number of seconds above 0")
    if not 0 <= args.port <= 65535:
        raise KioskError(f"--port {args.port}: give a TCP port from 0 (any free one) to 65535")
    from kiosk.demo.world import run_demo

    return asyncio.run(run_demo(duration, port=args.port))
