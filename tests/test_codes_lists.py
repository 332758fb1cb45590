"""Trust and revocation lists: parsing, loading files, and the errors that name file and problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.codes import (
    RevocationList,
    TrustedKey,
    TrustList,
    load_revocation_list,
    load_trust_list,
    parse_revocation_list,
    parse_trust_list,
    revocation_hash,
)
from kiosk.codes.syntax import b64url_encode
from kiosk.errors import DataFileError

X = b64url_encode(bytes(range(32)))


def jwk(**override: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": X, "iss": "hlj"}
    entry.update(override)
    return {k: v for k, v in entry.items() if v is not None}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_a_trust_list_round_trips_through_jwks() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    trust = TrustList((TrustedKey.from_public_key(key, kid="k1", iss="hlj-health"),))
    again = parse_trust_list(json.loads(json.dumps(trust.to_jwks())))
    assert again == trust
    found = again.get("k1")
    assert found is not None and found.iss == "hlj-health"
    assert found.public_key.public_bytes_raw() == key.public_bytes_raw()
    assert again.get("k2") is None
    assert hash(again) == hash(trust)


def test_an_empty_trust_list_is_valid(tmp_path: Path) -> None:
    trust = load_trust_list(write(tmp_path, "trust.json", '{"keys": []}'))
    assert len(trust) == 0 and trust == TrustList()


def test_unknown_jwk_members_are_ignored() -> None:
    trust = parse_trust_list({"keys": [jwk(use="sig", alg="EdDSA")], "note": "x"})
    assert [key.kid for key in trust] == ["k1"]


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ([], "not a JWKS"),
        ({"keys": {}}, "not a JWKS"),
        ({"keys": [jwk(), 3]}, "keys[1]: not a JSON object"),
        ({"keys": [jwk(kty="EC")]}, "keys[0]: kty 'EC'"),
        ({"keys": [jwk(crv="X25519")]}, "is not an Ed25519 key"),
        ({"keys": [jwk(d=X)]}, "keys[0]: holds a private key"),
        ({"keys": [jwk(kid="")]}, "keys[0].kid"),
        ({"keys": [jwk(kid=None)]}, "keys[0].kid"),
        ({"keys": [jwk(iss=None)]}, "keys[0].iss"),
        ({"keys": [jwk(iss="i" * 65)]}, "keys[0].iss"),
        ({"keys": [jwk(), jwk(), jwk(x=X[:-1])]}, "keys[1].kid: 'k1' is given twice"),
        ({"keys": [jwk(kid="a"), jwk(kid="b"), jwk(kid="c", x=X[:-1])]}, "keys[2].x"),
        ({"keys": [jwk(x=X + "=")]}, "keys[0].x: not 32 bytes of base64url"),
        ({"keys": [jwk(x=b64url_encode(bytes(31)))]}, "keys[0].x"),
        ({"keys": [jwk(x=7)]}, "keys[0].x"),
    ],
)
def test_bad_trust_lists_say_what_is_wrong(doc: Any, problem: str) -> None:
    with pytest.raises(DataFileError) as caught:
        parse_trust_list(doc, source="collector trust list")
    assert str(caught.value).startswith("collector trust list: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "not strict JSON"),
        ("{", "not strict JSON"),
        ('{"keys": [], "keys": []}', "repeated"),
        ('{"keys": [NaN]}', "NaN is not JSON"),
        ('{"keys": [{"kty": "RSA"}]}', "keys[0]: kty 'RSA'"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("[" * 100_000 + "]" * 100_000, "trust list"),
    ],
)
def test_bad_trust_list_files_are_named(tmp_path: Path, content: str | bytes, problem: str) -> None:
    path = write(tmp_path, "trust.json", content)
    with pytest.raises(DataFileError) as caught:
        load_trust_list(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message
    assert "\n" not in message


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="trust list not found"):
        load_trust_list(tmp_path / "nope.json")
    with pytest.raises(DataFileError, match="is a directory"):
        load_revocation_list(tmp_path)


def test_revocation_list_revokes_by_hash_of_iss_and_sub(tmp_path: Path) -> None:
    digest = revocation_hash("hlj-health", "p-0000-revoked")
    assert digest == "cd20479fbd100739dbc37483e08c49a4a798ae9c017b5a0367bb3dcfa2fc907f"
    path = write(tmp_path, "rev.json", json.dumps({"updated": 5, "revoked": [digest.upper()]}))
    revocation = load_revocation_list(path)
    assert revocation.updated == 5
    assert revocation.is_revoked("hlj-health", "p-0000-revoked")
    assert not revocation.is_revoked("hlj-health", "p-4f2a9d")
    assert parse_revocation_list(revocation.to_json()) == revocation
    assert RevocationList.of_holders([("hlj-health", "p-0000-revoked")], updated=5) == revocation
    assert not RevocationList().is_revoked("hlj-health", "p-0000-revoked")


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ([], "expected a JSON object"),
        ({"revoked": []}, "updated: missing"),
        ({"updated": 1.5, "revoked": []}, "updated"),
        ({"updated": True, "revoked": []}, "updated"),
        ({"updated": -1, "revoked": []}, "updated"),
        ({"updated": 0}, "revoked: missing"),
        ({"updated": 0, "revoked": ["ab"]}, "revoked[0]: not a hex SHA-256"),
        ({"updated": 0, "revoked": ["0" * 64, None]}, "revoked[1]"),
        ({"updated": 0, "revoked": ["g" * 64]}, "revoked[0]"),
    ],
)
def test_bad_revocation_lists_say_what_is_wrong(tmp_path: Path, doc: Any, problem: str) -> None:
    path = write(tmp_path, "revoked.json", json.dumps(doc))
    with pytest.raises(DataFileError) as caught:
        load_revocation_list(path)
    assert str(caught.value).startswith(f"{path}: ") and problem in str(caught.value)
