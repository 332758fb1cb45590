"""Loading TOML configuration into a validated schema, with errors that name key, value and fix.

Each wing declares its own pydantic schema (kiosk.door.config, kiosk.collector.config); this module
only reads the file once at start-up and turns validation failures into readable lines.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

from kiosk.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_DURATION_HINT = (
    'write a duration such as "500ms", "10s", "90m", "24h", "7d" or a number of seconds'
)


def parse_duration(value: object) -> float:
    """Seconds from a duration string ("500ms", "10s", "90m", "24h", "7d") or a number."""
    # bool is an int subclass; `pairing_window = true` is a mistake, not one second.
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "not a duration; " + _DURATION_HINT)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise PydanticCustomError("duration", "not a duration; " + _DURATION_HINT)
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise PydanticCustomError("duration", "not a duration; " + _DURATION_HINT)
    if not math.isfinite(seconds) or seconds < 0:
        raise PydanticCustomError("duration", "must be a finite, non-negative duration")
    return seconds


# A config field in seconds that also takes "10s", "15m", "24h"; both wings' schemas use it.
Duration = Annotated[float, BeforeValidator(parse_duration)]


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: `key.path = value: message`."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key; remove it or check its spelling")
            continue
        if error["type"] == "missing":
            lines.append(f"{key}: required but missing; add it")
            continue
        value = error.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{key} = {shown}: {message}")
    return lines


def validate(model: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise ConfigError(
            f"{source}: {len(problems)} configuration error(s):\n  " + "\n  ".join(problems),
            problems,
        ) from None


def load(model: type[ModelT], path: Path) -> ModelT:
    """Read and validate a TOML file; ConfigError lists every problem, never a traceback."""
    return validate(model, read_toml(path), str(path))
