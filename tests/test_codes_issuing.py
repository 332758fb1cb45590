"""Issuing: keys, signing, key files. Issued codes must verify; key files must stay private."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.codes import RevocationList, TrustList, load_trust_list, verify
from kiosk.codes.issuing import (
    IssuerKey,
    issuer_key_from_seed,
    new_issuer_key,
    random_sub,
    vhc1_claims,
)
from kiosk.codes.keyfiles import load_issuer_key, private_key_pem, save_issuer_key
from kiosk.errors import DataFileError
from kiosk.model import Status, Verdict

NOW = 1_700_000_000


def test_the_spec_vectors_are_reproduced_byte_for_byte(shared_dir: Path) -> None:
    vectors = json.loads((shared_dir / "spec" / "vectors.json").read_text("utf-8"))
    issuers = vectors["test_issuer_private_keys"]
    keys = {
        kid: issuer_key_from_seed(bytes.fromhex(k["ed25519_seed_hex"]), kid=kid, iss=k["iss"])
        for kid, k in issuers.items()
    }
    assert (
        TrustList(tuple(k.trusted_key for k in keys.values())).to_jwks() == (vectors["trust_list"])
    )
    case = next(c for c in vectors["cases"] if c["name"] == "valid_red_with_test_and_travel")
    text = keys["hlj-2022-1"].issue(
        sub="p-4f2a9c", status="red", iat=1646496400, ttl_s=75600, nat=1646392000, trv=True
    )
    assert text == case["text"]


def test_an_issued_code_verifies_with_its_claims() -> None:
    key = new_issuer_key(kid="k1", iss="hlj-health")
    sub = random_sub()
    assert len(sub) >= 16 and sub != random_sub()
    text = key.issue(sub=sub, status=Status.YELLOW, iat=NOW, ttl_s=5400, trv=False)
    result = verify(text, TrustList((key.trusted_key,)), RevocationList(), NOW)
    assert result.verdict is Verdict.VALID
    assert result.claims is not None
    assert (result.claims.sub, result.claims.sta, result.claims.exp) == (
        sub,
        Status.YELLOW,
        NOW + 5400,
    )
    assert (result.claims.nat, result.claims.trv) == (None, False)
    header, payload, _ = text[5:].split(".")
    assert "nat" not in json.loads(_b64(payload))
    assert json.loads(_b64(header)) == {"alg": "EdDSA", "kid": "k1", "typ": "VHC1"}


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"iss": ""}, "iss"),
        ({"sub": "a b"}, "sub"),
        ({"sub": ""}, "sub"),
        ({"status": "blue"}, "status"),
        ({"iat": 1.0}, "iat"),
        ({"iat": True}, "iat"),
        ({"ttl_s": 0}, "ttl"),
        ({"ttl_s": 604_801}, "ttl"),
        ({"nat": 2.5}, "nat"),
        ({"trv": "yes"}, "trv"),
    ],
)
def test_claims_that_would_be_malformed_are_refused(override: dict[str, Any], problem: str) -> None:
    arguments: dict[str, Any] = {
        "iss": "i",
        "sub": "s",
        "status": "green",
        "iat": NOW,
        "ttl_s": 60,
    }
    arguments.update(override)
    with pytest.raises(ValueError, match=problem):
        vhc1_claims(**arguments)


def test_a_code_over_the_size_limit_is_refused() -> None:
    key = new_issuer_key(kid="k" * 600, iss="i" * 64)
    with pytest.raises(ValueError, match="over VHC1's 1024"):
        key.issue(sub="s" * 64, status="green", iat=NOW)


def test_issuer_keys_need_a_kid_and_an_iss() -> None:
    with pytest.raises(ValueError, match="kid"):
        new_issuer_key(kid="", iss="x")
    with pytest.raises(ValueError, match="iss"):
        IssuerKey(Ed25519PrivateKey.generate(), kid="k", iss="")


def test_saved_key_files_are_private_and_load_back(tmp_path: Path) -> None:
    key = new_issuer_key(kid="hlj-2024.1", iss="hlj-health")
    files = save_issuer_key(key, tmp_path / "new" / "dir")
    mode = stat.S_IMODE(os.stat(files.key).st_mode)
    assert mode & 0o077 == 0 and mode & 0o600 == 0o600
    assert files.key.name == "hlj-2024.1.key.pem" and files.meta.name == "hlj-2024.1.key.json"
    assert files.key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_issuer_key(files.key)
    assert (loaded.kid, loaded.iss) == ("hlj-2024.1", "hlj-health")
    assert private_key_pem(loaded.private_key) == private_key_pem(key.private_key)
    assert load_trust_list(files.trust) == TrustList((key.trusted_key,))
    overridden = load_issuer_key(files.key, kid="other", iss="other-health")
    assert (overridden.kid, overridden.iss) == ("other", "other-health")


def test_keys_share_the_trust_list_of_their_directory(tmp_path: Path) -> None:
    first = new_issuer_key(kid="k1", iss="a")
    second = new_issuer_key(kid="k2", iss="b")
    save_issuer_key(first, tmp_path)
    files = save_issuer_key(second, tmp_path)
    trust = load_trust_list(files.trust)
    assert trust == TrustList((first.trusted_key, second.trusted_key))


def test_nothing_is_overwritten(tmp_path: Path) -> None:
    key = new_issuer_key(kid="k1", iss="a")
    files = save_issuer_key(key, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(DataFileError, match="already exists; refusing to overwrite"):
        save_issuer_key(new_issuer_key(kid="k1", iss="a"), tmp_path)
    files.key.unlink()
    with pytest.raises(DataFileError, match=r"k1\.key\.json: already exists"):
        save_issuer_key(new_issuer_key(kid="k1", iss="a"), tmp_path)
    files.meta.unlink()
    with pytest.raises(DataFileError, match="already holds a key with kid 'k1'"):
        save_issuer_key(new_issuer_key(kid="k1", iss="a"), tmp_path)
    assert files.trust.read_bytes() == before[files.trust]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trust.json"]


def test_a_bad_trust_list_in_the_directory_stops_before_writing(tmp_path: Path) -> None:
    (tmp_path / "trust.json").write_text('{"keys": [1]}')
    with pytest.raises(DataFileError, match=r"trust.json: keys\[0\]: not a JSON object"):
        save_issuer_key(new_issuer_key(kid="k1", iss="a"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trust.json"]


def test_a_kid_must_be_safe_as_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="to name its files"):
        save_issuer_key(new_issuer_key(kid="../k1", iss="a"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def _write(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def test_bad_key_files_are_named(tmp_path: Path) -> None:
    ed = Ed25519PrivateKey.generate()
    encrypted = ed.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cases = [
        (tmp_path / "missing.pem", None, "key file not found"),
        (tmp_path / "garbage.pem", b"not a key", "not a PEM private key"),
        (tmp_path / "enc.pem", encrypted, "encrypted"),
        (tmp_path / "ec.pem", ec_pem, "not an Ed25519 key"),
        (tmp_path / "alone.key.pem", private_key_pem(ed), "alone.key.json: not found"),
    ]
    for path, data, problem in cases:
        if data is not None:
            _write(path, data)
        with pytest.raises(DataFileError) as caught:
            load_issuer_key(path)
        assert str(caught.value).startswith(str(path.parent)), str(caught.value)
        assert problem in str(caught.value)


def test_key_info_must_describe_the_key(tmp_path: Path) -> None:
    files = save_issuer_key(new_issuer_key(kid="k1", iss="a"), tmp_path)
    other = save_issuer_key(new_issuer_key(kid="k2", iss="a"), tmp_path)
    files.meta.write_bytes(other.meta.read_bytes())
    with pytest.raises(DataFileError, match=r"k1\.key\.json: jwk\.x is not the public key"):
        load_issuer_key(files.key)
    files.meta.write_text("[]")
    with pytest.raises(DataFileError, match="expected a JSON object"):
        load_issuer_key(files.key)
    files.meta.write_text("{")
    with pytest.raises(DataFileError, match="not strict JSON"):
        load_issuer_key(files.key)
    # Given both kid and iss, the info file is not read at all.
    assert load_issuer_key(files.key, kid="k1", iss="a").kid == "k1"
