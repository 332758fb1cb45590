"""What the fuzz, bad-input, security and reliability tests of issue 8 share (no tests here).

- `Target`: one thing fuzzed, its promise as a `check` that raises AssertionError when broken, a
  hypothesis strategy of structured inputs and a mapping from raw bytes (for atheris). The tests
  run each target for a few seconds; `bench/fuzz.py` runs the same targets for long.
- `LiveCollector`: a real collector app (`build_app`) serving on 127.0.0.1 from a thread with its
  own event loop, provisioned like `collector_helpers.provision`, for synchronous clients
  (hypothesis, schemathesis, raw sockets).
- `record_figures`: what a test measured, as tests/artifacts/reliability-<name>.json, for the
  README's "Reliability" table.
- JSON strategies: any JSON value, including what only JSON text can say (NaN, 1e999, escapes).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from collector_helpers import FakeClock, Provisioned, provision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.collector.app import build_app, server_settings
from kiosk.collector.config import CollectorConfig
from kiosk.collector.keys import STORAGE_KEY
from kiosk.collector.storage.base import Storage

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SOAK = bool(os.environ.get("KIOSK_SOAK"))
T = TypeVar("T")


def record_figures(name: str, figures: dict[str, Any], **labels: str) -> Path:
    """Write what a test measured to tests/artifacts/reliability-<name>[-<label>...].json."""
    ARTIFACTS.mkdir(exist_ok=True)
    suffix = "".join(f"-{value}" for value in labels.values())
    path = ARTIFACTS / f"reliability-{name}{suffix}.json"
    record = {
        "name": name,
        **labels,
        "figures": figures,
        "soak": SOAK,
        "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


# -- fuzz targets -------------------------------------------------------------------------------


@dataclass
class Target:
    """One fuzzed interface and its promise."""

    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]  # raises AssertionError (or anything) when the promise breaks
    from_bytes: Callable[[bytes], Any]  # an input from raw bytes, for coverage-guided fuzzing
    tried: int = field(default=0, init=False)

    def run(self, value: Any) -> None:
        self.tried += 1
        self.check(value)


def run_target(target: Target, examples: int) -> int:
    """Hypothesis over `target.strategy` for `examples` inputs; the inputs tried so far."""

    @fuzz_settings(examples)
    @given(target.strategy)
    def fuzz(value: Any) -> None:
        target.run(value)

    fuzz()
    return target.tried


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )


def short_examples(default: int) -> int:
    """Examples per target in `make test`; KIOSK_FUZZ_EXAMPLES overrides (bench/fuzz.py is the
    long run)."""
    return int(os.environ.get("KIOSK_FUZZ_EXAMPLES", default))


# -- JSON ----------------------------------------------------------------------------------------

json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="ascii"), max_size=8),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
# Texts that decode to values no Python literal gives (or that no decoder should accept).
RAW_JSON = [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-400", "-0", "0.1e1",
    "12345678901234567890123456789", '"\\u0000"', '"\\ud800"', '"\\udfff\\ud800"',
    '"\\ud83d\\ude00"', '"a\\u202eb"', "[" * 40 + "]" * 40, "[" * 5000,
    '{"a":' * 50 + "1" + "}" * 50,
    "", "{", "[1,]", '{"a":1,"a":2}', "\ufeff{}", "nul", "tru", "0x10", "01", "+1", ".5",
]


def dumps_loose(value: Any) -> str:
    """JSON text of `value`; NaN and the infinities as JavaScript writes them."""
    return json.dumps(value, allow_nan=True, ensure_ascii=False)


@st.composite
def raw_substituted(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> str:
    """A JSON document from `base` in which one string value is swapped for a raw JSON text."""
    marker = "\x01RAW\x01"
    value = draw(base)
    text = dumps_loose(value)
    raw = draw(st.sampled_from(RAW_JSON))
    quoted = json.dumps(marker, ensure_ascii=False)
    if isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value)))
        text = dumps_loose({**value, key: marker})
    elif isinstance(value, list) and value:
        index = draw(st.integers(0, len(value) - 1))
        text = dumps_loose([*value[:index], marker, *value[index + 1 :]])
    else:
        return raw
    return text.replace(quoted, raw)


def decode_bytes(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# -- a collector on a thread ---------------------------------------------------------------------


class LiveCollector:
    """`build_app(config)` served by aiohttp on 127.0.0.1 (a free port) from a thread of its own;
    `request` is a plain blocking HTTP exchange over one kept-alive connection."""

    def __init__(
        self,
        config: CollectorConfig,
        *,
        clock: Callable[[], float] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        provisioned: bool = True,
    ) -> None:
        self.config = config
        self.clock = clock or FakeClock()
        self._ssl = ssl_context
        self._provision = provisioned
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.port = 0
        self.provisioned: Provisioned | None = None
        self._local = threading.local()

    def __enter__(self) -> LiveCollector:
        self._thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_connection()
        try:
            self.call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _start(self) -> None:
        self.app = build_app(self.config, clock=self.clock)
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, **server_settings(self.config)
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        if self._provision:
            self.provisioned = await provision(self.app[STORAGE_KEY], self.clock())

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run `coroutine` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    @property
    def storage(self) -> Storage:
        assert self.app is not None
        return self.app[STORAGE_KEY]

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    def auth(self, name: str) -> dict[str, str]:
        assert self.provisioned is not None
        return self.provisioned.auth(name)

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self._local.connection = connection
        return connection  # type: ignore[no-any-return]

    def close_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        sent = {"Content-Type": "application/json", **(headers or {})}
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request(method, path, body=body, headers=sent)
                response = connection.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                self.close_connection()  # the server closed a kept-alive connection: once more
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close_connection()
            return response.status, dict(response.getheaders()), data
        raise AssertionError("unreachable")

    def json(self, data: bytes) -> Any:
        return json.loads(data) if data else None


def sqlite_config(folder: Path, **server: Any) -> CollectorConfig:
    return CollectorConfig.model_validate(
        {"server": server, "database": {"url": f"sqlite:///{folder}/collector.db"}}
    )
