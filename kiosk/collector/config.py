"""The collector's configuration schema (config/collector.toml documents every key).

Every section rejects unknown keys, so a misspelt setting fails at start-up instead of silently
keeping its default. Durations accept "500ms", "10s", "15m", "24h", "7d" or a number of seconds.
The database URL may hold a password; it is never printed (`DatabaseUrl.display`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

from kiosk import config as config_loading
from kiosk.config import Duration
from kiosk.findings import SILENT_AFTER_S


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ServerSection(_Section):
    host: str = Field(default="127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port; 0 picks a free one")
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate chain for HTTPS (with tls_key)"
    )
    tls_key: Path | None = Field(default=None, description="PEM private key for HTTPS")
    header_timeout: Duration = Field(
        default=15.0,
        gt=0,
        le=300,
        description="a connection that has not sent a whole request head by then is closed",
    )
    body_timeout: Duration = Field(
        default=30.0, gt=0, le=600, description="a request body not received by then: 408"
    )
    shutdown_timeout: Duration = Field(
        default=5.0,
        ge=0,
        le=9,
        description="on SIGTERM, requests in flight get this long (the stop takes under 10 s)",
    )

    decode_processes: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description=(
            "worker processes that parse and check large entry batches (0: a thread of the "
            "collector process); unset: one per core beyond the first, at most 4"
        ),
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise PydanticCustomError(
                "tls_pair", "server.tls_cert and server.tls_key go together; set both or neither"
            )
        return self


class DatabaseUrl(str):
    """A `sqlite:////abs/path.db` or `postgresql://user@host/db` URL."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_url, serialization=core_schema.to_string_ser_schema()
        )

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.startswith("sqlite:") else "postgresql"

    @property
    def sqlite_path(self) -> Path:
        return Path(self[len("sqlite:///") :])

    @property
    def display(self) -> str:
        """The URL without its password, for logs and error messages."""
        return redact_url(self)


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def parse_database_url(value: object) -> DatabaseUrl:
    if not isinstance(value, str) or not value.strip():
        raise PydanticCustomError(
            "database_url",
            "give sqlite:////absolute/path.db or postgresql://user@host/dbname",
        )
    text = value.strip()
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///") or not text[len("sqlite:///") :].startswith("/"):
            raise PydanticCustomError(
                "database_url",
                "an SQLite URL is sqlite:/// followed by an absolute path, e.g. "
                "sqlite:////var/lib/kiosk-collector/collector.db (four slashes)",
            )
        if text.endswith("/"):
            raise PydanticCustomError("database_url", "names a folder; add a file name")
        return DatabaseUrl(text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(text)
        if not parts.path.strip("/"):
            raise PydanticCustomError(
                "database_url", "add the database name: postgresql://user@host/dbname"
            )
        return DatabaseUrl(text)
    raise PydanticCustomError(
        "database_url", "must start with sqlite:/// or postgresql:// (no other database)"
    )


def _validate_url(value: object) -> DatabaseUrl:
    # A PostgreSQL URL may hold a password: the error line shows the URL without it.
    try:
        return parse_database_url(value)
    except PydanticCustomError as exc:
        shown = redact_url(value) if isinstance(value, str) else value
        raise ValidationError.from_exception_data(
            "database_url",
            [InitErrorDetails(type=exc, loc=(), input=shown)],
        ) from None


class DatabaseSection(_Section):
    url: DatabaseUrl = Field(
        default=DatabaseUrl("sqlite:////var/lib/kiosk-collector/collector.db"),
        description="sqlite:////abs/path.db (embedded) or postgresql://user@host/db (a city)",
    )
    pool_size: int = Field(
        default=8, ge=1, le=200, description="PostgreSQL connections per collector process"
    )


class FindingsSection(_Section):
    silent_after: Duration = Field(
        default=float(SILENT_AFTER_S),
        gt=0,
        le=86400,
        description="a kiosk without a heartbeat for longer than this is a silent_kiosk finding",
    )


class LimitsSection(_Section):
    max_list_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        le=512 * 1024 * 1024,
        description="largest trust list or revocation list body an admin may PUT",
    )
    max_heartbeat_bytes: int = Field(
        default=64 * 1024, ge=1024, le=1024 * 1024, description="largest heartbeat body"
    )
    auth_failure_burst: int = Field(
        default=100,
        ge=0,
        le=100_000,
        description="failed authentications one client address may make in a row before 429; "
        "0 turns the limit off",
    )
    auth_failure_refill: Duration = Field(
        default=1.0, gt=0, le=3600, description="then one more failure allowed per this long"
    )


class CollectorConfig(_Section):
    server: ServerSection = ServerSection()
    database: DatabaseSection = DatabaseSection()
    findings: FindingsSection = FindingsSection()
    limits: LimitsSection = LimitsSection()

    def with_port(self, port: int | None, host: str | None = None) -> CollectorConfig:
        """The same configuration listening elsewhere (`--port` of the template unit)."""
        changes: dict[str, object] = {}
        if port is not None:
            changes["port"] = port
        if host is not None:
            changes["host"] = host
        if not changes:
            return self
        return self.model_copy(update={"server": self.server.model_copy(update=changes)})

    def with_base(self, base: Path) -> CollectorConfig:
        """Relative TLS paths taken from `base` (the configuration file's folder)."""
        server = self.server
        updates = {
            name: base / path
            for name in ("tls_cert", "tls_key")
            if (path := getattr(server, name)) is not None and not path.is_absolute()
        }
        if not updates:
            return self
        return self.model_copy(update={"server": server.model_copy(update=updates)})


def load_collector_config(path: Path) -> CollectorConfig:
    """Read and validate `path`; ConfigError lists every problem with key, value and fix."""
    return config_loading.load(CollectorConfig, path).with_base(path.resolve().parent)
