"""Property tests: no text makes verification raise, and mutated or re-signed codes get the
verdict a small independent oracle expects.

They call `verify_vhc1` directly: the registry's `verify` has a last-resort guard that would
hide an exception, and the point here is that the VHC1 verifier needs none.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.codes import RevocationList, TrustList, verify
from kiosk.codes.issuing import issuer_key_from_seed, sign_vhc1_raw
from kiosk.codes.syntax import b64url_encode
from kiosk.codes.vhc1 import verify_vhc1
from kiosk.model import CodeFormat, Verdict

NOW = 1_700_000_000
KEY = issuer_key_from_seed(bytes(range(32)), kid="t-1", iss="test-health")
TRUST = TrustList((KEY.trusted_key,))
REVOCATION = RevocationList.of_holders([("test-health", "revoked-one")], updated=NOW)
CLAIMS: dict[str, Any] = {
    "iss": "test-health",
    "sub": "Q2hhbmdlTWVQbGVhc2U",
    "sta": "green",
    "iat": NOW - 3600,
    "exp": NOW + 3600,
}
VALID_TEXT = KEY.sign(CLAIMS)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_TO_DRAW = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SIGNING = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**150), max_value=10**150)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["green", "yellow", "red", "test-health", "abc_DEF-123"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def vhc1_verdict(text: str) -> Verdict:
    result = verify_vhc1(text, TRUST, REVOCATION, NOW)
    assert (result.claims is not None) == (
        result.verdict not in (Verdict.MALFORMED, Verdict.NOT_VHC)
    )
    return result.verdict


@FAST
@given(st.text())
def test_any_text_verifies_without_raising(text: str) -> None:
    verdict = vhc1_verdict(text)
    result = verify(text, TRUST, REVOCATION, NOW)
    if text.startswith("VHC1:"):
        assert result.format is CodeFormat.VHC1 and result.verdict is verdict
        assert verdict is not Verdict.VALID
    else:
        assert verdict is Verdict.NOT_VHC
        assert (result.format, result.verdict) == (CodeFormat.UNKNOWN, Verdict.UNKNOWN_FORMAT)


@FAST
@given(st.binary(max_size=1200), st.sampled_from(["utf-8", "latin-1"]))
def test_any_bytes_as_text_after_the_prefix(data: bytes, encoding: str) -> None:
    text = "VHC1:" + data.decode(encoding, errors="surrogateescape")
    assert vhc1_verdict(text) is not Verdict.VALID


@SLOW_TO_DRAW
@given(st.lists(st.from_regex(r"[A-Za-z0-9_-]{0,120}", fullmatch=True), min_size=1, max_size=4))
def test_any_base64url_parts(parts: list[str]) -> None:
    assert vhc1_verdict("VHC1:" + ".".join(parts)) is not Verdict.VALID


@SLOW_TO_DRAW
@given(json_values, json_values, st.binary(max_size=70))
def test_any_json_in_header_and_payload(header: Any, payload: Any, signature: bytes) -> None:
    parts = [b64url_encode(json.dumps(v).encode()) for v in (header, payload)]
    text = "VHC1:" + ".".join([*parts, b64url_encode(signature)])
    assert vhc1_verdict(text) is not Verdict.VALID


@st.composite
def mutations(draw: st.DrawFn) -> str:
    text = VALID_TEXT
    kind = draw(st.sampled_from(["flip", "insert", "delete", "replace"]))
    position = draw(st.integers(0, len(text) - 1))
    char = draw(st.characters() | st.sampled_from(list("AaZz09-_.=+/ :")))
    if kind == "flip":
        return (
            text[:position]
            + chr(ord(text[position]) ^ (1 << draw(st.integers(0, 6))))
            + (text[position + 1 :])
        )
    if kind == "insert":
        return text[:position] + char + text[position:]
    if kind == "delete":
        return text[:position] + text[position + 1 :]
    return text[:position] + char + text[position + 1 :]


@FAST
@given(mutations())
def test_a_changed_character_never_leaves_a_valid_code(text: str) -> None:
    verdict = vhc1_verdict(text)
    if text == VALID_TEXT:
        assert verdict is Verdict.VALID
    else:
        # Canonical base64url makes decoding one-to-one, so any change reaches the signature.
        assert verdict is not Verdict.VALID


def expected_verdict(claims: dict[str, Any]) -> Verdict:
    """health-code.md's table, written independently of kiosk.codes.vhc1."""
    iss, sub, sta = claims.get("iss"), claims.get("sub"), claims.get("sta")
    iat, exp = claims.get("iat"), claims.get("exp")
    well_formed = (
        isinstance(iss, str)
        and 1 <= len(iss) <= 64
        and not re.search("[\ud800-\udfff]", iss)
        and isinstance(sub, str)
        and re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", sub) is not None
        and sta in ("green", "yellow", "red")
        and type(iat) is int
        and type(exp) is int
        and iat < exp <= iat + 604_800
        and ("nat" not in claims or type(claims["nat"]) is int)
        and ("trv" not in claims or type(claims["trv"]) is bool)
    )
    if not well_formed:
        return Verdict.MALFORMED
    if iss != "test-health":
        return Verdict.UNKNOWN_KEY
    assert isinstance(iat, int) and isinstance(exp, int)
    if iat > NOW + 300:
        return Verdict.NOT_YET_VALID
    if exp <= NOW:
        return Verdict.EXPIRED
    if sub == "revoked-one":
        return Verdict.REVOKED
    return Verdict.VALID


near_now = st.integers(min_value=NOW - 700_000, max_value=NOW + 700_000)


@SIGNING
@given(
    st.sampled_from(["iss", "sub", "sta", "iat", "exp", "nat", "trv", "other"]),
    json_values | near_now | st.sampled_from(["revoked-one", "x" * 65, True, 1.0]),
    st.booleans(),
)
def test_re_signed_claims_get_the_oracles_verdict(name: str, value: Any, drop: bool) -> None:
    claims = dict(CLAIMS)
    if drop:
        claims.pop(name, None)
    else:
        claims[name] = value
    payload = json.dumps(claims).encode()  # NaN and Infinity come out as bare tokens
    header = json.dumps({"alg": "EdDSA", "kid": "t-1", "typ": "VHC1"}).encode()
    text = sign_vhc1_raw(KEY.private_key, header, payload)
    has_constant = re.search(rb"\bNaN\b|\bInfinity\b", payload) is not None
    expected = Verdict.MALFORMED if has_constant else expected_verdict(claims)
    if len(text) > 1024:
        expected = Verdict.MALFORMED
    assert vhc1_verdict(text) is expected


@SIGNING
@given(near_now, st.integers(min_value=-10, max_value=700_000), st.sampled_from(["", "sta"]))
def test_time_rules_and_repeated_members(iat: int, ttl: int, repeated: str) -> None:
    members = [
        '"iss":"test-health"',
        '"sub":"abc"',
        '"sta":"red"',
        f'"iat":{iat}',
        f'"exp":{iat + ttl}',
    ]
    if repeated:
        members.append('"sta":"red"')
    payload = ("{" + ",".join(members) + "}").encode()
    text = sign_vhc1_raw(KEY.private_key, b'{"kid":"t-1"}', payload)
    claims = {"iss": "test-health", "sub": "abc", "sta": "red", "iat": iat, "exp": iat + ttl}
    expected = Verdict.MALFORMED if repeated else expected_verdict(claims)
    assert vhc1_verdict(text) is expected
