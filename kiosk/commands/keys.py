"""`kiosk keys new`: an issuer's Ed25519 key pair and the trust list (JWKS) with its public key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kiosk.codes.issuing import new_issuer_key
from kiosk.codes.keyfiles import FILE_KID, KEY_SUFFIX, META_SUFFIX, TRUST_FILE, save_issuer_key
from kiosk.codes.syntax import is_issuer_id
from kiosk.errors import KioskError


def check_issuer(text: str, option: str = "--issuer") -> str:
    if not is_issuer_id(text):
        raise KioskError(f"{option} {text!r}: an issuer id is 1 to 64 characters")
    return text


def check_file_kid(text: str, option: str = "--kid") -> str:
    if not FILE_KID.fullmatch(text):
        raise KioskError(
            f"{option} {text!r}: a kid here is 1 to 64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit (it names the key's files)"
        )
    return text


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    keys = subcommands.add_parser("keys", help="issuer keys for signing health codes")
    keys.set_defaults(func=lambda _args: _usage(keys))
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    new = actions.add_parser(
        "new",
        help="make an Ed25519 key pair and its trust list",
        description=(
            f"Writes DIR/KID{KEY_SUFFIX} (private key, PEM PKCS#8, mode 0600), DIR/KID{META_SUFFIX}"
            f" (kid, iss and public key, read by `kiosk codes issue`) and DIR/{TRUST_FILE} (the"
            " trust list, a JWKS, for kiosks). An existing key is never overwritten; an existing"
            f" {TRUST_FILE} in DIR gets the new key added. Prints the three paths."
        ),
    )
    new.add_argument(
        "--issuer",
        required=True,
        metavar="ISS",
        help="the issuer id the key signs for (the codes' iss, 1 to 64 characters)",
    )
    new.add_argument(
        "--kid",
        required=True,
        help="the key id codes name (letters, digits, '.', '_', '-'; it names the files)",
    )
    new.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="directory for the files (created when missing)",
    )
    new.set_defaults(func=run_new)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_new(args: argparse.Namespace) -> int:
    key = new_issuer_key(kid=check_file_kid(args.kid), iss=check_issuer(args.issuer))
    files = save_issuer_key(key, args.out)
    print(f"private key: {files.key}")
    print(f"key info:    {files.meta}")
    print(f"trust list:  {files.trust}")
    return 0
