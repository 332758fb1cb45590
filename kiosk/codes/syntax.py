"""Strict decoding shared by codes, trust lists and key files: base64url, JSON and identifiers.

Every function here returns None (or False) for bad input instead of raising, so a verifier built
on them cannot be made to raise by what a QR code holds.

Base64url (health-code.md): only `A-Z a-z 0-9 - _`, no padding, no white space. We also reject
non-canonical encodings, whose unused trailing bits are not zero (RFC 4648 §3.5 allows it): each
value then has exactly one text, so a code cannot be varied into other texts that verify the same
(which would also defeat telling two shows of one code apart by their text).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, TypeGuard

_B64URL_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_SUB = re.compile(r"[A-Za-z0-9_-]{1,64}")

ISS_MAX_CHARS = 64


def b64url_decode(text: str) -> bytes | None:
    """The bytes of strict, unpadded, canonical base64url `text`; None when it is anything else."""
    if not _B64URL_ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if b64url_encode(data) != text:  # non-zero unused bits: not the canonical text of `data`
        return None
    return data


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _NotStrictJSON(ValueError):
    pass


def _no_repeated_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _NotStrictJSON("a member name is repeated")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise _NotStrictJSON(f"{name} is not JSON")


def loads_strict(text: str) -> Any:
    """`json.loads` that refuses NaN, Infinity and repeated member names (raises ValueError)."""
    return json.loads(text, object_pairs_hook=_no_repeated_names, parse_constant=_no_constants)


def json_object_from_utf8(data: bytes) -> dict[str, Any] | None:
    """The JSON object in UTF-8 `data`, strictly parsed; None for anything else."""
    try:
        value = loads_strict(data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) else None


def is_int(value: object) -> TypeGuard[int]:
    """A JSON integer: Python's bool is an int subclass, and JSON true is not an integer."""
    return type(value) is int


def is_issuer_id(value: object) -> TypeGuard[str]:
    """An `iss`: a string of 1–64 characters that is valid Unicode (no lone surrogates, which
    JSON's \\ud800 escapes can produce and which could not be hashed as UTF-8)."""
    if not isinstance(value, str) or not 1 <= len(value) <= ISS_MAX_CHARS:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_subject_id(value: object) -> TypeGuard[str]:
    """A `sub`: 1–64 characters of `A-Za-z0-9_-`."""
    return isinstance(value, str) and _SUB.fullmatch(value) is not None


def is_key_id(value: object) -> TypeGuard[str]:
    """A `kid`: a non-empty string of valid Unicode."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
