"""`kiosk collector --config FILE [--port N] [--host ADDR]`: serve the collector.

`--port` lets one configuration serve several processes on one host (the systemd template unit
`kiosk-collector@8081.service` passes its instance as the port). Stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    parser = subcommands.add_parser(
        "collector",
        help="run the central collector (ingest, heartbeats, configuration, admin API)",
        description="Serve the collector's HTTP API until SIGTERM or Ctrl-C.",
    )
    parser.add_argument(
        "--config", type=Path, required=True, help="the collector configuration (TOML)"
    )
    parser.add_argument("--port", type=int, help="listen on this port instead of server.port")
    parser.add_argument("--host", help="listen on this address instead of server.host")
    parser.set_defaults(func=collector_command)


def collector_command(args: argparse.Namespace) -> int:
    from kiosk.collector.app import run
    from kiosk.collector.config import load_collector_config
    from kiosk.errors import ConfigError

    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: a TCP port is 0 to 65535")
    config = load_collector_config(args.config).with_port(args.port, args.host)
    if not args.verbose:
        logging.getLogger("kiosk.collector").setLevel(logging.INFO)

    def ready(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    run(config, on_ready=ready)
    return 0
