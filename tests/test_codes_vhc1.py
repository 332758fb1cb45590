"""VHC1 verification on codes these tests sign themselves: every verdict, its boundaries, the
order of checks, and the strictness rules (so coverage holds without ../shared)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from kiosk.codes import RevocationList, TrustList, verify
from kiosk.codes.issuing import IssuerKey, issuer_key_from_seed, sign_vhc1_raw
from kiosk.codes.registry import CodeFormatEntry
from kiosk.codes.syntax import b64url_encode
from kiosk.codes.vhc1 import MAX_TEXT_CHARS, verify_vhc1
from kiosk.model import Claims, CodeFormat, CodeResult, Status, Verdict

NOW = 1_700_000_000
KEY = issuer_key_from_seed(bytes(range(32)), kid="t-1", iss="test-health")
OTHER = issuer_key_from_seed(bytes(range(1, 33)), kid="o-1", iss="other-health")
IMPOSTOR = issuer_key_from_seed(bytes(range(2, 34)), kid="t-1", iss="test-health")
TRUST = TrustList((KEY.trusted_key, OTHER.trusted_key))
REVOKED_SUB = "revoked-holder-0001"
REVOCATION = RevocationList.of_holders([("test-health", REVOKED_SUB)], updated=NOW - 60)
HEADER = {"alg": "EdDSA", "kid": "t-1", "typ": "VHC1"}


def claims(**override: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": "test-health",
        "sub": "Q2hhbmdlTWVQbGVhc2U",
        "sta": "green",
        "iat": NOW - 3600,
        "exp": NOW + 3600,
    }
    base.update(override)
    return {name: value for name, value in base.items() if value is not DROP}


DROP = object()


def check(text: str) -> Verdict:
    return verify_vhc1(text, TRUST, REVOCATION, NOW).verdict


def raw(header: bytes, payload: bytes, key: IssuerKey = KEY) -> str:
    return sign_vhc1_raw(key.private_key, header, payload)


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def test_a_valid_code_gives_its_claims() -> None:
    text = KEY.sign(claims(sta="yellow", nat=NOW - 7200, trv=False))
    result = verify(text, TRUST, REVOCATION, NOW)
    assert result == CodeResult(
        CodeFormat.VHC1,
        Verdict.VALID,
        Claims(
            "test-health",
            "Q2hhbmdlTWVQbGVhc2U",
            Status.YELLOW,
            NOW - 3600,
            NOW + 3600,
            NOW - 7200,
            False,
        ),
    )


def test_a_second_trusted_issuer_and_unknown_claims() -> None:
    text = OTHER.sign({**claims(iss="other-health"), "note": [1.5, None, {"x": "y"}]})
    assert check(text) is Verdict.VALID


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"iat": NOW + 300, "exp": NOW + 900}, Verdict.VALID),
        ({"iat": NOW + 301, "exp": NOW + 900}, Verdict.NOT_YET_VALID),
        ({"iat": NOW - 10, "exp": NOW + 1}, Verdict.VALID),
        ({"iat": NOW - 10, "exp": NOW}, Verdict.EXPIRED),
        ({"iat": NOW - 604_800, "exp": NOW + 1}, Verdict.MALFORMED),
        ({"iat": NOW - 604_799, "exp": NOW + 1}, Verdict.VALID),
        ({"iat": NOW, "exp": NOW}, Verdict.MALFORMED),
        ({"iat": NOW, "exp": NOW - 1}, Verdict.MALFORMED),
        ({"sub": REVOKED_SUB}, Verdict.REVOKED),
        ({"sub": REVOKED_SUB, "exp": NOW}, Verdict.EXPIRED),
        ({"sub": REVOKED_SUB, "iat": NOW + 301, "exp": NOW + 900}, Verdict.NOT_YET_VALID),
        ({"iss": "other-health"}, Verdict.UNKNOWN_KEY),  # t-1 speaks for test-health only
    ],
)
def test_time_revocation_and_issuer_rules(override: dict[str, Any], expected: Verdict) -> None:
    assert check(KEY.sign(claims(**override))) is expected


@pytest.mark.parametrize(
    "override",
    [
        {"iss": DROP},
        {"iss": ""},
        {"iss": "i" * 65},
        {"iss": 7},
        {"sub": DROP},
        {"sub": ""},
        {"sub": "s" * 65},
        {"sub": "a b"},
        {"sub": "ü"},
        {"sub": "a.b"},
        {"sub": ["a"]},
        {"sta": DROP},
        {"sta": "GREEN"},
        {"sta": "blue"},
        {"sta": ["green"]},
        {"sta": None},
        {"iat": DROP},
        {"iat": float(NOW)},
        {"iat": True},
        {"iat": str(NOW)},
        {"iat": None},
        {"exp": DROP},
        {"exp": NOW + 3600.0},
        {"exp": False},
        {"exp": [NOW]},
        {"nat": None},
        {"nat": 1.0},
        {"nat": True},
        {"nat": "1"},
        {"trv": None},
        {"trv": 1},
        {"trv": "true"},
        {"trv": 0},
    ],
)
def test_claims_of_wrong_type_or_range_are_malformed(override: dict[str, Any]) -> None:
    result = verify_vhc1(KEY.sign(claims(**override)), TRUST, REVOCATION, NOW)
    assert result == CodeResult(CodeFormat.VHC1, Verdict.MALFORMED, None)


def test_an_iss_that_is_not_unicode_is_malformed() -> None:
    # json.dumps escapes the lone surrogate as \ud800, which JSON allows and UTF-8 cannot hold.
    payload = json.dumps(claims(iss="test-\ud800")).encode("ascii")
    assert check(raw(compact(HEADER), payload)) is Verdict.MALFORMED


def test_sub_at_the_limits_and_unicode_iss_are_fine() -> None:
    assert check(KEY.sign(claims(sub="A" * 64))) is Verdict.VALID
    assert check(KEY.sign(claims(sub="-"))) is Verdict.VALID
    unicode_key = issuer_key_from_seed(bytes(32), kid="u", iss="黑龙江-健康")
    trust = TrustList((unicode_key.trusted_key,))
    text = unicode_key.sign(claims(iss="黑龙江-健康"))
    assert verify(text, trust, RevocationList(), NOW).verdict is Verdict.VALID


def test_huge_integers_are_integers() -> None:
    huge = 10**200
    assert check(KEY.sign(claims(iat=huge, exp=huge + 1))) is Verdict.NOT_YET_VALID
    assert check(KEY.sign(claims(iat=-huge, exp=-huge + 1))) is Verdict.EXPIRED
    assert check(KEY.sign(claims(nat=-huge))) is Verdict.VALID
    assert check(KEY.sign(claims(iat=huge, exp=huge + 604_801))) is Verdict.MALFORMED


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            b'{"iss":"test-health","sub":"s","sta":"green","sta":"green","iat":1,"exp":2}',
            Verdict.MALFORMED,
        ),
        (b'{"iss":"test-health","sub":"s","sta":"green","iat":NaN,"exp":2}', Verdict.MALFORMED),
        (
            b'{"iss":"test-health","sub":"s","sta":"green","iat":1,"exp":Infinity}',
            Verdict.MALFORMED,
        ),
        (
            b'{"iss":"test-health","sub":"s","sta":"green","iat":1,"exp":2,"x":-Infinity}',
            Verdict.MALFORMED,
        ),
        # A repeated name is malformed wherever it is, even inside an ignored claim.
        (
            b'{"iss":"test-health","sub":"s","sta":"green","iat":1,"exp":2,"x":{"a":1,"a":1}}',
            Verdict.MALFORMED,
        ),
        (b'{"iss":"test-health","sub":"s","sta":"green","iat":1,"exp":2e0}', Verdict.MALFORMED),
        (
            b'{"iss":"test-health","sub":"s","sta":"green","iat":1,"exp":2,"x":1e400}',
            Verdict.EXPIRED,
        ),
        (
            b'\xef\xbb\xbf{"iss":"test-health","sub":"s","sta":"green","iat":1,"exp":2}',
            Verdict.MALFORMED,
        ),
        (
            '{"iss":"test-health","sub":"s","sta":"green","iat":1,"exp":2}'.encode("utf-16"),
            Verdict.MALFORMED,
        ),
        (b'{"iss":"test-h\xffealth","sub":"s","sta":"green","iat":1,"exp":2}', Verdict.MALFORMED),
        (b' \n{"iss":"test-health","sub":"s","sta":"green","iat":1,"exp":2}\t', Verdict.EXPIRED),
        (b'[{"iss":"test-health","sub":"s","sta":"green","iat":1,"exp":2}]', Verdict.MALFORMED),
        (b'"text"', Verdict.MALFORMED),
        (b"", Verdict.MALFORMED),
        (b"[" * 300 + b"]" * 300, Verdict.MALFORMED),
    ],
)
def test_payload_json_is_strict(payload: bytes, expected: Verdict) -> None:
    text = raw(compact(HEADER), payload)
    assert len(text) <= MAX_TEXT_CHARS
    assert check(text) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (compact({"alg": "EdDSA", "kid": "t-1"}), Verdict.VALID),
        (compact({"kid": "t-1"}), Verdict.VALID),
        (compact({"alg": "Ed25519", "kid": "t-1", "typ": "VHC1"}), Verdict.VALID),
        (compact({"alg": "none", "kid": "t-1", "typ": "JWT", "x": [1, 2]}), Verdict.VALID),
        (compact({"alg": "EdDSA", "kid": "nobody"}), Verdict.UNKNOWN_KEY),
        (compact({"alg": "EdDSA", "kid": "\ud800"}), Verdict.UNKNOWN_KEY),
        (compact({"alg": "EdDSA"}), Verdict.MALFORMED),
        (compact({"alg": "EdDSA", "kid": ""}), Verdict.MALFORMED),
        (compact({"alg": "EdDSA", "kid": 1}), Verdict.MALFORMED),
        (compact({"alg": "EdDSA", "kid": ["t-1"]}), Verdict.MALFORMED),
        (compact({"alg": "EdDSA", "kid": None}), Verdict.MALFORMED),
        (compact(["t-1"]), Verdict.MALFORMED),
        (b'{"kid":"t-1","kid":"t-1"}', Verdict.MALFORMED),
        (b'{"kid":"t-1","alg":NaN}', Verdict.MALFORMED),
        (b"", Verdict.MALFORMED),
    ],
)
def test_header_needs_only_a_kid(header: bytes, expected: Verdict) -> None:
    assert check(raw(header, compact(claims()))) is expected


def test_the_signature_is_always_ed25519() -> None:
    header_b64 = b64url_encode(compact({"alg": "HS256", "kid": "t-1", "typ": "VHC1"}))
    payload_b64 = b64url_encode(compact(claims()))
    signing_input = f"{header_b64}.{payload_b64}".encode()
    # An HMAC keyed with the public key: the classic algorithm-confusion forgery.
    mac = hmac.new(KEY.trusted_key.x, signing_input, hashlib.sha256).digest()
    assert check(f"VHC1:{header_b64}.{payload_b64}.{b64url_encode(mac)}") is Verdict.BAD_SIGNATURE
    for signature in ("", "AA", b64url_encode(bytes(64)), b64url_encode(bytes(65))):
        assert check(f"VHC1:{header_b64}.{payload_b64}.{signature}") is Verdict.BAD_SIGNATURE
    assert check(IMPOSTOR.sign(claims())) is Verdict.BAD_SIGNATURE


def test_tampering_with_any_part_breaks_the_signature() -> None:
    header_b64, payload_b64, signature_b64 = KEY.sign(claims(sta="red"))[5:].split(".")
    green = b64url_encode(compact(claims(sta="green")))
    assert check(f"VHC1:{header_b64}.{green}.{signature_b64}") is Verdict.BAD_SIGNATURE
    extra_member = b64url_encode(compact({**HEADER, "x": 1}))
    assert check(f"VHC1:{extra_member}.{payload_b64}.{signature_b64}") is Verdict.BAD_SIGNATURE


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.rsplit(".", 1)[0],  # two parts
        lambda t: t + ".",  # four parts
        lambda t: t + ".AAAA",
        lambda t: t.replace(".", "..", 1),
        lambda t: t + "=",  # padding
        lambda t: t + "==",
        lambda t: t.replace(".", "=.", 1),
        lambda t: t + " ",  # white space
        lambda t: t + "\n",
        lambda t: t.replace(".", " .", 1),
        lambda t: t.replace("-", "+").replace("_", "/") + "+/",  # base64, not base64url
        lambda t: t + "AAA",  # length 1 mod 4 in the signature
        lambda t: t[:-1] + chr(ord(t[-1]) ^ 1),  # unused trailing bits set: not canonical
        lambda t: t[:-1] + "é",
        lambda t: t[:-1] + "\x00",
        lambda t: t + "ａ",  # a full-width letter
    ],
)
def test_only_strict_canonical_base64url_parts(mangle: Any) -> None:
    text = KEY.sign(claims())
    assert check(text) is Verdict.VALID
    assert check(mangle(text)) is Verdict.MALFORMED


def test_non_canonical_header_is_malformed() -> None:
    header_b64, rest = KEY.sign(claims())[5:].split(".", 1)
    # The header's last character carries unused bits; setting one gives other text, same bytes.
    assert len(header_b64) % 4 != 0
    changed = header_b64[:-1] + chr(ord(header_b64[-1]) + 1)
    assert check(f"VHC1:{changed}.{rest}") is Verdict.MALFORMED


def test_size_limit_counts_the_whole_text_and_comes_before_decoding() -> None:
    by_length: dict[int, str] = {}
    for header_pad in range(4):
        header = compact({**HEADER, "p": "h" * header_pad})
        for pad in range(530, 570):
            text = raw(header, compact(claims(pad="x" * pad)))
            by_length.setdefault(len(text), text)
    assert check(by_length[MAX_TEXT_CHARS]) is Verdict.VALID
    assert check(by_length[MAX_TEXT_CHARS + 1]) is Verdict.MALFORMED
    assert check("VHC1:" + "!" * 2000) is Verdict.MALFORMED


def test_checks_go_in_the_spec_order() -> None:
    # malformed claims beat an unknown kid
    unknown = IssuerKey(KEY.private_key, kid="nobody", iss="test-health")
    assert check(unknown.sign(claims(iat=1.5))) is Verdict.MALFORMED
    # an unknown kid beats a bad signature, and an issuer mismatch does too
    assert check(unknown.sign(claims())[:-4] + "AAAA") is Verdict.UNKNOWN_KEY
    assert check(IMPOSTOR.sign(claims(iss="other-health"))) is Verdict.UNKNOWN_KEY
    # a bad signature beats every time rule and revocation
    bad = IMPOSTOR.sign(claims(sub=REVOKED_SUB, iat=NOW - 7200, exp=NOW - 3600))
    assert check(bad) is Verdict.BAD_SIGNATURE
    # claims travel with every verdict after malformed (unauthenticated before the signature)
    result = verify_vhc1(bad, TRUST, REVOCATION, NOW)
    assert result.claims is not None and result.claims.sub == REVOKED_SUB


@pytest.mark.parametrize(
    "text",
    [
        "",
        "VHC1",
        "vhc1:abc",
        " VHC1:abc",
        "HC1:NCFOXN%TS3DH",
        "https://example.org/VHC1:",
        "VHC2:a.b.c",
        "\ufeffVHC1:a.b.c",
    ],
)
def test_texts_without_the_prefix(text: str) -> None:
    assert verify_vhc1(text, TRUST, REVOCATION, NOW).verdict is Verdict.NOT_VHC
    assert verify(text, TRUST, REVOCATION, NOW) == CodeResult(
        CodeFormat.UNKNOWN, Verdict.UNKNOWN_FORMAT
    )
    assert verify("x" * 5000, TRUST, REVOCATION, NOW).verdict is Verdict.UNKNOWN_FORMAT


def test_an_empty_trust_list_knows_no_key() -> None:
    assert verify(KEY.sign(claims()), TrustList(), RevocationList(), NOW).verdict is (
        Verdict.UNKNOWN_KEY
    )


def test_the_registry_contains_a_format_that_raises() -> None:
    def broken(text: str, trust: TrustList, revocation: RevocationList, now: int) -> CodeResult:
        raise ZeroDivisionError

    formats = (CodeFormatEntry(CodeFormat.DCC, "HC1:", broken),)
    result = verify("HC1:whatever", TRUST, REVOCATION, NOW, formats=formats)
    assert result == CodeResult(CodeFormat.DCC, Verdict.MALFORMED)
    assert verify(KEY.sign(claims()), TRUST, REVOCATION, NOW, formats=formats).verdict is (
        Verdict.UNKNOWN_FORMAT
    )
