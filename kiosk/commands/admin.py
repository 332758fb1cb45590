"""`kiosk admin --config FILE ...`: provisioning on the collector's host.

Works before the server has ever run (it creates the database and applies the migrations).
A command that creates a token prints the token alone on stdout, once; only its SHA-256 is
stored. Everything else goes to stderr. Every change is recorded in the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kiosk.errors import KioskError
from kiosk.wire import ID_PATTERN

_ID = re.compile(ID_PATTERN)


def register(subcommands: argparse._SubParsersAction[Any]) -> None:
    parser = subcommands.add_parser(
        "admin",
        help="provision venues, kiosks, inspectors and admins on the collector's host",
        description="Provisioning. Token-creating commands print the token alone on stdout.",
    )
    parser.add_argument(
        "--config", type=Path, required=True, help="the collector configuration (TOML)"
    )
    actions = parser.add_subparsers(dest="admin_command", metavar="ACTION", required=True)

    venue = actions.add_parser("add-venue", help="add a venue (unit)")
    venue.add_argument("venue_id")
    venue.add_argument("--name", required=True, help="the venue's name, for inspectors")
    venue.add_argument("--region", required=True, help="region path such as harbin/daowai")
    venue.add_argument("--type", default="general", help="venue type (default: general)")
    venue.set_defaults(func=_runner(_add_venue))

    kiosk = actions.add_parser("add-kiosk", help="add a kiosk at a venue; prints its token")
    kiosk.add_argument("kiosk_id")
    kiosk.add_argument("--venue", required=True, help="the venue it stands at")
    kiosk.set_defaults(func=_runner(_add_kiosk))

    inspector = actions.add_parser("add-inspector", help="add an inspector; prints the token")
    inspector.add_argument("name")
    inspector.add_argument("--region", required=True, help="the region the inspector sees")
    inspector.set_defaults(func=_runner(_add_inspector))

    admin = actions.add_parser("add-admin", help="add an admin; prints the token")
    admin.add_argument("name")
    admin.set_defaults(func=_runner(_add_admin))

    revoke = actions.add_parser("revoke-token", help="revoke a token at once")
    revoke.add_argument("name", metavar="NAME_OR_KIOSK_ID")
    revoke.set_defaults(func=_runner(_revoke))

    rotate = actions.add_parser("rotate-token", help="replace a token; prints the new one")
    rotate.add_argument("name", metavar="NAME_OR_KIOSK_ID")
    rotate.set_defaults(func=_runner(_rotate))


Action = Callable[[Any, argparse.Namespace, float], Awaitable[str | None]]


def _runner(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from kiosk.collector.config import load_collector_config

        config = load_collector_config(args.config)
        token = asyncio.run(_with_storage(config, action, args))
        if token is not None:
            print(token, flush=True)
        return 0

    return run


async def _with_storage(config: Any, action: Action, args: argparse.Namespace) -> str | None:
    from kiosk.collector.storage import open_storage

    now = time.time()
    storage = await open_storage(
        config.database.url, now=now, pool_size=min(config.database.pool_size, 2)
    )
    try:
        return await action(storage, args, now)
    finally:
        await storage.close()


def _actor() -> Any:
    from kiosk.collector.storage.base import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}", "admin")


def _check_id(what: str, value: str) -> None:
    if not _ID.match(value):
        raise KioskError(
            f"{what} {value!r}: use 1 to 64 letters, digits, '.', '_', ':' or '-', starting with "
            "a letter or digit"
        )


def _check_region(value: str) -> None:
    from kiosk.collector.tokens import region_problem

    problem = region_problem(value)
    if problem is not None:
        raise KioskError(f"--region {value!r}: {problem}")


def _note(message: str) -> None:
    print(message, file=sys.stderr)


async def _add_venue(storage: Any, args: argparse.Namespace, now: float) -> None:
    from kiosk.collector.storage.base import Venue
    from kiosk.policies import VENUE_TYPES

    _check_id("venue id", args.venue_id)
    _check_region(args.region)
    name = args.name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise KioskError("--name: 1 to 200 printable characters")
    if args.type not in VENUE_TYPES:
        published = (await storage.config_snapshot()).policies
        if args.type not in published:
            known = ", ".join([*VENUE_TYPES, *sorted(published)])
            raise KioskError(
                f"--type {args.type!r}: no policy for this venue type; known types: {known} "
                "(publish one first with PUT /api/v1/policy/<type>)"
            )
    await storage.add_venue(
        Venue(args.venue_id, name, args.region, args.type, now), actor=_actor()
    )
    _note(f"added venue {args.venue_id} ({args.type}) in {args.region}")


async def _add_kiosk(storage: Any, args: argparse.Namespace, now: float) -> str:
    from kiosk.collector.tokens import new_token, token_hash

    _check_id("kiosk id", args.kiosk_id)
    _check_id("venue id", args.venue)
    token = new_token()
    await storage.add_kiosk(args.kiosk_id, args.venue, token_hash(token), actor=_actor(), now=now)
    _note(f"added kiosk {args.kiosk_id} at venue {args.venue}; its token (shown once) follows")
    return token


async def _add_person(
    storage: Any, name: str, role: str, region: str | None, now: float
) -> str:
    from kiosk.collector.tokens import new_token, token_hash

    _check_id("name", name)
    if region is not None:
        _check_region(region)
    token = new_token()
    await storage.add_person(name, role, region, token_hash(token), actor=_actor(), now=now)
    where = f" for region {region}" if region else ""
    _note(f"added {role} {name}{where}; the token (shown once) follows")
    return token


async def _add_inspector(storage: Any, args: argparse.Namespace, now: float) -> str:
    return await _add_person(storage, args.name, "inspector", args.region, now)


async def _add_admin(storage: Any, args: argparse.Namespace, now: float) -> str:
    return await _add_person(storage, args.name, "admin", None, now)


async def _revoke(storage: Any, args: argparse.Namespace, now: float) -> None:
    principal = await storage.set_token(args.name, None, actor=_actor(), now=now)
    _note(f"revoked the token of {principal.role} {principal.name}; it is refused from now on")


async def _rotate(storage: Any, args: argparse.Namespace, now: float) -> str:
    from kiosk.collector.tokens import new_token, token_hash

    token = new_token()
    principal = await storage.set_token(args.name, token_hash(token), actor=_actor(), now=now)
    _note(f"replaced the token of {principal.role} {principal.name}; the new one follows")
    return token
