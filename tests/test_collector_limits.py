"""Clients that send too slowly are cut off, and unexpected errors still answer in the one error
shape (a real server on 127.0.0.1 with short limits; the HTTP layer is the same on any database,
so SQLite only)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from collector_helpers import FakeClock, provision

from kiosk.collector.app import build_app, server_settings
from kiosk.collector.config import CollectorConfig
from kiosk.collector.keys import STORAGE_KEY

SHORT = 0.3


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[TestServer, str]]:
    config = CollectorConfig.model_validate(
        {
            "server": {"header_timeout": SHORT, "body_timeout": SHORT},
            "database": {"url": f"sqlite:///{tmp_path}/c.db"},
        }
    )
    app = build_app(config, clock=FakeClock())

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_get("/test-only/boom", boom)
    test_server = TestServer(app, host="127.0.0.1")
    # A short linger: after the 408 aiohttp reads on for lingering_time before closing.
    await test_server.start_server(**{**server_settings(config), "lingering_time": 0.2})
    provisioned = await provision(app[STORAGE_KEY])
    try:
        yield test_server, provisioned.tokens["k-a"]
    finally:
        await test_server.close()


async def read_until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout=within)


async def test_a_request_head_sent_too_slowly_is_cut_off(
    server: tuple[TestServer, str],
) -> None:
    test_server, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", test_server.port)
    started = time.monotonic()
    writer.write(b"POST /api/v1/entries HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    await writer.drain()
    assert await read_until_closed(reader, within=5) == b""  # closed, nothing answered
    assert time.monotonic() - started < 3
    writer.close()


async def test_a_body_sent_too_slowly_gets_408(server: tuple[TestServer, str]) -> None:
    test_server, token = server
    reader, writer = await asyncio.open_connection("127.0.0.1", test_server.port)
    head = (
        "POST /api/v1/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n"
    )
    writer.write(head.encode() + b'{"entries": [')  # then stalls
    await writer.drain()
    answer = await read_until_closed(reader, within=5)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error"] == "request_timeout"


async def test_an_unexpected_error_answers_500_in_the_error_shape(
    server: tuple[TestServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    import aiohttp

    test_server, _ = server
    async with (
        aiohttp.ClientSession() as session,
        session.get(test_server.make_url("/test-only/boom")) as response,
    ):
        body: dict[str, Any] = await response.json()
        assert response.status == 500
    assert body == {"error": "internal_error", "detail": "internal error; see the collector's log"}
    assert "a bug" in caplog.text  # in the log, not in the answer
