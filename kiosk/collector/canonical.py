"""RFC 8785 canonical JSON at ingest speed: the bytes an entry's `chain` hashes.

`kiosk.wire.canonical_json` (the `rfc8785` package) is exact but pure Python: about 70 µs per
entry here, which alone would cap ingest near 14k entries/s. For the values entries hold (ASCII
keys, strings, safe integers, plain decimals) RFC 8785 and the C encoder of `json` write the same
bytes once integral floats are written as integers, so this module takes that path and hands
anything else (large or tiny floats, big integers, non-ASCII keys) to `rfc8785` unchanged.
tests/test_collector_canonical.py checks the two agree on generated values.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_SAFE_INT = 2**53 - 1
# Within this range float.__repr__ and ECMAScript's Number::toString both write the shortest
# round-trip digits in plain decimal notation; outside it one of them switches to exponents.
_PLAIN_FLOAT_MIN = 1e-4
_PLAIN_FLOAT_MAX = 1e16

_ENCODER = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)


class CanonicalizationError(ValueError):
    """The value has no RFC 8785 form (NaN, an integer beyond 2**53, a lone surrogate...)."""


class _Slow(Exception):
    """The fast path does not cover this value."""


def _plain_scalar(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        if -_SAFE_INT <= value <= _SAFE_INT:
            return value
        raise _Slow
    if kind is float:
        magnitude = abs(value)
        if magnitude < _PLAIN_FLOAT_MAX and value.is_integer():
            return int(value)  # RFC 8785 writes 37.0 as 37 (and -0.0 as 0)
        if _PLAIN_FLOAT_MIN <= magnitude < _PLAIN_FLOAT_MAX:
            return value
        raise _Slow
    if kind is list:
        return [_plain(item) for item in value]
    if kind is dict:
        return _plain_object(value)
    raise _Slow


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    return _plain_scalar(value)


def _plain_object(value: dict[Any, Any]) -> dict[str, Any]:
    # Sorting by code point equals RFC 8785's UTF-16 order for ASCII keys only; joining the keys
    # checks them all in one call (and fails on a key that is not a string).
    try:
        if not "".join(value).isascii():
            raise _Slow
    except TypeError:
        raise _Slow from None
    changed: dict[str, Any] | None = None
    for key, item in value.items():
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int and -_SAFE_INT <= item <= _SAFE_INT:
            continue
        plain = _plain_scalar(item)
        if plain is not item:
            if changed is None:
                changed = dict(value)  # copied only when something must be rewritten
            changed[key] = plain
    return value if changed is None else changed


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 form of a JSON value; CanonicalizationError when it has none."""
    try:
        text = _ENCODER.encode(_plain(value))
        return text.encode("utf-8")
    except _Slow:
        pass
    except (UnicodeEncodeError, ValueError):
        pass  # a lone surrogate or a non-finite float: let rfc8785 give the verdict
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalizationError(str(exc)) from None
