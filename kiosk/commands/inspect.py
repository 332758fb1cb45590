"""`kiosk inspect`: the inspectors' API in the terminal, for inspectors without the dashboard.

    kiosk inspect noncompliant --collector URL --token-file FILE [--since T] [--until T]
                               [--region PATH] [--json | --csv]
    kiosk inspect close|reopen VENUE_ID --note TEXT --collector URL --token-file FILE

A small synchronous HTTP client (one request per run). Every failure, from an unreachable
collector to a 4xx answer, is one `kiosk: ...` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from kiosk.errors import KioskError
from kiosk.findings import PLAIN_WORDS, Rule
from kiosk.wire import format_rfc3339, parse_rfc3339

TIMEOUT_S = 30.0
MAX_NOTE_CHARS = 500
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    inspect = subcommands.add_parser(
        "inspect", help="inspectors: non-compliant units, close or reopen a unit"
    )
    inspect.set_defaults(func=lambda _args: _usage(inspect))
    actions = inspect.add_subparsers(dest="inspect_command", metavar="ACTION")

    noncompliant = actions.add_parser(
        "noncompliant",
        help="the units of your region with findings, most severe first",
        description=(
            "Lists the units (venues) with at least one finding in the window, most severe first,"
            " as a table (default), the API's JSON (--json) or CSV (--csv)."
        ),
    )
    _connection_options(noncompliant)
    noncompliant.add_argument(
        "--since",
        metavar="TIME",
        help="start of the window: an RFC 3339 time or a duration ago such as 6h, 90m, 7d"
        " (default: 24 hours ago)",
    )
    noncompliant.add_argument(
        "--until", metavar="TIME", help="end of the window, same forms (default: now)"
    )
    noncompliant.add_argument(
        "--region", metavar="PATH", help="a region within yours, e.g. harbin/daowai"
    )
    form = noncompliant.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print the API's JSON answer")
    form.add_argument("--csv", action="store_true", help="print the API's CSV answer")
    noncompliant.set_defaults(func=noncompliant_command)

    for action, status, words in (
        ("close", "closed", "order a unit closed for rectification"),
        ("reopen", "open", "let a closed unit reopen"),
    ):
        parser = actions.add_parser(action, help=words, description=f"{words.capitalize()}.")
        parser.add_argument("venue_id", metavar="VENUE_ID")
        parser.add_argument(
            "--note", required=True, help=f"why (at most {MAX_NOTE_CHARS} characters)"
        )
        _connection_options(parser)
        parser.set_defaults(func=status_command, status=status)


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collector",
        required=True,
        metavar="URL",
        help="the collector, e.g. https://collector:8080",
    )
    parser.add_argument(
        "--token-file",
        required=True,
        type=Path,
        metavar="FILE",
        help="a file holding your inspector token (and nothing else)",
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- arguments -----------------------------------------------------------------------------


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise KioskError(f"--token-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KioskError(f"--token-file {path}: cannot read it ({exc})") from None
    if not token or any(ch.isspace() for ch in token):
        raise KioskError(f"--token-file {path}: must hold one token and nothing else")
    return token


def parse_time_option(text: str, option: str, now: float) -> str:
    """An RFC 3339 time as given, or `<n><s|m|h|d>` ago as an RFC 3339 time."""
    ago = _AGO.match(text.strip())
    if ago:
        return format_rfc3339(now - float(ago.group(1)) * _UNIT_S[ago.group(2)])
    try:
        parse_rfc3339(text)
    except ValueError:
        raise KioskError(
            f"{option} {text!r}: give an RFC 3339 time (2022-03-05T08:00:00Z) or a duration"
            " ago (6h, 90m, 7d)"
        ) from None
    return text


def _base_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise KioskError(f"--collector {text!r}: give a URL such as https://collector:8080")
    return text.rstrip("/")


# -- HTTP --------------------------------------------------------------------------------------


def call(
    collector: str,
    token: str,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    accept: str = "application/json",
) -> bytes:
    """One request; KioskError with one line for every failure."""
    url = _base_url(collector) + path
    headers = {"Authorization": f"Bearer {token}", "Accept": accept}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise KioskError(_http_error_line(exc)) from None
    except urllib.error.URLError as exc:
        raise KioskError(f"cannot reach the collector at {collector}: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise KioskError(f"cannot reach the collector at {collector}: {exc}") from None


def _http_error_line(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()
        answer = json.loads(raw)
        what = f"{answer['error']}: {answer['detail']}"
    except (OSError, ValueError, KeyError, TypeError):
        what = exc.reason if isinstance(exc.reason, str) else "no details"
    hint = {
        401: " (is the token file right, and the token not revoked?)",
        403: " (outside your role or region)",
    }.get(exc.code, "")
    return f"the collector answered {exc.code}: {' '.join(str(what).split())}{hint}"


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise KioskError("the collector's answer is not JSON; is --collector right?") from None


# -- commands ----------------------------------------------------------------------------------


def noncompliant_command(args: argparse.Namespace) -> int:
    token = read_token(args.token_file)
    now = time.time()
    query: dict[str, str] = {}
    if args.since:
        query["since"] = parse_time_option(args.since, "--since", now)
    if args.until:
        query["until"] = parse_time_option(args.until, "--until", now)
    if args.region:
        query["region"] = args.region
    path = "/api/v1/noncompliant" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    if args.csv:
        sys.stdout.write(call(args.collector, token, "GET", path, accept="text/csv").decode())
        return 0
    answer = _json(call(args.collector, token, "GET", path))
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        print(render_table(answer))
    return 0


def status_command(args: argparse.Namespace) -> int:
    token = read_token(args.token_file)
    if len(args.note) > MAX_NOTE_CHARS:
        raise KioskError(f"--note: at most {MAX_NOTE_CHARS} characters ({len(args.note)} given)")
    venue = urllib.parse.quote(args.venue_id, safe="")
    answer = _json(
        call(
            args.collector,
            token,
            "POST",
            f"/api/v1/units/{venue}/status",
            body={"status": args.status, "note": args.note},
        )
    )
    history = answer.get("history", []) if isinstance(answer, dict) else []
    current = history[-1] if history else {}
    print(
        f"{args.venue_id}: {current.get('status', args.status)}"
        f" (set by {current.get('by', '?')} at {current.get('at', '?')})"
    )
    return 0


def render_table(answer: dict[str, Any]) -> str:
    """The non-compliant answer as text for a terminal: one block per unit, worst first, each
    finding with its rule's plain words beneath."""
    units = answer.get("units", [])
    window = answer.get("window", {})
    head = f"{len(units)} non-compliant unit(s)"
    if window:
        head += f" from {window.get('since')} to {window.get('until')}"
    if answer.get("region"):
        head += f" in {answer['region']}"
    lines = [head]
    for unit in units:
        closed = ""
        if unit.get("status") == "closed":
            closed = f"  CLOSED by {unit.get('status_set_by')} at {unit.get('status_set_at')}"
        lines += [
            "",
            f"{unit['venue_id']}  {unit.get('name', '')}  [{unit.get('region', '')}]{closed}",
            f"  {'RULE':<18} {'KIND':<14} {'KIOSK':<20} {'COUNT':>6}  {'FIRST':<24}  LAST",
        ]
        for finding in unit.get("findings", []):
            try:
                words = PLAIN_WORDS[Rule(finding["rule"])]["en"]
            except (KeyError, ValueError):
                words = ""
            lines.append(
                f"  {finding['rule']:<18} {finding.get('kind', ''):<14} {finding['kiosk_id']:<20}"
                f" {finding['count']:>6}  {finding['first']:<24}  {finding['last']}"
            )
            if words:
                lines.append(f"  {'':<18} {words}")
    return "\n".join(lines)
