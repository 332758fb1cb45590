"""Issuing VHC1 codes: issuer keys and signing, as an issuer (or a test, or the demo) does it.

Kiosks never sign; this is for `kiosk keys new` / `kiosk codes issue`, the demo's sample codes and
tests that need real codes. Pure: no files, no clock (key files are in `kiosk.codes.keyfiles`).

    key = new_issuer_key(kid="k1", iss="hlj-health")
    trust = TrustList((key.trusted_key,))
    text = key.issue(sub=random_sub(), status=Status.GREEN, iat=now, ttl_s=86_400)

`issue`/`vhc1_claims` refuse (ValueError) anything a verifier would call malformed, so an issued
code is always well formed. `sign_vhc1` and `sign_vhc1_raw` sign whatever they are given, for
tests that need signed codes with bad claims or bad JSON.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.codes.lists import TrustedKey
from kiosk.codes.syntax import b64url_encode, is_issuer_id, is_key_id, is_subject_id
from kiosk.codes.vhc1 import MAX_TEXT_CHARS, MAX_VALIDITY_S, PREFIX, claims_from_payload
from kiosk.model import Status

# 16 bytes = 128 random bits in 22 base64url characters; health-code.md asks for at least 96.
RANDOM_SUB_BYTES = 16
RECOMMENDED_MIN_SUB_CHARS = 16


def random_sub() -> str:
    """A fresh `sub` of 128 random bits (22 characters of the `sub` alphabet)."""
    return secrets.token_urlsafe(RANDOM_SUB_BYTES)


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign_vhc1_raw(private_key: Ed25519PrivateKey, header: bytes, payload: bytes) -> str:
    """`VHC1:` + the compact JWS of exactly these header and payload bytes, Ed25519-signed."""
    signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}"
    signature = private_key.sign(signing_input.encode("ascii"))
    return f"{PREFIX}{signing_input}.{b64url_encode(signature)}"


def sign_vhc1(private_key: Ed25519PrivateKey, kid: str, claims: Mapping[str, Any]) -> str:
    """Sign `claims` as they are (no checks) under header {"alg":"EdDSA","kid":kid,"typ":"VHC1"},
    both in compact JSON (UTF-8, members in the given order). ValueError for NaN or Infinity."""
    header = {"alg": "EdDSA", "kid": kid, "typ": "VHC1"}
    return sign_vhc1_raw(private_key, _compact_json(header), _compact_json(dict(claims)))


def vhc1_claims(
    *,
    iss: str,
    sub: str,
    status: Status | str,
    iat: int,
    ttl_s: int,
    nat: int | None = None,
    trv: bool | None = None,
) -> dict[str, Any]:
    """The payload of a well-formed code; ValueError saying which argument breaks health-code.md.
    `nat` and `trv` are left out when None."""
    if not is_issuer_id(iss):
        raise ValueError(f"iss {iss!r}: must be 1 to 64 characters")
    if not is_subject_id(sub):
        raise ValueError(f"sub {sub!r}: must be 1 to 64 characters of A-Z a-z 0-9 _ -")
    try:
        sta = Status(status)
    except ValueError:
        raise ValueError(f"status {status!r}: must be green, yellow or red") from None
    if type(iat) is not int:
        raise ValueError(f"iat {iat!r}: must be an integer (Unix seconds)")
    if type(ttl_s) is not int or not 0 < ttl_s <= MAX_VALIDITY_S:
        raise ValueError(f"ttl {ttl_s!r} s: must be 1 s to 7 days ({MAX_VALIDITY_S} s)")
    if nat is not None and type(nat) is not int:
        raise ValueError(f"nat {nat!r}: must be an integer (Unix seconds)")
    if trv is not None and not isinstance(trv, bool):
        raise ValueError(f"trv {trv!r}: must be true or false")
    claims: dict[str, Any] = {"iss": iss, "sub": sub, "sta": sta.value, "iat": iat}
    claims["exp"] = iat + ttl_s
    if nat is not None:
        claims["nat"] = nat
    if trv is not None:
        claims["trv"] = trv
    if claims_from_payload(claims) is None:  # the verifier's own rule has the last word
        raise ValueError(f"these claims would not verify: {claims}")
    return claims


@dataclass(frozen=True, slots=True)
class IssuerKey:
    """An issuer's Ed25519 private key with the `kid` it signs under and the `iss` it speaks for."""

    private_key: Ed25519PrivateKey = field(compare=False, repr=False)
    kid: str
    iss: str

    def __post_init__(self) -> None:
        if not is_key_id(self.kid):
            raise ValueError(f"kid {self.kid!r}: must be a non-empty string")
        if not is_issuer_id(self.iss):
            raise ValueError(f"iss {self.iss!r}: must be 1 to 64 characters")

    @property
    def trusted_key(self) -> TrustedKey:
        """The public half, as a trust list holds it."""
        return TrustedKey.from_public_key(self.private_key.public_key(), kid=self.kid, iss=self.iss)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """`sign_vhc1` under this key's kid: no checks on the claims."""
        return sign_vhc1(self.private_key, self.kid, claims)

    def issue(
        self,
        *,
        sub: str,
        status: Status | str,
        iat: int,
        ttl_s: int = 86_400,
        nat: int | None = None,
        trv: bool | None = None,
    ) -> str:
        """A well-formed VHC1 text for `sub` (ValueError when it could not be one)."""
        claims = vhc1_claims(
            iss=self.iss, sub=sub, status=status, iat=iat, ttl_s=ttl_s, nat=nat, trv=trv
        )
        text = self.sign(claims)
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(
                f"the code would be {len(text)} characters, over VHC1's {MAX_TEXT_CHARS}:"
                " use a shorter kid or iss"
            )
        return text


def new_issuer_key(*, kid: str, iss: str) -> IssuerKey:
    """A freshly generated Ed25519 key for `iss`, signing under `kid`."""
    return IssuerKey(Ed25519PrivateKey.generate(), kid=kid, iss=iss)


def issuer_key_from_seed(seed: bytes, *, kid: str, iss: str) -> IssuerKey:
    """The key of a 32-byte Ed25519 seed (vectors.json's test issuers give theirs as hex)."""
    return IssuerKey(Ed25519PrivateKey.from_private_bytes(seed), kid=kid, iss=iss)
