"""`kiosk check`: verify a health code given as text or read from an image, as a kiosk would.

What an operator runs to learn why a code was refused. One line per code on standard output
(readable, or one JSON object with `--json`); every message goes to standard error.
Exit status: 0 when at least one code was read (whatever its verdict), 3 when the image holds no
readable QR code, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kiosk.codes import RevocationList, load_revocation_list, load_trust_list, verify
from kiosk.errors import KioskError
from kiosk.model import Claims, CodeResult, Verdict
from kiosk.vision.decode import MAX_FRAME_PIXELS, ChainSettings, DecoderChain
from kiosk.vision.images import read_image_file

log = logging.getLogger(__name__)

EXIT_NO_CODE = 3

_UNIX_SECONDS = re.compile(r"-?[0-9]{1,15}")

# Why a verdict is what it is, in the operator's words (health-code.md gives the rules).
EXPLANATIONS = {
    Verdict.VALID: "signature, issuer and dates check out",
    Verdict.NOT_VHC: "not a VHC1 code",
    Verdict.MALFORMED: "not a well-formed code: its parts, JSON or claims break the format",
    Verdict.UNKNOWN_KEY: "its key (kid) is not on the trust list for this issuer",
    Verdict.BAD_SIGNATURE: "the signature does not match: altered, or not signed by that key",
    Verdict.NOT_YET_VALID: "issued more than 5 minutes in the future: check the clocks",
    Verdict.EXPIRED: "past its expiry time",
    Verdict.REVOKED: "the holder is on the revocation list",
    Verdict.UNKNOWN_FORMAT: "a QR code, but not a health code of any known format",
    Verdict.NONE: "no code",
}


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    parser = subcommands.add_parser(
        "check",
        help="verify a health code given as text or read from an image",
        description=(
            "Reads the QR code(s) in an image (or takes the code's text), verifies each offline"
            " and prints one line per code. Exit status 0 when a code was read (any verdict),"
            " 3 when the image holds no readable QR code, 2 for a usage or configuration error."
        ),
    )
    parser.add_argument("text", nargs="?", metavar="TEXT", help="the code's text (VHC1:...)")
    parser.add_argument("--image", type=Path, metavar="FILE", help="read the code(s) from an image")
    # Checked below rather than by argparse, so a missing option is one line, not a usage dump.
    parser.add_argument("--trust", type=Path, metavar="FILE", help="trust list (JWKS); required")
    parser.add_argument("--revoked", type=Path, metavar="FILE", help="revocation list (optional)")
    parser.add_argument(
        "--now", metavar="UNIX_SECONDS", help="check as at this time (default: the clock)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.image is None):
        raise KioskError("check: give the code's TEXT or --image FILE (one of them)")
    if args.trust is None:
        raise KioskError('check: --trust FILE is required (a JWKS; {"keys": []} trusts no one)')
    now = parse_now(args.now) if args.now is not None else int(time.time())
    trust = load_trust_list(args.trust)
    revocation = load_revocation_list(args.revoked) if args.revoked else RevocationList()

    if args.image is not None:
        texts = read_codes(args.image)
        if not texts:
            print(f"kiosk: no readable QR code in {args.image}", file=sys.stderr)
            return EXIT_NO_CODE
    else:
        texts = [args.text]

    for text in texts:
        result = verify(text, trust, revocation, now)
        print(json_line(result) if args.json else readable_line(result, text))
    return 0


def parse_now(text: str) -> int:
    if not _UNIX_SECONDS.fullmatch(text.strip()):
        raise KioskError(f"--now {text!r}: give Unix seconds, e.g. 1717000000")
    return int(text)


def read_codes(path: Path) -> list[str]:
    """Every QR text in the image file, with every decoder step the chain has."""
    gray = read_image_file(path)
    pixels = gray.shape[0] * gray.shape[1]
    if pixels > MAX_FRAME_PIXELS:
        # A very large photo: shrink it to the largest frame the chain takes.
        scale = math.sqrt(MAX_FRAME_PIXELS / pixels) * 0.999
        size = (max(1, int(gray.shape[1] * scale)), max(1, int(gray.shape[0] * scale)))
        log.warning("%s: %d×%d pixels, read at %d×%d", path, *gray.shape[::-1], *size)
        gray = np.asarray(cv2.resize(gray, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    chain = DecoderChain(ChainSettings.exhaustive())
    texts = chain.read_texts(gray)
    stats = chain.stats
    if stats.errors:
        log.warning("a QR decoder failed on %s: %s", path, stats.last_error)
    return texts


def claims_fields(claims: Claims) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "iss": claims.iss,
        "sub": claims.sub,
        "sta": str(claims.sta),
        "iat": claims.iat,
        "exp": claims.exp,
    }
    if claims.nat is not None:
        fields["nat"] = claims.nat
    if claims.trv is not None:
        fields["trv"] = claims.trv
    return fields


def json_line(result: CodeResult) -> str:
    record: dict[str, Any] = {"format": str(result.format), "verdict": str(result.verdict)}
    if result.claims is not None:
        record.update(claims_fields(result.claims))
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _when(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(seconds)


def readable_line(result: CodeResult, text: str) -> str:
    """`VERDICT format  claims  (why)`, e.g. `EXPIRED vhc1 iss=… exp=2024-06-02T10:00:00Z (…)`."""
    parts = [str(result.verdict).upper(), str(result.format)]
    if result.claims is not None:
        for name, value in claims_fields(result.claims).items():
            if name in ("iat", "exp", "nat"):
                value = _when(value)
            elif name == "trv":
                value = "yes" if value else "no"
            parts.append(f"{name}={value}")
    elif result.verdict is Verdict.UNKNOWN_FORMAT:
        shown = text if len(text) <= 60 else text[:57] + "..."
        parts.append("text=" + json.dumps(shown, ensure_ascii=False))
    parts.append(f"({EXPLANATIONS.get(result.verdict, str(result.verdict))})")
    return " ".join(parts)
