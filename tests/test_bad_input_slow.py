"""Bad input that is about time and size rather than content (issue 8, "Bad input"):

- request heads and bodies sent one byte at a time, over raw sockets, to a real collector: the
  connection is closed when the configured header timeout runs out however steadily bytes arrive
  (so a trickle cannot hold a connection open), and a trickled body gets 408 and a close within
  the body timeout. The test runs with 1 s limits; the shipped defaults keep both under 30 s.
- a 10,000 × 10,000 pixel frame: the decoder rejects it without crashing and without copying it
  (memory traced), and counts it; a QR code at full capacity gets a verdict.
"""

from __future__ import annotations

import asyncio
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_fuzz_support import LiveCollector, record_figures, sqlite_config

from kiosk.codes import RevocationList, TrustList, verify
from kiosk.collector.app import server_settings
from kiosk.collector.config import CollectorConfig, load_collector_config
from kiosk.demo.frames import render_qr
from kiosk.model import Verdict
from kiosk.vision.decode import DecoderChain

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 1.0  # the test's header and body timeouts
# After a 408 aiohttp reads on (and drops) what still comes for this long, then closes.
LINGERING_S = float(server_settings(CollectorConfig())["lingering_time"])
BYTE_EVERY_S = 0.1  # ten times faster than the limit, so a per-byte idle timer never fires


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCollector]:
    config = sqlite_config(
        tmp_path_factory.mktemp("slow"), header_timeout=LIMIT_S, body_timeout=LIMIT_S
    )
    with LiveCollector(config) as server:
        yield server


def trickle(port: int, data: bytes, *, then: bytes = b"", within: float = 10.0) -> tuple[
    float, bytes
]:
    """Send `then` at once, then `data` one byte every BYTE_EVERY_S until the server closes the
    connection; the seconds that took and what the server answered."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=within) as sock:
        sock.settimeout(BYTE_EVERY_S)
        started = time.monotonic()
        if then:
            sock.sendall(then)
        for byte in data:
            if time.monotonic() - started > within:
                raise AssertionError(f"still open after {within} s")
            try:
                sock.send(bytes([byte]))
            except OSError:
                break  # reset by the server: closed
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        else:
            raise AssertionError("the server read the whole trickle")
        sock.settimeout(within)
        try:  # read what is left until the close
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return time.monotonic() - started, answer


def test_a_head_sent_one_byte_at_a_time_is_cut_off_at_the_header_timeout(
    live: LiveCollector,
) -> None:
    token = live.auth("k-a")["Authorization"]
    head = (
        f"POST /api/v1/entries HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
        "Content-Type: application/json\r\nX-Padding: " + "a" * 500
    ).encode()
    elapsed, answer = trickle(live.port, head)
    assert answer == b""  # closed without an answer: no request was ever complete
    assert LIMIT_S <= elapsed < LIMIT_S + 2.0
    assert live.call(live.storage.count_entries()) == 0
    record_figures("bad-input-slow-head", {"closed_after_s": round(elapsed, 2),
                                           "header_timeout_s": LIMIT_S})


def test_a_body_sent_one_byte_at_a_time_gets_408_and_a_close(live: LiveCollector) -> None:
    token = live.auth("k-a")["Authorization"]
    body = b'{"entries": [' + b" " * 500 + b"]}"
    head = (
        f"POST /api/v1/entries HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    elapsed, answer = trickle(live.port, body, then=head)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", answer[:200]
    assert b'"error": "request_timeout"' in rest
    assert LIMIT_S <= elapsed < LIMIT_S + LINGERING_S + 1.0
    assert live.call(live.storage.count_entries()) == 0
    record_figures("bad-input-slow-body", {"answered_408_and_closed_after_s": round(elapsed, 2),
                                           "body_timeout_s": LIMIT_S})


def test_the_shipped_limits_close_a_trickling_connection_within_30_s() -> None:
    """What the tests above show with 1 s holds at the defaults and in the documented example:
    a trickled head is cut off within header_timeout, a trickled body answered 408 within
    body_timeout of its head (and the connection closed LINGERING_S later)."""
    for config in (CollectorConfig(), load_collector_config(REPO / "config" / "collector.toml")):
        assert config.server.header_timeout <= 30
        assert config.server.body_timeout <= 30


# -- frames and QR texts -------------------------------------------------------------------


def test_a_10000_by_10000_frame_is_rejected_without_a_copy() -> None:
    chain = DecoderChain()
    frames = {
        "bgr": np.zeros((10_000, 10_000, 3), np.uint8),
        "gray": np.full((10_000, 10_000), 255, np.uint8),
        "strided": np.zeros((20_000, 10_000), np.uint8)[::2],
        "tall": np.zeros((100_000, 1_000), np.uint8),
    }
    tracemalloc.start()
    try:
        for frame in frames.values():
            tracemalloc.reset_peak()
            baseline = tracemalloc.get_traced_memory()[0]
            assert chain.read_texts(frame) == []
            peak = tracemalloc.get_traced_memory()[1] - baseline
            assert peak < 1_000_000, f"decoding a rejected frame allocated {peak} bytes"
    finally:
        tracemalloc.stop()
    assert chain.stats.rejected_frames == len(frames)
    assert chain.stats.errors == {}


async def test_a_huge_frame_off_the_event_loop_too() -> None:
    chain = DecoderChain()
    frame = np.zeros((10_000, 10_000, 3), np.uint8)
    assert await asyncio.wait_for(chain.read_texts_async(frame), timeout=30) == []


def test_a_qr_code_at_full_capacity_gets_a_clear_verdict() -> None:
    """Version 40 holds 2,331 bytes at error level M: far over VHC1's 1,024 characters."""
    text = "VHC1:" + "A" * 2_300
    image = render_qr(text, module_px=3)
    chain = DecoderChain()
    reads = chain.read_texts(image)
    assert reads == [text]
    result = verify(reads[0], TrustList(), RevocationList(), 1_646_500_000)
    assert result.verdict == Verdict.MALFORMED and result.claims is None
