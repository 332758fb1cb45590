"""Fuzz the code parsers and the trust and revocation list loaders (issue 8, "Bad input").

- `verify` over arbitrary text, arbitrary text after `VHC1:`, one-character mutations of issued
  codes and codes properly signed over arbitrary JSON: always a CodeResult of a known format and
  verdict, never an exception, and `valid` only for a code issued unchanged.
- `parse_trust_list` / `parse_revocation_list` over arbitrary JSON and over mutated good lists,
  `load_*` over arbitrary bytes in a file: a list, or DataFileError with a one-line message;
  a list read is written back to the same list.

A few seconds each here; `python bench/fuzz.py` runs the same targets for long.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from test_fuzz_support import (
    Target,
    decode_bytes,
    dumps_loose,
    json_values,
    raw_substituted,
    record_figures,
    run_target,
    short_examples,
)

from kiosk.codes import (
    RevocationList,
    TrustList,
    load_revocation_list,
    load_trust_list,
    parse_revocation_list,
    parse_trust_list,
    revocation_hash,
    verify,
)
from kiosk.codes.issuing import issuer_key_from_seed, sign_vhc1_raw
from kiosk.errors import DataFileError
from kiosk.model import CodeFormat, CodeResult, Verdict

NOW = 1_646_500_000
ISSUER = issuer_key_from_seed(bytes(range(32)), kid="fuzz-1", iss="fuzz-issuer")
TRUST = TrustList((ISSUER.trusted_key,))
REVOKED = RevocationList.of_holders([("fuzz-issuer", "revoked-holder")], updated=NOW)
ISSUED = {
    ISSUER.issue(sub=sub, status=status, iat=NOW - 60)
    for sub, status in (("holder-1", "green"), ("holder-2", "yellow"), ("revoked-holder", "red"))
}


# -- codes -----------------------------------------------------------------------------------


@st.composite
def mutated_codes(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(sorted(ISSUED)))
    index = draw(st.integers(0, len(text) - 1))
    how = draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
    char = draw(st.characters())
    if how == "replace":
        return text[:index] + char + text[index + 1 :]
    if how == "delete":
        return text[:index] + text[index + 1 :]
    if how == "insert":
        return text[:index] + char + text[index:]
    return text[:index]


@st.composite
def signed_over_any_json(draw: st.DrawFn) -> str:
    """Properly signed codes whose header and payload are any JSON (or any bytes)."""
    header: Any = draw(st.one_of(
        st.just({"alg": "EdDSA", "kid": "fuzz-1"}), json_values,
        st.fixed_dictionaries({"kid": json_values}),
    ))
    payload: Any = draw(st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"iss": st.sampled_from(["fuzz-issuer", "other"]), "sub": st.text(max_size=70)},
            optional={
                "iat": json_values | st.integers(NOW - 10**6, NOW + 10**6),
                "exp": json_values | st.integers(NOW - 10**6, NOW + 10**6),
                "sta": json_values | st.sampled_from(["green", "yellow", "red"]),
                "nat": json_values, "trv": json_values, "extra": json_values,
            },
        ),
    ))
    raw_header = draw(st.one_of(st.just(dumps_loose(header).encode()), st.binary(max_size=40)))
    raw_payload = draw(st.one_of(st.just(dumps_loose(payload).encode()), st.binary(max_size=40)))
    return sign_vhc1_raw(ISSUER.private_key, raw_header, raw_payload)


def any_code_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(),
        st.text().map(lambda text: "VHC1:" + text),
        st.from_regex(r"VHC1:[A-Za-z0-9_-]{0,80}(\.[A-Za-z0-9_-]{0,90}){0,3}", fullmatch=True),
        mutated_codes(),
        signed_over_any_json(),
        st.integers(1000, 5000).map(lambda n: "VHC1:" + "A" * n),
    )


def check_verify(text: str) -> None:
    result = verify(text, TRUST, REVOKED, NOW)
    assert isinstance(result, CodeResult)
    assert result.format in set(CodeFormat) and result.verdict in set(Verdict)
    if result.verdict == Verdict.VALID:
        assert text in ISSUED, text
        assert result.claims is not None
    if result.verdict == Verdict.MALFORMED:
        assert result.claims is None


def code_from_bytes(data: bytes) -> str:
    text = decode_bytes(data[1:])
    return ("VHC1:" + text) if data[:1] and data[0] % 2 else text


# -- trust and revocation lists ------------------------------------------------------------------

GOOD_JWK = ISSUER.trusted_key.to_jwk()
GOOD_REVOCATION = REVOKED.to_json()


@st.composite
def mutated_documents(draw: st.DrawFn, good: dict[str, Any]) -> Any:
    """`good` with one member (at any depth of its first key or list item) changed or dropped."""
    document = json.loads(json.dumps(good))
    owner: Any = document
    while True:
        keys = list(owner) if isinstance(owner, dict) else list(range(len(owner)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = owner[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            owner = child
            continue
        if draw(st.booleans()):
            owner[key] = draw(json_values)
        elif isinstance(owner, dict):
            del owner[key]
        else:
            owner.pop(key)
        break
    return document


def any_trust_document() -> st.SearchStrategy[Any]:
    good = {"keys": [GOOD_JWK, {**GOOD_JWK, "kid": "fuzz-2"}]}
    return st.one_of(
        json_values,
        st.fixed_dictionaries({"keys": st.lists(json_values, max_size=3)}),
        mutated_documents(good),
        st.lists(st.just(GOOD_JWK), max_size=3).map(lambda keys: {"keys": keys}),
    )


def any_revocation_document() -> st.SearchStrategy[Any]:
    return st.one_of(
        json_values,
        st.fixed_dictionaries({"updated": json_values, "revoked": st.lists(json_values,
                                                                           max_size=3)}),
        mutated_documents({**GOOD_REVOCATION, "revoked": [
            revocation_hash("a", "b"), revocation_hash("c", "d").upper()]}),
    )


def assert_one_line(exc: DataFileError) -> None:
    message = str(exc)
    assert message and "\n" not in message, message


def check_trust_document(document: Any) -> None:
    try:
        trust = parse_trust_list(document, source="fuzz")
    except DataFileError as exc:
        assert_one_line(exc)
        return
    assert parse_trust_list(trust.to_jwks()) == trust


def check_revocation_document(document: Any) -> None:
    try:
        revocation = parse_revocation_list(document, source="fuzz")
    except DataFileError as exc:
        assert_one_line(exc)
        return
    assert parse_revocation_list(revocation.to_json()) == revocation


def file_bytes(document: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        document.map(lambda value: dumps_loose(value).encode("utf-8", "surrogatepass")),
        raw_substituted(document).map(lambda text: text.encode("utf-8", "surrogatepass")),
    )


class ListFiles:
    """Writes each input to one file in a folder of its own and loads it as a list."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="kiosk-fuzz-lists-"))
        self.path = self.folder / "list.json"

    def check(self, data: bytes) -> None:
        self.path.write_bytes(data)
        for load in (load_trust_list, load_revocation_list):
            try:
                loaded: TrustList | RevocationList = load(self.path)
            except DataFileError as exc:
                assert_one_line(exc)
                assert str(self.path) in str(exc)
                continue
            assert isinstance(loaded, TrustList | RevocationList)


def codes_targets() -> list[Target]:
    files = ListFiles()

    def loose_json(data: bytes) -> Any:
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return decode_bytes(data)

    return [
        Target("codes-verify", any_code_text(), check_verify, code_from_bytes),
        Target("trust-list-parse", any_trust_document(), check_trust_document, loose_json),
        Target("revocation-list-parse", any_revocation_document(), check_revocation_document,
               loose_json),
        Target("list-files-load", file_bytes(any_trust_document() | any_revocation_document()),
               files.check, lambda data: data),
    ]


TARGETS = ["codes-verify", "trust-list-parse", "revocation-list-parse", "list-files-load"]


@pytest.mark.parametrize("name", TARGETS)
def test_fuzzed_codes_and_lists_keep_their_promise(name: str) -> None:
    target = next(t for t in codes_targets() if t.name == name)
    started = time.monotonic()
    tried = run_target(target, short_examples(150))
    record_figures("fuzz", {"inputs": tried, "engine": "hypothesis",
                            "seconds": round(time.monotonic() - started, 2)}, target=name)
    assert tried >= 50


def test_a_huge_qr_text_gets_a_verdict_at_once() -> None:
    """A megabyte after the prefix is `malformed` by its length alone, before any decoding."""
    for text, verdict in (
        ("VHC1:" + "A" * 1_000_000, Verdict.MALFORMED),
        ("VHC1:" + "A." * 500_000, Verdict.MALFORMED),
        ("X" * 1_000_000, Verdict.UNKNOWN_FORMAT),
    ):
        assert verify(text, TRUST, REVOKED, NOW).verdict == verdict
