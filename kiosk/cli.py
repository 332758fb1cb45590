"""The `kiosk` command: parses arguments, hands over to one command module, prints errors as one
line. Each command module under kiosk/commands/ adds its own subcommand with `register()`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from kiosk import __version__
from kiosk.errors import KioskError

# The word on the command line → the module that registers it. Only that module is imported
# for a command (the door's modules pull in OpenCV and numpy, which a collector restarting after
# a crash should not wait for); `kiosk --help` and unknown words import them all.
COMMAND_MODULES = {
    "keys": "keys",
    "codes": "codes",
    "check": "check",
    "run": "run",
    "demo": "demo",
    "config": "config_check",
    "collector": "collector",
    "admin": "admin",
    "inspect": "inspect",
}


def _named_command(argv: Sequence[str]) -> str | None:
    """The command word of `argv` when it is a known one (options before it are skipped)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMAND_MODULES else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk",
        description="Door-side health-code kiosk and the central collector for inspectors.",
    )
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for word, name in COMMAND_MODULES.items():
        if only is not None and word != only:
            continue
        module = importlib.import_module(f"kiosk.commands.{name}")
        module.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_named_command(words))
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except KioskError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
