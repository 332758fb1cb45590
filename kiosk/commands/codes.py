"""`kiosk codes issue`: sign a VHC1 health code with an issuer key (made by `kiosk keys new`)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import segno

from kiosk.codes.issuing import RECOMMENDED_MIN_SUB_CHARS, random_sub
from kiosk.codes.keyfiles import KEY_SUFFIX, META_SUFFIX, load_issuer_key
from kiosk.codes.syntax import is_subject_id
from kiosk.codes.vhc1 import MAX_VALIDITY_S
from kiosk.commands.keys import check_issuer
from kiosk.errors import KioskError
from kiosk.model import Status

_TTL = re.compile(r"([0-9]{1,9})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_UNIX = re.compile(r"-?[0-9]{1,15}")

QR_SCALE = 8  # pixels per module: sharp on a phone screen and in a printed test sheet
QR_BORDER = 4  # the quiet zone ISO/IEC 18004 asks for


def parse_ttl(text: str) -> int:
    """Seconds in `90m`, `24h`, `7d` (also `s`): 1 s to 7 days, the longest VHC1 allows."""
    match = _TTL.fullmatch(text.strip())
    if not match:
        raise KioskError(f"--ttl {text!r}: give a number and a unit, like 90m, 24h or 7d")
    seconds = int(match[1]) * _UNIT_S[match[2]]
    if not 0 < seconds <= MAX_VALIDITY_S:
        raise KioskError(
            f"--ttl {text}: must be more than 0 and at most 7d (VHC1 codes live at most 7 days)"
        )
    return seconds


def parse_time(text: str, option: str) -> int:
    """Unix seconds from Unix seconds or an ISO 8601 time with its offset (`Z`, `+08:00`)."""
    text = text.strip()
    if _UNIX.fullmatch(text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise KioskError(
            f"{option} {text!r}: give Unix seconds or an ISO 8601 time such as"
            " 2022-03-04T08:30:00+08:00"
        ) from None
    if moment.tzinfo is None:
        raise KioskError(
            f"{option} {text!r}: say which time zone, e.g. 2022-03-04T08:30:00+08:00 or"
            " 2022-03-04T00:30:00Z"
        )
    return int(moment.timestamp())


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    codes = subcommands.add_parser("codes", help="issue health codes (for issuers and tests)")
    codes.set_defaults(func=lambda _args: _usage(codes))
    actions = codes.add_subparsers(dest="codes_command", metavar="ACTION")
    issue = actions.add_parser(
        "issue",
        help="sign a VHC1 code and print its text",
        description=(
            "Prints the VHC1 text of a new code on standard output (and writes it as a QR image"
            f" with --png). The kid and iss come from the {META_SUFFIX} file that"
            f" `kiosk keys new` wrote beside the key (X{KEY_SUFFIX} -> X{META_SUFFIX});"
            " --kid and --issuer override it and, given both, make it unnecessary."
        ),
    )
    issue.add_argument(
        "--key",
        required=True,
        type=Path,
        metavar="FILE",
        help="the issuer's private key (PEM PKCS#8, Ed25519)",
    )
    issue.add_argument(
        "--sub",
        help="the holder's pseudonym (1 to 64 of A-Z a-z 0-9 _ -); default: 128 random bits,"
        " told on standard error. The spec asks issuers for at least 96 random bits (16 or"
        " more characters)",
    )
    issue.add_argument("--status", required=True, choices=[s.value for s in Status])
    issue.add_argument(
        "--ttl",
        default="24h",
        help="how long the code is valid: 90m, 24h, 7d (at most 7d; default 24h)",
    )
    issue.add_argument(
        "--nat",
        metavar="TIME",
        help="when the latest negative nucleic-acid test was sampled: ISO 8601 with its"
        " offset, or Unix seconds",
    )
    issue.add_argument(
        "--travel",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="trv: the last 14 days' itinerary includes a risk area (--no-travel writes"
        " false; neither leaves trv out)",
    )
    issue.add_argument("--png", type=Path, metavar="FILE", help="also write the QR code here")
    issue.add_argument("--now", metavar="UNIX", help="issue time (iat); default: the clock")
    issue.add_argument("--kid", help="the key id to sign under (overrides the key's info file)")
    issue.add_argument("--issuer", metavar="ISS", help="the iss (overrides the key's info file)")
    issue.set_defaults(func=run_issue)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _check_sub(given: str) -> str:
    if not is_subject_id(given):
        raise KioskError(f"--sub {given!r}: must be 1 to 64 characters of A-Z a-z 0-9 _ -")
    return given


def write_qr_png(text: str, path: Path) -> None:
    try:
        segno.make_qr(text, error="m").save(str(path), kind="png", scale=QR_SCALE, border=QR_BORDER)
    except OSError as exc:
        raise KioskError(f"--png {path}: cannot write the image ({exc.strerror})") from None


def run_issue(args: argparse.Namespace) -> int:
    ttl_s = parse_ttl(args.ttl)
    iat = parse_time(args.now, "--now") if args.now is not None else int(time.time())
    nat = parse_time(args.nat, "--nat") if args.nat is not None else None
    iss = check_issuer(args.issuer) if args.issuer is not None else None
    if args.kid is not None and not args.kid:
        raise KioskError("--kid: must not be empty")
    sub = _check_sub(args.sub) if args.sub is not None else random_sub()
    key = load_issuer_key(args.key, kid=args.kid, iss=iss)
    try:
        text = key.issue(
            sub=sub, status=args.status, iat=iat, ttl_s=ttl_s, nat=nat, trv=args.travel
        )
    except ValueError as exc:
        raise KioskError(str(exc)) from None
    if args.png is not None:
        write_qr_png(text, args.png)
    # Only now, when the code exists: stderr, so stdout stays the code alone.
    if args.sub is None:
        print(f"sub: {sub} (random)", file=sys.stderr)
    elif len(sub) < RECOMMENDED_MIN_SUB_CHARS:
        print(
            f"warning: --sub has {len(sub)} characters; issuers should give at least 96 random"
            " bits (16 or more characters) so that revocation hashes cannot be reversed",
            file=sys.stderr,
        )
    print(text)
    return 0
