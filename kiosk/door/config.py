"""The door kiosk's configuration schema (config/kiosk.toml documents every key).

Every section rejects unknown keys so a misspelt setting fails at start-up instead of silently
keeping its default. Durations accept "500ms", "10s", "90m", "24h", "7d" or a number of seconds.
Paths may use environment variables ("$CREDENTIALS_DIRECTORY/collector-token" under systemd);
relative paths are taken from the configuration file's folder by `load_kiosk_config`.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from kiosk import config as config_loading
from kiosk.config import Duration
from kiosk.wire import ID_PATTERN

VenueType = Literal["general", "mall", "hospital", "elderly_care", "transport_hub"]
VENUE_TYPES: tuple[VenueType, ...] = (
    "general",
    "mall",
    "hospital",
    "elderly_care",
    "transport_hub",
)

def _expand_path(value: object) -> object:
    # Variables left unset stay literal; `kiosk config check` then says which one is missing.
    if isinstance(value, str):
        if not value.strip():
            raise PydanticCustomError("path", "empty path; give a file or folder path")
        return Path(os.path.expandvars(os.path.expanduser(value)))
    return value


ConfigPath = Annotated[Path, BeforeValidator(_expand_path)]
Identifier = Annotated[str, Field(pattern=ID_PATTERN, description="letters, digits, . _ : -")]


def _custom(message: str) -> PydanticCustomError:
    return PydanticCustomError("kiosk_config", message)


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach; any other name may be the network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def decode_key(text: str) -> bytes | None:
    """The 32 bytes of a base64url key, or None when `text` is not one."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}=?", text):
        return None
    try:
        key = base64.urlsafe_b64decode(text.rstrip("=") + "=")
    except ValueError:
        return None
    return key if len(key) == 32 else None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class KioskSection(_Section):
    id: Identifier = Field(description="this kiosk's id, as provisioned on the collector")
    venue_id: Identifier = Field(description="the venue (unit) this kiosk stands at")
    venue_type: VenueType = Field(
        default="general",
        description="selects the built-in entry policy when no collector sends one",
    )
    state_dir: ConfigPath = Field(
        default=Path("/var/lib/kiosk"),
        description="folder of the SQLite entry log and the cached collector configuration",
    )
    retention_days: int = Field(
        default=28,
        ge=1,
        le=3650,
        description="entries older than this and already sent are deleted",
    )
    max_entries: int = Field(
        default=1_000_000,
        ge=100,
        le=100_000_000,
        description="bound on the local log; when full and unsent, the door stops admitting",
    )
    pairing_window: Duration = Field(
        default=10.0, gt=0, le=300, description="how long a code, reading and mask state may pair"
    )
    repeat_after: Duration = Field(
        default=30.0, ge=0, le=3600, description="an allowed code opens no new visit for this long"
    )
    max_trust_age_hours: float = Field(
        default=48.0,
        gt=0,
        le=24 * 30,
        description="older trust lists deny every code (trust_stale)",
    )
    policy_dir: ConfigPath | None = Field(
        default=None,
        description="folder of <venue_type>.toml policies overriding the built-in ones",
    )


class CameraSection(_Section):
    source: int | str = Field(
        default=0,
        description="device index (0 = /dev/video0), a folder of images, a file, or rtsp:// URL",
    )
    fps: float = Field(
        default=5.0, gt=0, le=60, description="frames per second when replaying a folder"
    )
    loop: StrictBool = Field(default=False, description="replay a folder forever (demo)")
    stall_after: Duration = Field(
        default=5.0, gt=0, le=600, description="no frame for this long: camera fault, reopen it"
    )

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: object) -> object:
        if isinstance(value, bool):
            raise _custom("a device index, a path or an rtsp:// URL, not true/false")
        if isinstance(value, int):
            if value < 0:
                raise _custom("a device index is 0 or more")
            return value
        if isinstance(value, str):
            text = value.strip()
            if not text:
                raise _custom("empty; give a device index, a path or an rtsp:// URL")
            if text.isdigit():
                return int(text)
            if "://" in text:
                scheme = text.split("://", 1)[0].lower()
                if scheme not in ("rtsp", "rtsps", "http", "https"):
                    raise _custom("URL scheme must be rtsp, rtsps, http or https")
                return text
            return os.path.expandvars(os.path.expanduser(text))
        raise _custom("a device index, a path or an rtsp:// URL")

    @property
    def source_path(self) -> Path | None:
        """The folder or file the camera replays, or None for a device or a stream URL."""
        if isinstance(self.source, int) or "://" in self.source:
            return None
        return Path(self.source)


class SerialSettings(_Section):
    port: str = Field(
        default="/dev/ttyUSB0", min_length=1, description="serial device of the thermometer"
    )
    baudrate: int = Field(
        default=9600, ge=300, le=4_000_000, description="line speed, bits per second"
    )


class SimulatedThermometerSettings(_Section):
    fever_share: float = Field(
        default=0.1, ge=0, le=1, description="share of readings above 37.5 °C"
    )
    seed: int | None = Field(default=None, description="random seed; set it for a repeatable demo")
    interval: Duration | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="also measure every interval; unset: one reading per visit only",
    )
    readings: list[Annotated[float, Field(ge=-50, le=100, allow_inf_nan=False)]] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="readings given in turn, then again from the first (a scripted demo); "
        "unset: random",
    )


class ThermometerSection(_Section):
    source: Literal["serial", "http", "simulated"] = Field(
        default="http", description="serial device, POSTs to the local API, or simulated (demo)"
    )
    offset_c: float = Field(
        default=0.0, ge=-5, le=5, description="calibration: added to every reading, in °C"
    )
    serial: SerialSettings = SerialSettings()
    simulated: SimulatedThermometerSettings = SimulatedThermometerSettings()

    @field_validator("offset_c")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise _custom("must be a finite number of °C")
        return value


class SimulatedMaskSettings(_Section):
    off_share: float = Field(
        default=0.05, ge=0, le=1, description="share of visitors without a mask"
    )
    seed: int | None = Field(default=None, description="random seed; set it for a repeatable demo")
    states: list[Literal["on", "off"]] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="mask states given in turn, then again (a scripted demo); unset: random",
    )


class MaskSection(_Section):
    source: Literal["http", "attendant", "simulated"] = Field(
        default="attendant",
        description="a detector POSTing to the local API, the attendant's keys, or simulated",
    )
    simulated: SimulatedMaskSettings = SimulatedMaskSettings()


class LocalApiSection(_Section):
    host: str = Field(
        default="127.0.0.1", min_length=1, description="address the door page listens on"
    )
    port: int = Field(
        default=8380, ge=0, le=65535, description="TCP port; 0 picks a free one (tests)"
    )
    device_token: SecretStr | None = Field(
        default=None, description="Bearer token every POST needs; required off loopback"
    )
    attendant_pin: SecretStr | None = Field(
        default=None, description="4–12 digits an attendant types to override a deny"
    )
    attendant_token: SecretStr | None = Field(
        default=None, description="a longer secret that also authorises overrides (for a tablet)"
    )

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)

    @field_validator("device_token", "attendant_token", mode="before")
    @classmethod
    def _long_secret(cls, value: object) -> str | None:
        text = _secret_text(value)
        if text is not None and len(text) < 16:
            raise _hidden("too short to resist guessing; use at least 16 random characters")
        return text

    @field_validator("attendant_pin", mode="before")
    @classmethod
    def _pin(cls, value: object) -> str | None:
        # `attendant_pin = 4711` without quotes is the natural way to write a PIN in TOML.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        text = _secret_text(value)
        if text is not None and not re.fullmatch(r"\d{4,12}", text):
            raise _hidden("must be 4 to 12 digits")
        return text

    @field_validator("device_token")
    @classmethod
    def _token_off_loopback(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        host = info.data.get("host")
        if value is None and isinstance(host, str) and not is_loopback_host(host):
            raise _custom(
                f"local_api.device_token is required because local_api.host = {host!r} is not a "
                "loopback address: anyone on the network could otherwise post readings; set a "
                "random token of at least 16 characters, or listen on 127.0.0.1"
            )
        return value


class CollectorSection(_Section):
    url: str | None = Field(default=None, description="collector base URL; unset: standalone kiosk")
    token_file: ConfigPath | None = Field(
        default=None, description="file holding this kiosk's collector token (one line)"
    )
    ca_file: ConfigPath | None = Field(
        default=None, description="PEM CA bundle to verify the collector's TLS certificate"
    )
    allow_plain_http: StrictBool = Field(
        default=False, description="permit http:// to a non-loopback collector (tests only)"
    )
    sync_interval: Duration = Field(
        default=10.0, ge=1, le=3600, description="how often unsent entries are pushed"
    )
    heartbeat_interval: Duration = Field(
        default=30.0, ge=5, le=60, description="the collector expects one at least every minute"
    )
    config_interval: Duration = Field(
        default=300.0, ge=10, le=86400, description="how often policy and trust lists are refreshed"
    )
    timeout: Duration = Field(default=10.0, gt=0, le=120, description="per-request network timeout")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _custom("must be an http:// or https:// URL such as https://collector.example")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _cross(self) -> CollectorSection:
        problems: list[InitErrorDetails] = []
        if self.url is not None:
            host = urlsplit(self.url).hostname or ""
            if (
                urlsplit(self.url).scheme == "http"
                and not is_loopback_host(host)
                and not self.allow_plain_http
            ):
                problems.append(
                    _problem(
                        ("url",),
                        self.url,
                        "plain http would send the token and pseudonym key in clear; use "
                        "https:// (or allow_plain_http = true on a closed test network)",
                    )
                )
            if self.token_file is None:
                problems.append(
                    _problem(
                        ("token_file",),
                        None,
                        "required when collector.url is set: the file holding this kiosk's token",
                    )
                )
        _raise_if(problems, "collector")
        return self


class StandaloneSection(_Section):
    pseudonym_key: SecretStr | None = Field(
        default=None, description="the deployment's pseudonym key, 32 bytes in base64url"
    )
    pseudonym_key_file: ConfigPath | None = Field(
        default=None,
        description="a file holding the pseudonym key instead (keeps it out of this file)",
    )
    pseudonym_key_version: int = Field(default=1, ge=1, description="logged with every pseudonym")
    trust_list: ConfigPath | None = Field(
        default=None, description="JWKS of the code issuers' keys"
    )
    revocation_list: ConfigPath | None = Field(default=None, description="revoked codes (optional)")
    policy_version: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="overrides the policy's own version label",
    )

    @field_validator("pseudonym_key", mode="before")
    @classmethod
    def _key(cls, value: object) -> str | None:
        text = _secret_text(value)
        if text is not None and decode_key(text) is None:
            raise _hidden(
                "must be 32 bytes in base64url (43 characters); make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return text

    @model_validator(mode="after")
    def _one_key(self) -> StandaloneSection:
        if self.pseudonym_key is not None and self.pseudonym_key_file is not None:
            _raise_if(
                [
                    _problem(
                        ("pseudonym_key_file",),
                        str(self.pseudonym_key_file),
                        "give pseudonym_key or pseudonym_key_file, not both",
                    )
                ],
                "standalone",
            )
        return self


def _hidden(message: str) -> ValidationError:
    # Error lines print the offending value; a secret's value must not reach a terminal or log.
    return ValidationError.from_exception_data("secret", [_problem((), "<hidden>", message)])


def _secret_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise _hidden("must be a string in quotes")


def _problem(loc: tuple[str, ...], value: Any, message: str) -> InitErrorDetails:
    return InitErrorDetails(type=_custom(message), loc=loc, input=value)


def _raise_if(problems: list[InitErrorDetails], title: str) -> None:
    # Raised from inside a validator, pydantic nests these under the section's own key path, so
    # each line names the exact key (`collector.token_file`) instead of the whole section.
    if problems:
        raise ValidationError.from_exception_data(title, problems)


class KioskConfig(_Section):
    kiosk: KioskSection
    camera: CameraSection = CameraSection()
    thermometer: ThermometerSection = ThermometerSection()
    mask: MaskSection = MaskSection()
    local_api: LocalApiSection = LocalApiSection()
    collector: CollectorSection = CollectorSection()
    standalone: StandaloneSection = StandaloneSection()

    @property
    def standalone_mode(self) -> bool:
        return self.collector.url is None

    @model_validator(mode="after")
    def _standalone_needs(self) -> KioskConfig:
        if not self.standalone_mode:
            return self
        problems: list[InitErrorDetails] = []
        alone = self.standalone
        if alone.pseudonym_key is None and alone.pseudonym_key_file is None:
            problems.append(
                _problem(
                    ("standalone", "pseudonym_key"),
                    None,
                    "required when collector.url is not set (a standalone kiosk has nobody to "
                    "send it one); set standalone.pseudonym_key or standalone.pseudonym_key_file",
                )
            )
        if alone.trust_list is None:
            problems.append(
                _problem(
                    ("standalone", "trust_list"),
                    None,
                    "required when collector.url is not set: without the issuers' keys no code "
                    "can be verified and every visitor would be turned away",
                )
            )
        _raise_if(problems, "KioskConfig")
        return self

    def with_base(self, base: Path) -> KioskConfig:
        """The same configuration with relative paths taken from `base` (the file's folder)."""

        def fix(path: Path | None) -> Path | None:
            return None if path is None or path.is_absolute() else base / path

        def update(section: BaseModel, names: tuple[str, ...]) -> dict[str, Any]:
            changes = {}
            for name in names:
                fixed = fix(getattr(section, name))
                if fixed is not None:
                    changes[name] = fixed
            return changes

        kiosk = self.kiosk.model_copy(update=update(self.kiosk, ("state_dir", "policy_dir")))
        collector = self.collector.model_copy(
            update=update(self.collector, ("token_file", "ca_file"))
        )
        standalone = self.standalone.model_copy(
            update=update(self.standalone, ("pseudonym_key_file", "trust_list", "revocation_list"))
        )
        camera = self.camera
        source = camera.source_path
        if source is not None and not source.is_absolute():
            camera = camera.model_copy(update={"source": str(base / source)})
        return self.model_copy(
            update={
                "kiosk": kiosk,
                "collector": collector,
                "standalone": standalone,
                "camera": camera,
            }
        )


def load_kiosk_config(path: Path) -> KioskConfig:
    """Read, validate and anchor relative paths at the file's folder; ConfigError lists problems."""
    return config_loading.load(KioskConfig, path).with_base(path.resolve().parent)


def check_referenced_files(config: KioskConfig) -> tuple[list[str], list[str]]:
    """Files and folders the configuration names but that are not there, one line each, and
    notes on paths that can only be checked where an environment variable they use is set."""
    checks: list[tuple[str, Path | None, str]] = [
        ("collector.token_file", config.collector.token_file, "file"),
        ("collector.ca_file", config.collector.ca_file, "file"),
        ("standalone.pseudonym_key_file", config.standalone.pseudonym_key_file, "file"),
        ("standalone.trust_list", config.standalone.trust_list, "file"),
        ("standalone.revocation_list", config.standalone.revocation_list, "file"),
        ("kiosk.policy_dir", config.kiosk.policy_dir, "dir"),
        ("camera.source", config.camera.source_path, "any"),
    ]
    problems: list[str] = []
    notes: list[str] = []
    for key, path, kind in checks:
        if path is None:
            continue
        text = str(path)
        unset = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text)
        if unset is not None:
            notes.append(
                f"{key} = {text!r}: ${unset.group(1)} is not set here; it is set inside the "
                "systemd service (LoadCredential=), so this file is checked only there"
            )
            continue
        if kind == "dir" and not path.is_dir():
            problems.append(f"{key} = {text!r}: no such folder; create it or fix the path")
        elif kind == "file" and not path.is_file():
            problems.append(f"{key} = {text!r}: no such file; create it or fix the path")
        elif kind == "any" and not path.exists():
            problems.append(f"{key} = {text!r}: no such file or folder; fix the path")
    return problems, notes
