"""The collector application's state, under typed keys (no module-level globals)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from kiosk.collector.auth import AuthGate
from kiosk.collector.batch_decoder import BatchDecoder
from kiosk.collector.config import CollectorConfig
from kiosk.collector.kiosk_config import KioskConfigService
from kiosk.collector.metrics import Metrics
from kiosk.collector.operations import Operation
from kiosk.collector.storage.base import Storage

CONFIG_KEY = web.AppKey("config", CollectorConfig)
CLOCK_KEY: web.AppKey[Callable[[], float]] = web.AppKey("clock")
METRICS_KEY = web.AppKey("metrics", Metrics)
STORAGE_KEY = web.AppKey("storage", Storage)
AUTH_KEY = web.AppKey("auth", AuthGate)
DECODER_KEY = web.AppKey("batch_decoder", BatchDecoder)
KIOSK_CONFIG_KEY = web.AppKey("kiosk_config", KioskConfigService)
# Every routed operation with its OpenAPI description; modules adding routes append theirs.
OPERATIONS_KEY = web.AppKey("operations", list[Operation])
