"""Trust list (JWKS of Ed25519 keys, each speaking for one `iss`) and revocation list.

`parse_*` take already-decoded JSON (the collector's answer, a test's dict); `load_*` read a file.
Both raise DataFileError naming the file (or the document) and the member at fault, e.g.
`trust.json: keys[2].x: not 32 bytes of base64url`.

Choices health-code.md leaves open, made strict because a trust list decides who may vouch for a
person's health:
- A key that is not `kty` OKP / `crv` Ed25519, or that carries a private part (`d`), rejects the
  whole list, rather than being skipped: a skipped key would only show up later as `unknown_key`
  at the door. Members a JWK may carry besides (`use`, `alg`, ...) are ignored.
- Two keys with the same `kid` reject the list (which would sign would be a guess).
- A key's `iss` must be a possible claim value (1–64 characters).
- Revocation hashes are 64 hex digits; upper case is accepted and stored in lower case, the form
  `revocation_hash` computes, so a list written with upper-case hex still revokes.
- `updated` is a non-negative integer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.codes.syntax import (
    b64url_decode,
    b64url_encode,
    is_int,
    is_issuer_id,
    is_key_id,
    loads_strict,
)
from kiosk.errors import DataFileError

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One Ed25519 public key (`x`, 32 raw bytes) and the issuer it may sign for."""

    kid: str
    iss: str
    x: bytes
    public_key: Ed25519PublicKey = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        # Ed25519PublicKey is not hashable, so equality and hashing go by the raw bytes.
        object.__setattr__(self, "public_key", Ed25519PublicKey.from_public_bytes(self.x))

    @classmethod
    def from_public_key(cls, public_key: Ed25519PublicKey, *, kid: str, iss: str) -> TrustedKey:
        return cls(kid=kid, iss=iss, x=public_key.public_bytes_raw())

    def to_jwk(self) -> dict[str, str]:
        """The JWKS entry health-code.md describes."""
        x = b64url_encode(self.x)
        return {"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": x, "iss": self.iss}


@dataclass(frozen=True, slots=True)
class TrustList:
    """The keys a verifier trusts, looked up by `kid`. `TrustList()` is the valid empty list."""

    keys: tuple[TrustedKey, ...] = ()
    _by_kid: Mapping[str, TrustedKey] = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        by_kid = {key.kid: key for key in self.keys}
        if len(by_kid) != len(self.keys):
            raise ValueError("a trust list cannot hold two keys with the same kid")
        object.__setattr__(self, "_by_kid", MappingProxyType(by_kid))

    def get(self, kid: str) -> TrustedKey | None:
        return self._by_kid.get(kid)

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self.keys)

    def with_key(self, key: TrustedKey) -> TrustList:
        """This list plus `key` (ValueError when its kid is taken)."""
        return TrustList((*self.keys, key))

    def to_jwks(self) -> dict[str, Any]:
        """The list as health-code.md's JWKS (what `parse_trust_list` reads back)."""
        return {"keys": [key.to_jwk() for key in self.keys]}


def revocation_hash(iss: str, sub: str) -> str:
    """What a revocation list holds for a holder: hex SHA-256 of the UTF-8 bytes of `iss:sub`."""
    return hashlib.sha256(f"{iss}:{sub}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RevocationList:
    """Hashes of revoked holders and when the list was made. `RevocationList()` revokes nobody."""

    updated: int = 0
    revoked: frozenset[str] = frozenset()

    @classmethod
    def of_holders(cls, holders: Iterable[tuple[str, str]], *, updated: int) -> RevocationList:
        """A list revoking each `(iss, sub)` given (for issuers' tools and tests)."""
        return cls(updated, frozenset(revocation_hash(iss, sub) for iss, sub in holders))

    def is_revoked(self, iss: str, sub: str) -> bool:
        return revocation_hash(iss, sub) in self.revoked

    def to_json(self) -> dict[str, Any]:
        return {"updated": self.updated, "revoked": sorted(self.revoked)}


def _problem(where: str, message: str) -> DataFileError:
    return DataFileError(f"{where}: {message}")


def _parse_key(entry: object, at: str) -> TrustedKey:
    if not isinstance(entry, dict):
        raise ValueError(f"{at}: not a JSON object")
    if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        raise ValueError(
            f"{at}: kty {entry.get('kty')!r}, crv {entry.get('crv')!r} is not an Ed25519 key"
            " (kty must be 'OKP' and crv 'Ed25519')"
        )
    if "d" in entry:
        raise ValueError(f"{at}: holds a private key (d); a trust list holds public keys only")
    kid, iss, x = entry.get("kid"), entry.get("iss"), entry.get("x")
    if not is_key_id(kid):
        raise ValueError(f"{at}.kid: missing or not a non-empty string")
    if not is_issuer_id(iss):
        raise ValueError(f"{at}.iss: missing or not a string of 1 to 64 characters")
    raw = b64url_decode(x) if isinstance(x, str) else None
    if raw is None or len(raw) != 32:
        raise ValueError(f"{at}.x: not 32 bytes of base64url")
    return TrustedKey(kid=kid, iss=iss, x=raw)


def parse_trust_list(obj: object, *, source: str = "trust list") -> TrustList:
    """A TrustList from decoded JSON; DataFileError saying `source` and what is wrong."""
    if not isinstance(obj, dict) or not isinstance(obj.get("keys"), list):
        raise _problem(source, 'not a JWKS: expected a JSON object {"keys": [...]}')
    keys: list[TrustedKey] = []
    seen: set[str] = set()
    for index, entry in enumerate(obj["keys"]):
        try:
            key = _parse_key(entry, f"keys[{index}]")
        except ValueError as exc:
            raise _problem(source, str(exc)) from None
        if key.kid in seen:
            raise _problem(source, f"keys[{index}].kid: {key.kid!r} is given twice")
        seen.add(key.kid)
        keys.append(key)
    return TrustList(tuple(keys))


def parse_revocation_list(obj: object, *, source: str = "revocation list") -> RevocationList:
    """A RevocationList from decoded JSON; DataFileError saying `source` and what is wrong."""
    if not isinstance(obj, dict):
        raise _problem(source, 'expected a JSON object {"updated": ..., "revoked": [...]}')
    updated = obj.get("updated")
    if not is_int(updated) or updated < 0:
        raise _problem(source, "updated: missing or not a non-negative integer (Unix seconds)")
    revoked = obj.get("revoked")
    if not isinstance(revoked, list):
        raise _problem(source, "revoked: missing or not a list")
    hashes: set[str] = set()
    for index, item in enumerate(revoked):
        if not isinstance(item, str) or not _HEX64.fullmatch(item):
            raise _problem(source, f"revoked[{index}]: not a hex SHA-256 (64 hex digits)")
        hashes.add(item.lower())
    return RevocationList(updated, frozenset(hashes))


def read_json_file(path: Path, what: str) -> Any:
    """Strictly parsed JSON from `path`; DataFileError naming the file when it cannot be."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _problem(str(path), f"{what} not found") from None
    except IsADirectoryError:
        raise _problem(str(path), f"is a directory, not a {what}") from None
    except UnicodeDecodeError:
        raise _problem(str(path), f"{what} is not UTF-8 text") from None
    except OSError as exc:
        raise _problem(str(path), f"cannot read the {what} ({exc.strerror})") from None
    try:
        return loads_strict(text)
    except ValueError as exc:
        raise _problem(str(path), f"{what} is not strict JSON ({exc})") from None
    except RecursionError:
        raise _problem(str(path), f"{what} is nested too deeply") from None


def load_trust_list(path: Path | str) -> TrustList:
    path = Path(path)
    return parse_trust_list(read_json_file(path, "trust list"), source=str(path))


def load_revocation_list(path: Path | str) -> RevocationList:
    path = Path(path)
    return parse_revocation_list(read_json_file(path, "revocation list"), source=str(path))
