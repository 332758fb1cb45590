"""The sync client's one boundary with the network: HTTP exchanges with the collector in,
typed outcomes out. Nothing below raises for anything the network, TLS or the collector does.

    outcome                 meaning                                   what sync does
    Stored                  200: the batch is committed               mark the entries sent
    BadEntry(index)         400 naming one entry                      set it aside, resend the rest
    TooLarge                413                                       split the batch
    Refused                 401/403, or no readable token             keep, alert, retry later
    Rejected                any other 4xx or 3xx: we or the URL are   keep, alert, retry later
                            wrong, and retrying now will not help
    RetryLater(reason)      refused connection, timeout, reset,       keep, retry with backoff
                            TLS failure, 408/429/5xx
    Delivered               heartbeat accepted (2xx)
    ConfigFetched/Unchanged kiosk configuration 200 / 304

Each exchange also yields a clock reading for the `OffsetEstimator` (the answer's `Date`).
The token is read from its file when the file changes and appears only in the Authorization
header: never in a log line, an outcome or a repr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from kiosk import __version__
from kiosk.door.sync_clock import OffsetEstimator, parse_http_date

log = logging.getLogger(__name__)

ENTRIES_PATH = "/api/v1/entries"
HEARTBEAT_PATH = "/api/v1/heartbeat"
CONFIG_PATH = "/api/v1/kiosk/config"
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a kiosk configuration with a large trust list fits
_DETAIL_CHARS = 300


# -- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    accepted: int | None
    duplicates: int | None


@dataclass(frozen=True, slots=True)
class BadEntry:
    index: int
    error: str
    detail: str


@dataclass(frozen=True, slots=True)
class TooLarge:
    detail: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Authentication or authorisation failed (status None: no usable token on this kiosk)."""

    status: int | None
    error: str
    detail: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """The collector understood the request and refuses it in a way a retry will not change."""

    status: int
    error: str
    detail: str


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Worth retrying: `reason` is unreachable, timeout, connection_lost, tls, busy, server_error
    or network. `retry_after`: seconds the collector asked for (Retry-After), if any."""

    reason: str
    detail: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    pass


@dataclass(frozen=True, slots=True)
class ConfigFetched:
    raw: dict[str, Any]
    etag: str | None


@dataclass(frozen=True, slots=True)
class ConfigUnchanged:
    pass


EntriesOutcome = Stored | BadEntry | TooLarge | Refused | Rejected | RetryLater
HeartbeatOutcome = Delivered | Refused | Rejected | RetryLater
ConfigOutcome = ConfigFetched | ConfigUnchanged | Refused | Rejected | RetryLater


# -- the token --------------------------------------------------------------------------------


class TokenUnavailable(Exception):
    """The token file is missing, unreadable or holds no usable token (the message says which,
    never what it holds)."""


class TokenFile:
    """This kiosk's bearer token, re-read whenever its file changes (a rotated token is picked
    up without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def read(self) -> str:
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
            if stamp != self._stamp or self._token is None:
                text = self.path.read_text(encoding="ascii")
                self._token, self._stamp = _usable_token(text, self.path), stamp
        except (OSError, UnicodeDecodeError) as exc:
            self._token = self._stamp = None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not ASCII"
            raise TokenUnavailable(f"collector.token_file {self.path}: {reason}") from None
        return self._token


def _usable_token(text: str, path: Path) -> str:
    token = text.strip()
    if not token or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise TokenUnavailable(
            f"collector.token_file {path}: does not hold one token on one line "
            "(print it again with `kiosk admin rotate-token`)"
        )
    return token


# -- the client -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class CollectorClient:
    """HTTP to one collector. `async with CollectorClient(...) as client:` opens the session
    (and reads the CA file off the event loop); each call returns an outcome, never raises."""

    def __init__(
        self,
        base_url: str,
        token: TokenFile,
        *,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        offset: OffsetEstimator | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._ca_file = ca_file
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=timeout, sock_read=timeout)
        self.offset = offset if offset is not None else OffsetEstimator()
        self._clock = clock
        self._monotonic = monotonic
        self._session: aiohttp.ClientSession | None = None
        self.exchanges = 0

    async def __aenter__(self) -> CollectorClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Raises OSError / ssl.SSLError when the CA file cannot be used."""
        if self._session is not None:
            return
        tls: ssl.SSLContext | bool = True
        if self._base.startswith("https:"):
            tls = await asyncio.to_thread(_tls_context, self._ca_file)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=4, enable_cleanup_closed=True),
            timeout=self._timeout,
            headers={"User-Agent": f"kiosk/{__version__}"},
            raise_for_status=False,
            auto_decompress=True,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- the three exchanges of the spec --------------------------------------------------

    async def send_entries(self, body: bytes) -> EntriesOutcome:
        """POST one batch (`body` is the whole `{"entries": [...]}` document)."""
        answer = await self._exchange("POST", ENTRIES_PATH, body=body)
        if not isinstance(answer, _Answer):
            return answer
        if answer.status == 200:
            counts = _json_object(answer.body)
            return Stored(_count(counts.get("accepted")), _count(counts.get("duplicates")))
        error, detail, extra = _error_of(answer)
        if answer.status == 400:
            index = extra.get("index")
            if type(index) is int and index >= 0:
                return BadEntry(index, error, detail)
            return Rejected(400, error, f"{detail} (the answer names no entry index)")
        if answer.status == 413:
            return TooLarge(detail)
        return _other(answer, error, detail)

    async def send_heartbeat(self, members: Mapping[str, Any]) -> HeartbeatOutcome:
        body = json.dumps(members, separators=(",", ":"), allow_nan=False).encode()
        answer = await self._exchange("POST", HEARTBEAT_PATH, body=body)
        if not isinstance(answer, _Answer):
            return answer
        if 200 <= answer.status < 300:
            return Delivered()
        error, detail, _ = _error_of(answer)
        return _other(answer, error, detail)

    async def fetch_config(self, etag: str | None) -> ConfigOutcome:
        headers = {"If-None-Match": etag} if etag else {}
        answer = await self._exchange("GET", CONFIG_PATH, headers=headers)
        if not isinstance(answer, _Answer):
            return answer
        if answer.status == 304:
            return ConfigUnchanged()
        if answer.status == 200:
            try:
                raw = json.loads(answer.body)
            except ValueError as exc:
                return Rejected(200, "bad_document", f"configuration is not JSON ({exc})")
            if not isinstance(raw, dict):
                return Rejected(200, "bad_document", "configuration is not a JSON object")
            return ConfigFetched(raw, answer.headers.get("ETag"))
        error, detail, _ = _error_of(answer)
        return _other(answer, error, detail)

    # -- the boundary ---------------------------------------------------------------------

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Answer | Refused | RetryLater:
        try:
            token = self._token.read()
        except TokenUnavailable as exc:
            return Refused(None, "token_unavailable", str(exc))
        request_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        if body is not None:
            request_headers["Content-Type"] = "application/json"
        try:
            if self._session is None:
                await self.open()
            assert self._session is not None
            sent_at, started = self._clock(), self._monotonic()
            async with self._session.request(
                method,
                self._base + path,
                data=body,
                headers=request_headers,
                allow_redirects=False,
            ) as response:
                received_at = sent_at + (self._monotonic() - started)
                self._observe_clock(response.headers.get("Date"), sent_at, received_at)
                data = await _read_bounded(response, MAX_ANSWER_BYTES)
                if data is None:
                    return RetryLater(
                        "protocol", f"{method} {path}: answer over {MAX_ANSWER_BYTES}"
                    )
                self.exchanges += 1
                return _Answer(response.status, response.headers, data)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            return RetryLater("timeout", f"{method} {path}: no answer in time ({exc or 'timeout'})")
        except aiohttp.ClientConnectorCertificateError as exc:
            return RetryLater("tls", f"collector certificate not trusted: {exc.certificate_error}")
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            return RetryLater("tls", f"TLS with the collector failed: {exc}")
        except aiohttp.ClientConnectorError as exc:
            return RetryLater("unreachable", f"cannot connect to {self._base}: {exc.strerror}")
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientOSError,
            ConnectionError,
        ) as exc:
            return RetryLater("connection_lost", f"{method} {path}: {type(exc).__name__} {exc}")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return RetryLater("network", f"{method} {path}: {type(exc).__name__} {exc}")

    def _observe_clock(self, date: str | None, sent_at: float, received_at: float) -> None:
        server_date = parse_http_date(date)
        if server_date is not None:
            self.offset.observe(server_date=server_date, sent_at=sent_at, received_at=received_at)


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify the collector against `ca_file` when given (a private CA), else the system's."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _count(value: object) -> int | None:
    return value if type(value) is int else None


def _printable(text: str) -> str:
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return clean[:_DETAIL_CHARS]


def _error_of(answer: _Answer) -> tuple[str, str, dict[str, Any]]:
    """The spec's error body ({"error", "detail", ...}); a proxy's HTML page is summarised."""
    body = _json_object(answer.body)
    error = body.get("error")
    detail = body.get("detail")
    if isinstance(error, str):
        return _printable(error), _printable(detail if isinstance(detail, str) else ""), body
    text = answer.body[:_DETAIL_CHARS].decode("utf-8", "replace")
    return f"http_{answer.status}", _printable(text), {}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        moment = parse_http_date(value)
        return None if moment is None else max(0.0, moment - time.time())
    return seconds if seconds >= 0 else None


def _other(answer: _Answer, error: str, detail: str) -> Refused | Rejected | RetryLater:
    status = answer.status
    if status in (401, 403):
        return Refused(status, error, detail)
    if status in (408, 425, 429) or status >= 500:
        # A 408 means our body arrived too slowly for the collector's body timeout: on a slow
        # link, a timeout like our own, so the batch is halved rather than resent whole forever.
        reason = "server_error" if status >= 500 else "timeout" if status == 408 else "busy"
        return RetryLater(reason, f"{status} {error}: {detail}", _retry_after(answer.headers))
    if 300 <= status < 400:
        where = answer.headers.get("Location", "?")
        return Rejected(
            status, "redirect", f"the collector redirects to {where}; fix collector.url"
        )
    return Rejected(status, error, detail)
