"""`kiosk config check FILE`: every problem of a kiosk configuration, one line each.

Each line names the key path, the value and what to do (`kiosk.pairing_window = 'soon': ...`).
Beyond the schema it opens what the file refers to (trust list, revocation list, pseudonym key
file, policy override folder, camera folder) exactly as `kiosk run` would. Exit 0 when all is
well, 2 otherwise. Results go to stdout, so `kiosk config check F > report.txt` keeps them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kiosk.door.config import KioskConfig, check_referenced_files, load_kiosk_config
from kiosk.errors import ConfigError, KioskError


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    parser = subcommands.add_parser(
        "config", help="check a kiosk configuration file", description="Configuration tools."
    )
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="list every problem of a kiosk configuration file",
        description="Validate a kiosk configuration and the files it names; exit 0 when fine.",
    )
    check.add_argument("file", type=Path, help="the kiosk configuration (TOML)")
    check.set_defaults(func=check_command)


def check_config(path: Path) -> tuple[list[str], list[str]]:
    """(problems, notes) of the configuration at `path`: problems make `kiosk run` refuse to
    start; notes are things only the target machine can settle (credentials under systemd)."""
    try:
        config = load_kiosk_config(path)
    except ConfigError as exc:
        return (exc.problems or [str(exc).removeprefix(f"{path}: ")]), []
    problems, notes = check_referenced_files(config)
    problems += _check_contents(config, problems)
    return problems, notes


def _check_contents(config: KioskConfig, missing: list[str]) -> list[str]:
    """Open the files that are there the way `kiosk run` does; their problems, one line each."""
    from kiosk.codes import load_revocation_list, load_trust_list
    from kiosk.door.knowledge import decode_pseudonym_key, local_policy

    problems: list[str] = []

    def unchecked(key: str) -> bool:
        return any(line.startswith(key) for line in missing)

    def attempt(key: str, load: Any, target: Path | None) -> None:
        if target is None or unchecked(key) or "$" in str(target):
            return
        try:
            load(target)
        except KioskError as exc:
            problems.append(f"{key} = {str(target)!r}: {_one_line(exc)}")

    alone = config.standalone
    if config.standalone_mode:
        attempt("standalone.trust_list", load_trust_list, alone.trust_list)
        attempt("standalone.revocation_list", load_revocation_list, alone.revocation_list)

        def read_key(target: Path) -> None:
            try:
                text = target.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read it ({exc})") from None
            decode_pseudonym_key(text, "the key")

        attempt("standalone.pseudonym_key_file", read_key, alone.pseudonym_key_file)
    else:
        token = config.collector.token_file

        def read_token(target: Path) -> None:
            try:
                text = target.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read it ({exc})") from None
            if not text:
                raise ConfigError("empty; it must hold this kiosk's token on one line")

        attempt("collector.token_file", read_token, token)
    if not unchecked("kiosk.policy_dir"):
        try:
            local_policy(config)
        except KioskError as exc:
            problems.append(f"kiosk.venue_type = {config.kiosk.venue_type!r}: {_one_line(exc)}")
    folder = config.camera.source_path
    if folder is not None and folder.is_dir() and not any(p.is_file() for p in folder.iterdir()):
        problems.append(f"camera.source = {str(folder)!r}: the folder holds no images")
    return problems


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split("\n  "))


def check_command(args: argparse.Namespace) -> int:
    path: Path = args.file
    problems, notes = check_config(path)
    out = sys.stdout
    for line in problems:
        out.write(f"{path}: {line}\n")
    for line in notes:
        out.write(f"{path}: note: {line}\n")
    if problems:
        out.write(f"{path}: {len(problems)} problem(s); kiosk run would refuse to start\n")
        return 2
    out.write(f"{path}: ok\n")
    return 0
