"""The demo's collector: SQLite in the demo's folder, provisioned before it serves the way
`kiosk admin` does it on a collector's host (the same storage and token functions, each change
audited), then served on 127.0.0.1 by the same app `kiosk collector` runs, and given the demo
issuer's trust list and revocation list through the admins' HTTP API, as an admin would.

Tokens: each kiosk's in a file of its own (mode 0600) that its configuration names; the
inspector's is printed by the demo so a person can sign in to the dashboard (a throwaway).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kiosk.collector.app import build_app, server_settings
from kiosk.collector.config import CollectorConfig
from kiosk.collector.storage import open_storage
from kiosk.collector.storage.base import Actor, Venue
from kiosk.collector.tokens import new_token, token_hash
from kiosk.demo.samples import SampleIssuer
from kiosk.demo.story import CITY, INSPECTOR, Unit
from kiosk.errors import KioskError

ADMIN = "demo-admin"
PROVISIONER = Actor("cli:kiosk-demo", "admin")  # as `kiosk admin` records its user
SHUTDOWN_S = 1.0


@dataclass
class DemoCollector:
    url: str  # without a trailing slash
    inspector_token: str = field(repr=False)
    admin_token: str = field(repr=False)
    kiosk_token_files: dict[str, Path]

    @property
    def dashboard_url(self) -> str:
        return f"{self.url}/dashboard/"


@dataclass(frozen=True)
class _Tokens:
    inspector: str = field(repr=False)
    admin: str = field(repr=False)
    kiosk_files: dict[str, Path]


def collector_config(folder: Path, port: int) -> CollectorConfig:
    return CollectorConfig.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": port, "shutdown_timeout": SHUTDOWN_S},
            "database": {"url": f"sqlite:///{(folder / 'collector.db').resolve()}"},
        }
    )


async def provision(
    config: CollectorConfig, units: Sequence[Unit], folder: Path, now: float
) -> _Tokens:
    """Each unit's venue and kiosk (its token written to a file), one inspector for the whole
    city and an admin, in a database the collector has not opened yet."""
    storage = await open_storage(config.database.url, now=now, pool_size=1)
    try:
        kiosk_files: dict[str, Path] = {}
        for unit in units:
            await storage.add_venue(
                Venue(unit.venue_id, unit.name, unit.region, "general", now), actor=PROVISIONER
            )
            token = new_token()
            await storage.add_kiosk(
                unit.kiosk_id, unit.venue_id, token_hash(token), actor=PROVISIONER, now=now
            )
            kiosk_files[unit.kiosk_id] = _write_secret(folder / f"{unit.kiosk_id}.token", token)
        inspector, admin = new_token(), new_token()
        await storage.add_person(
            INSPECTOR, "inspector", CITY, token_hash(inspector), actor=PROVISIONER, now=now
        )
        await storage.add_person(
            ADMIN, "admin", None, token_hash(admin), actor=PROVISIONER, now=now
        )
    finally:
        await storage.close()
    return _Tokens(inspector, admin, kiosk_files)


@contextlib.asynccontextmanager
async def demo_collector(
    folder: Path, units: Sequence[Unit], issuer: SampleIssuer, *, port: int = 0
) -> AsyncIterator[DemoCollector]:
    """The collector serving until the context ends, with the issuer's lists published."""
    config = collector_config(folder, port)
    tokens = await provision(config, units, folder, time.time())
    runner = web.AppRunner(
        build_app(config),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_S,
        **server_settings(config),
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.server.host, config.server.port)
        try:
            await site.start()
        except OSError as exc:
            raise KioskError(
                f"--port {port}: the collector cannot listen there ({exc.strerror or exc}); "
                "leave --port out for a free one"
            ) from None
        url = f"http://127.0.0.1:{_bound_port(runner)}"
        await publish_lists(url, tokens.admin, issuer)
        yield DemoCollector(url, tokens.inspector, tokens.admin, tokens.kiosk_files)
    finally:
        await runner.cleanup()


async def publish_lists(url: str, admin_token: str, issuer: SampleIssuer) -> None:
    """PUT the trust list and the revocation list, as an admin does over the API."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    documents: list[tuple[str, dict[str, Any]]] = [
        ("trust-list", issuer.trust.to_jwks()),
        ("revocation-list", issuer.revocation(int(time.time())).to_json()),
    ]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for name, body in documents:
            async with http.put(f"{url}/api/v1/{name}", json=body, headers=headers) as answer:
                if answer.status != 200:
                    raise KioskError(
                        f"the demo collector refused the {name} ({answer.status}: "
                        f"{(await answer.text())[:200]})"
                    )


def _write_secret(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text + "\n")
    return path


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise KioskError("the demo collector is not listening")
