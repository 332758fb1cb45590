"""Venue-type policies: the built-in files, overrides, the collector's JSON, and clear errors."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from kiosk.errors import ConfigError
from kiosk.model import Policy, Status
from kiosk.policies import VENUE_TYPES, load_policy, policy_from_doc, policy_to_doc
from kiosk.pseudonym import subject_pseudonym
from kiosk.wire import PolicyDoc

GOOD = """
policy_version = "city-2022-03"
max_temperature_c = 37.5
accepted_status = ["green", "yellow"]
mask_required = false
"""


@pytest.mark.parametrize("venue_type", VENUE_TYPES)
def test_every_built_in_policy_loads_and_round_trips(venue_type: str) -> None:
    policy = load_policy(venue_type)
    assert policy.version == "default-1"
    assert Status.GREEN in policy.accepted_status
    doc = policy_to_doc(policy)
    PolicyDoc.model_validate(doc)  # the collector's schema accepts it
    assert policy_from_doc(doc, policy.version, policy.max_trust_age_hours) == policy


def test_general_is_the_spec_default() -> None:
    assert policy_to_doc(load_policy("general")) == {
        "max_temperature_c": 37.3,
        "accepted_status": ["green"],
        "mask_required": True,
        "max_test_age_hours": None,
        "deny_travel_risk": False,
    }
    assert load_policy("general") == Policy()


def test_stricter_venues() -> None:
    hospital, care, hub = (load_policy(t) for t in ("hospital", "elderly_care", "transport_hub"))
    assert (hospital.max_test_age_hours, hospital.deny_travel_risk) == (48, True)
    assert (care.max_test_age_hours, care.deny_travel_risk) == (24, True)
    assert (hub.max_test_age_hours, hub.deny_travel_risk) == (None, True)


def test_an_override_file_replaces_the_built_in(tmp_path: Path) -> None:
    (tmp_path / "mall.toml").write_text(GOOD, encoding="utf-8")
    policy = load_policy("mall", tmp_path)
    assert policy.version == "city-2022-03"
    assert policy.accepted_status == {Status.GREEN, Status.YELLOW}
    assert policy.max_temperature_c == 37.5 and not policy.mask_required
    assert load_policy("hospital", tmp_path) == load_policy("hospital")  # no file: built-in


def test_an_override_may_add_a_venue_type(tmp_path: Path) -> None:
    (tmp_path / "school.toml").write_text(GOOD, encoding="utf-8")
    assert load_policy("school", tmp_path).version == "city-2022-03"


def test_an_unknown_venue_type_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'school'.*general, mall"):
        load_policy("school")


@pytest.mark.parametrize("name", ["../general", "General", "", "a/b"])
def test_a_venue_type_is_never_a_path(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a valid name"):
        load_policy(name, tmp_path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (GOOD.replace("37.5", "75"), "max_temperature_c = 75"),
        (GOOD.replace('"yellow"', '"blue"'), "accepted_status.1 = 'blue'"),
        (GOOD.replace('["green", "yellow"]', '["yellow"]'), "must include 'green'"),
        (GOOD.replace("false", '"no"'), "mask_required = 'no'"),
        (GOOD + "max_test_age_hours = 0\n", "max_test_age_hours = 0"),
        (GOOD + "mask_requried = true\n", "mask_requried: unknown key"),
        (GOOD.replace('policy_version = "city-2022-03"', ""), "policy_version: required"),
        ("max_temperature_c = = 1", "not valid TOML"),
    ],
)
def test_a_bad_policy_file_names_file_key_and_value(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "mall.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_policy("mall", tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert fragment in message


def test_policy_from_the_collectors_json() -> None:
    doc = {
        "max_temperature_c": 37,
        "accepted_status": ["green"],
        "mask_required": True,
        "max_test_age_hours": 72,
        "deny_travel_risk": True,
        "ignored_future_member": 1,
    }
    policy = policy_from_doc(doc, "2022-03-05.1", 24)
    assert policy == Policy(
        version="2022-03-05.1",
        max_temperature_c=37.0,
        max_test_age_hours=72.0,
        deny_travel_risk=True,
        max_trust_age_hours=24.0,
    )
    assert policy_from_doc(PolicyDoc.model_validate(doc), "2022-03-05.1", 24) == policy


@pytest.mark.parametrize(
    ("doc", "version", "fragment"),
    [
        (
            {"max_temperature_c": 37.3, "accepted_status": ["red"], "mask_required": True},
            "v",
            "must include 'green'",
        ),
        (
            {"max_temperature_c": "hot", "accepted_status": ["green"], "mask_required": True},
            "v",
            r"max_temperature_c\S* = 'hot'",
        ),
        (
            {"max_temperature_c": 37.3, "accepted_status": ["green"], "mask_required": True},
            "",
            "policy_version",
        ),
    ],
)
def test_a_bad_collector_policy_is_a_config_error(
    doc: dict[str, object], version: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        policy_from_doc(doc, version, 48)


def test_subject_pseudonym_is_hmac_of_iss_colon_sub() -> None:
    key = bytes(range(32))
    expected = hmac.new(key, b"hlj-health:abc_DEF-123", hashlib.sha256).hexdigest()
    assert subject_pseudonym(key, "hlj-health", "abc_DEF-123") == expected
    assert len(expected) == 64 and expected == expected.lower()
    assert subject_pseudonym(bytes(32), "hlj-health", "abc_DEF-123") != expected
    # The colon separates: ("a:b", "c") and ("a", "b:c") are the same text, as the spec defines.
    assert subject_pseudonym(key, "a", "bc") != subject_pseudonym(key, "ab", "c")


def test_an_empty_pseudonym_key_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        subject_pseudonym(b"", "hlj", "x")
