"""VHC1, the venue health code of health-code.md: `VHC1:` + a compact JWS signed with Ed25519.

`verify_vhc1` follows the spec's table to the letter and never raises: each check below returns
the first failing verdict, in the spec's order. Claim checks are written here rather than left to
a JWT library, which would check in another order and accept floats for integers.

Order, and what each verdict covers:
1. `not_vhc`: the text does not start with `VHC1:` (case-sensitive).
2. `malformed`: over 1,024 characters (checked before anything is decoded); not three parts of
   strict base64url (see syntax.py: canonical, unpadded); header not a JSON object with a
   non-empty string `kid`; payload not a JSON object with valid claims. The signature part only
   has to be base64url here: an empty or short signature is `bad_signature` (spec vectors).
3. `unknown_key`: `kid` not trusted, or trusted for another `iss`. The payload is read before the
   signature is checked, so this and later verdicts carry the (then unauthenticated) claims.
4. `bad_signature`: Ed25519 over `<header>.<payload>` as sent, whatever `alg` says.
5. `not_yet_valid` (iat > now + 300), 6. `expired` (now >= exp), 7. `revoked`, 8. `valid`.

A `malformed` result carries no claims: there is nothing trustworthy to show of it.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature

from kiosk.codes.lists import RevocationList, TrustList
from kiosk.codes.syntax import (
    b64url_decode,
    is_int,
    is_issuer_id,
    is_subject_id,
    json_object_from_utf8,
)
from kiosk.model import Claims, CodeFormat, CodeResult, Status, Verdict

PREFIX = "VHC1:"
MAX_TEXT_CHARS = 1024
MAX_VALIDITY_S = 604_800  # exp <= iat + 7 days
IAT_SKEW_S = 300  # a code may be issued up to this much "after" the kiosk's now

_STATUSES = {status.value: status for status in Status}


def claims_from_payload(payload: dict[str, Any]) -> Claims | None:
    """The claims of a decoded payload, or None when one is missing, of a wrong type or out of
    range. Unknown claims are ignored. `nat` and `trv` may be absent, never null."""
    iss, sub, sta = payload.get("iss"), payload.get("sub"), payload.get("sta")
    iat, exp = payload.get("iat"), payload.get("exp")
    if not (is_issuer_id(iss) and is_subject_id(sub)):
        return None
    status = _STATUSES.get(sta) if isinstance(sta, str) else None
    if status is None:
        return None
    if not (is_int(iat) and is_int(exp) and iat < exp <= iat + MAX_VALIDITY_S):
        return None
    nat = payload.get("nat")
    if "nat" in payload and not is_int(nat):
        return None
    trv = payload.get("trv")
    if "trv" in payload and not isinstance(trv, bool):
        return None
    return Claims(iss=iss, sub=sub, sta=status, iat=iat, exp=exp, nat=nat, trv=trv)


def verify_vhc1(text: str, trust: TrustList, revocation: RevocationList, now: int) -> CodeResult:
    """The verdict of health-code.md for `text` at Unix time `now`; never raises.

    A text without the prefix gives format `unknown` and verdict `not_vhc` (another format may
    still claim it: that is the registry's business)."""
    if not text.startswith(PREFIX):
        return CodeResult(CodeFormat.UNKNOWN, Verdict.NOT_VHC)
    malformed = CodeResult(CodeFormat.VHC1, Verdict.MALFORMED)
    if len(text) > MAX_TEXT_CHARS:
        return malformed
    parts = text[len(PREFIX) :].split(".")
    if len(parts) != 3:
        return malformed
    header_b64, payload_b64, signature_b64 = parts
    header_bytes = b64url_decode(header_b64)
    payload_bytes = b64url_decode(payload_b64)
    signature = b64url_decode(signature_b64)
    if header_bytes is None or payload_bytes is None or signature is None:
        return malformed
    header = json_object_from_utf8(header_bytes)
    if header is None:
        return malformed
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return malformed
    payload = json_object_from_utf8(payload_bytes)
    claims = claims_from_payload(payload) if payload is not None else None
    if claims is None:
        return malformed

    def result(verdict: Verdict) -> CodeResult:
        return CodeResult(CodeFormat.VHC1, verdict, claims)

    key = trust.get(kid)
    if key is None or key.iss != claims.iss:
        return result(Verdict.UNKNOWN_KEY)
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    try:
        key.public_key.verify(signature, signing_input)
    except InvalidSignature:
        return result(Verdict.BAD_SIGNATURE)
    if claims.iat > now + IAT_SKEW_S:
        return result(Verdict.NOT_YET_VALID)
    if now >= claims.exp:
        return result(Verdict.EXPIRED)
    if revocation.is_revoked(claims.iss, claims.sub):
        return result(Verdict.REVOKED)
    return result(Verdict.VALID)
