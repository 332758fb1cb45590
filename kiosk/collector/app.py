"""The collector application: `build_app(config)` and `run(config)`.

State lives under the typed keys of kiosk.collector.keys. The storage, the batch decoder's worker
processes and the maintenance task are owned by cleanup contexts: opened before the app serves,
closed after it stops.
`web.run_app` owns the signals, so SIGTERM from systemd is a graceful stop: requests in flight
get `server.shutdown_timeout` (at most 9 s), then the storage closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from aiohttp import web

from kiosk.collector import api_admin, api_kiosk, api_ops, dashboard, inspectors
from kiosk.collector.auth import AuthGate
from kiosk.collector.batch_decoder import BatchDecoder, default_processes
from kiosk.collector.config import CollectorConfig
from kiosk.collector.errors import error_middleware
from kiosk.collector.keys import (
    AUTH_KEY,
    CLOCK_KEY,
    CONFIG_KEY,
    DECODER_KEY,
    KIOSK_CONFIG_KEY,
    METRICS_KEY,
    OPERATIONS_KEY,
    STORAGE_KEY,
)
from kiosk.collector.kiosk_config import KioskConfigService
from kiosk.collector.metrics import Metrics
from kiosk.collector.operations import Operation
from kiosk.collector.ratelimit import FailureLimiter
from kiosk.collector.storage import open_storage
from kiosk.collector.storage.base import StorageError
from kiosk.errors import KioskError
from kiosk.wire import MAX_BODY_BYTES

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 3600.0


def add_operations(app: web.Application, operations: Iterable[Operation]) -> None:
    """Route `operations` and list them in the OpenAPI document (before the app starts)."""
    for op in operations:
        app.router.add_route(op.method, op.path, op.handler, name=op.operation_id)
        app[OPERATIONS_KEY].append(op)


async def _storage_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG_KEY]
    storage = await open_storage(
        config.database.url, now=app[CLOCK_KEY](), pool_size=config.database.pool_size
    )
    app[STORAGE_KEY] = storage
    limits = config.limits
    app[AUTH_KEY] = AuthGate(
        storage,
        app[METRICS_KEY],
        FailureLimiter(burst=limits.auth_failure_burst, refill_s=limits.auth_failure_refill),
    )
    app[KIOSK_CONFIG_KEY] = KioskConfigService(storage)
    log.info("collector storage: %s", config.database.url.display)
    try:
        yield
    finally:
        await storage.close()


async def _decoder_context(app: web.Application) -> AsyncIterator[None]:
    processes = app[CONFIG_KEY].server.decode_processes
    decoder = BatchDecoder(default_processes() if processes is None else processes)
    app[DECODER_KEY] = decoder
    try:
        yield
    finally:
        await decoder.close()


async def _maintain(app: web.Application) -> None:
    storage = app[STORAGE_KEY]
    while True:
        await asyncio.sleep(MAINTENANCE_INTERVAL_S)
        try:
            await storage.maintain(app[CLOCK_KEY]())
        except StorageError as exc:
            log.warning("maintenance failed, will retry: %s", exc)


async def _maintenance_context(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_maintain(app), name="collector-maintenance")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def build_app(
    config: CollectorConfig, *, clock: Callable[[], float] = time.time
) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[METRICS_KEY] = Metrics()
    app[OPERATIONS_KEY] = []
    app.cleanup_ctx.append(_storage_context)
    app.cleanup_ctx.append(_decoder_context)
    app.cleanup_ctx.append(_maintenance_context)
    add_operations(
        app,
        [
            *api_kiosk.OPERATIONS,
            *api_admin.OPERATIONS,
            *api_ops.OPERATIONS,
            *inspectors.register(app),
        ],
    )
    dashboard.setup(app)  # the inspectors' pages under /dashboard/ (not API: no OpenAPI)
    return app


def server_settings(config: CollectorConfig) -> dict[str, Any]:
    """Settings of aiohttp's connection handler. aiohttp closes a connection that has not
    delivered a whole request head within `keepalive_timeout` of connecting (or of its last
    answer), which is what bounds a client sending its headers too slowly."""
    return {
        "keepalive_timeout": config.server.header_timeout,
        "max_line_size": 8190,
        "max_field_size": 8190,
        "lingering_time": 2.0,
    }


def _ssl_context(config: CollectorConfig) -> ssl.SSLContext | None:
    server = config.server
    if server.tls_cert is None or server.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(server.tls_cert, server.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise KioskError(
            f"server.tls_cert / server.tls_key: cannot load {server.tls_cert}: {exc}"
        ) from None
    return context


def run(config: CollectorConfig, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    app = build_app(config)
    context = _ssl_context(config)
    scheme = "https" if context else "http"

    def announce(message: str) -> None:
        text = f"kiosk collector listening on {scheme}://{config.server.host}:{config.server.port}"
        if on_ready is None:
            log.warning(text)
        else:
            on_ready(text)

    web.run_app(
        app,
        host=config.server.host,
        port=config.server.port,
        ssl_context=context,
        shutdown_timeout=config.server.shutdown_timeout,
        print=announce,
        access_log=None,
        handle_signals=True,
        **server_settings(config),
    )
