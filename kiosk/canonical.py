"""RFC 8785 canonical JSON at speed: the bytes an entry's `chain` hashes, for the door's log
(through `kiosk.wire.canonical_json`) and the collector's ingest alike.

The `rfc8785` package is exact but pure Python: about 70 µs per entry here, which alone would
cap ingest near 14k entries/s and was a tenth of a door's append. For the values entries hold (ASCII
keys, strings, safe integers, plain decimals) RFC 8785 and the C encoder of `json` write the same
bytes once integral floats are written as integers, so this module takes that path and hands
anything else (large or tiny floats, big integers, non-ASCII keys) to `rfc8785` unchanged.
`entry_bytes` goes further for the commonest case, an entry with exactly the members the spec
defines that has passed `kiosk.wire.Entry`: its members' types and patterns are then known, so
their RFC 8785 form can be written out directly (five times faster than the encoder).
tests/test_collector_units.py checks all of these against `rfc8785` on generated values.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring as _quoted
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


# The members of an entry without its `chain`, in RFC 8785 order (code point order: ASCII keys).
_ENTRY_MEMBERS = frozenset(
    {
        "clock_offset_ms", "code_format", "code_status", "code_verdict", "decision", "id",
        "kiosk_id", "log_id", "mask", "override", "policy_version", "reasons", "seq", "subject",
        "subject_key_version", "temperature_c", "ts", "venue_id",
    }
)  # fmt: skip
_ENTRY_MEMBERS_AND_CHAIN = _ENTRY_MEMBERS | {"chain"}
_OVERRIDE_MEMBERS = frozenset(("by", "entry_id", "note"))


def _number(value: int | float | None) -> str:
    if value is None:
        return "null"
    if type(value) is float:
        if value.is_integer():
            return str(int(value))  # 37.0 is 37
        if not _PLAIN_FLOAT_MIN <= abs(value) < _PLAIN_FLOAT_MAX:
            raise _Slow
        return repr(value)
    if -_SAFE_INT <= value <= _SAFE_INT:
        return str(value)
    raise _Slow


def _optional(text: str | None) -> str:
    return "null" if text is None else _quoted(text)


def _entry_text(entry: dict[str, Any]) -> str:
    override = entry["override"]
    if override is None:
        override_text = "null"
    elif override.keys() == _OVERRIDE_MEMBERS:
        override_text = (
            f'{{"by":{_quoted(override["by"])},"entry_id":{_quoted(override["entry_id"])},'
            f'"note":{_quoted(override["note"])}}}'
        )
    else:
        raise _Slow
    # Identifiers, UUIDs, hex, reason codes, times and the enumerated members hold no character
    # JSON escapes (their patterns say so), but each is quoted by the same function regardless.
    return (
        f'{{"clock_offset_ms":{_number(entry["clock_offset_ms"])},'
        f'"code_format":{_quoted(entry["code_format"])},'
        f'"code_status":{_optional(entry["code_status"])},'
        f'"code_verdict":{_quoted(entry["code_verdict"])},'
        f'"decision":{_quoted(entry["decision"])},"id":{_quoted(entry["id"])},'
        f'"kiosk_id":{_quoted(entry["kiosk_id"])},"log_id":{_quoted(entry["log_id"])},'
        f'"mask":{_quoted(entry["mask"])},"override":{override_text},'
        f'"policy_version":{_quoted(entry["policy_version"])},'
        f'"reasons":[{",".join(map(_quoted, entry["reasons"]))}],'
        f'"seq":{_number(entry["seq"])},"subject":{_optional(entry["subject"])},'
        f'"subject_key_version":{_number(entry["subject_key_version"])},'
        f'"temperature_c":{_number(entry["temperature_c"])},'
        f'"ts":{_quoted(entry["ts"])},"venue_id":{_quoted(entry["venue_id"])}}}'
    )


def entry_bytes(entry: dict[str, Any]) -> bytes:
    """The RFC 8785 form of `entry` without its `chain` member, for an entry that passed
    `kiosk.wire.Entry`; CanonicalizationError when it has none."""
    if entry.keys() == _ENTRY_MEMBERS_AND_CHAIN:
        try:
            return _entry_text(entry).encode("utf-8")
        except _Slow:
            pass
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 gives the verdict
    return canonical_bytes({key: value for key, value in entry.items() if key != "chain"})
