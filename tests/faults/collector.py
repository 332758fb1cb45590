"""A real collector app in this process, on 127.0.0.1, for the kiosk's reliability tests: its own
SQLite file, one venue, kiosks provisioned with tokens in files (as `kiosk admin` gives them),
an admin token, and a way to read what it holds (`rows`), off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from kiosk.collector.app import build_app, server_settings
from kiosk.collector.config import CollectorConfig
from kiosk.collector.keys import STORAGE_KEY
from kiosk.collector.storage.base import Actor, Venue
from kiosk.collector.tokens import new_token, token_hash

VENUE = "v-reliability"
SETUP = Actor("cli:reliability-test", "admin")


@dataclass
class RunningCollector:
    port: int
    database: Path
    token_files: dict[str, Path] = field(default_factory=dict)
    admin_token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of the collector's database (blocking: from a thread, or use `rows`)."""
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            return db.execute(sql, params).fetchall()

    async def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self.query, sql, *params)


@contextlib.asynccontextmanager
async def collector_running(
    folder: Path, kiosk_ids: tuple[str, ...], port: int = 0
) -> AsyncIterator[RunningCollector]:
    """The collector serving on 127.0.0.1 (`port` 0: any free one) until the block ends."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    database = folder / "collector.db"
    config = CollectorConfig.model_validate({"database": {"url": f"sqlite:///{database}"}})
    app = build_app(config)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=1.0, **server_settings(config)
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = runner.addresses[0][1]
        collector = RunningCollector(int(bound), database)
        storage = app[STORAGE_KEY]
        now = time.time()
        await storage.add_venue(Venue(VENUE, "Reliability", "city/d1", "general", now), actor=SETUP)
        for kiosk_id in kiosk_ids:
            token = new_token()
            await storage.add_kiosk(kiosk_id, VENUE, token_hash(token), actor=SETUP, now=now)
            path = folder / f"{kiosk_id}.token"
            await asyncio.to_thread(path.write_text, token + "\n")
            collector.token_files[kiosk_id] = path
        collector.admin_token = new_token()
        await storage.add_person(
            "reliability-admin",
            "admin",
            None,
            token_hash(collector.admin_token),
            actor=SETUP,
            now=now,
        )
        yield collector
    finally:
        await runner.cleanup()
