"""The spec's vectors (../shared/spec/vectors.json), through the VHC1 verifier and the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kiosk.codes import parse_revocation_list, parse_trust_list, verify
from kiosk.codes.vhc1 import verify_vhc1
from kiosk.model import CodeFormat, Verdict


@pytest.fixture(scope="module")
def vectors(shared_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_dir / "spec" / "vectors.json").read_text("utf-8"))
    return data


def test_every_spec_vector_gives_its_verdict(vectors: dict[str, Any]) -> None:
    trust = parse_trust_list(vectors["trust_list"])
    revocation = parse_revocation_list(vectors["revocation_list"])
    now = vectors["now"]
    wrong = []
    for case in vectors["cases"]:
        result = verify_vhc1(case["text"], trust, revocation, now)
        if result.verdict != case["expected"]:
            wrong.append((case["name"], case["expected"], result.verdict.value))
        # Claims travel with every verdict after `malformed`, never with `malformed`.
        has_claims = result.verdict not in (Verdict.MALFORMED, Verdict.NOT_VHC)
        assert (result.claims is not None) == has_claims, case["name"]
    assert wrong == []
    assert len(vectors["cases"]) >= 38


def test_spec_vectors_through_the_registry(vectors: dict[str, Any]) -> None:
    trust = parse_trust_list(vectors["trust_list"])
    revocation = parse_revocation_list(vectors["revocation_list"])
    for case in vectors["cases"]:
        result = verify(case["text"], trust, revocation, vectors["now"])
        if case["expected"] == "not_vhc":
            # No registered format claims these texts (an EU DCC, a URL).
            assert (result.format, result.verdict) == (CodeFormat.UNKNOWN, Verdict.UNKNOWN_FORMAT)
        else:
            assert (result.format, result.verdict.value) == (CodeFormat.VHC1, case["expected"])


def test_claims_of_the_valid_red_vector(vectors: dict[str, Any]) -> None:
    case = next(c for c in vectors["cases"] if c["name"] == "valid_red_with_test_and_travel")
    result = verify(
        case["text"],
        parse_trust_list(vectors["trust_list"]),
        parse_revocation_list(vectors["revocation_list"]),
        vectors["now"],
    )
    claims = result.claims
    assert claims is not None
    assert (claims.iss, claims.sub, claims.sta.value) == ("hlj-health", "p-4f2a9c", "red")
    assert (claims.iat, claims.exp, claims.nat, claims.trv) == (
        1646496400,
        1646572000,
        1646392000,
        True,
    )
