"""`GET /api/v1/kiosk/config`: what a kiosk needs to decide offline, and its ETag.

The parts every kiosk shares (policies in force, trust list, revocation list, pseudonym key) are
read and serialised once per configuration generation (the storage bumps it with every change);
a request costs one small read to check the generation. The ETag is a hash of the document's
content, so it changes exactly when some member does, whichever collector process answers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kiosk.collector.storage.base import KioskInfo, PolicyPublication, Storage
from kiosk.errors import ConfigError
from kiosk.policies import DEFAULT_MAX_TRUST_AGE_HOURS, VENUE_TYPES, load_policy, policy_to_doc

EMPTY_TRUST_LIST: dict[str, Any] = {"keys": []}
EMPTY_REVOCATION_LIST: dict[str, Any] = {"updated": 0, "revoked": []}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    version: str
    policy: dict[str, Any]
    max_trust_age_hours: float


def builtin_policies() -> dict[str, PolicyInForce]:
    found = {}
    for venue_type in VENUE_TYPES:
        policy = load_policy(venue_type)
        found[venue_type] = PolicyInForce(
            policy.version, policy_to_doc(policy), policy.max_trust_age_hours
        )
    return found


def builtin_max_trust_age_hours(venue_type: str) -> float:
    try:
        return load_policy(venue_type).max_trust_age_hours
    except ConfigError:
        return DEFAULT_MAX_TRUST_AGE_HOURS


@dataclass(frozen=True, slots=True)
class SharedParts:
    generation: int
    policies: dict[str, PolicyInForce]
    tail_json: str  # `"trust_list":...,"revocation_list":...,"pseudonym_key":...`
    digest: str


class UnknownVenueType(Exception):
    pass


class KioskConfigService:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._builtin = builtin_policies()
        self._shared: SharedParts | None = None

    async def shared(self) -> SharedParts:
        generation = await self._storage.config_generation()
        cached = self._shared
        if cached is not None and cached.generation == generation:
            return cached
        snapshot = await self._storage.config_snapshot()
        policies = dict(self._builtin)
        for venue_type, publication in snapshot.policies.items():
            policies[venue_type] = _in_force(publication)
        tail = ",".join(
            (
                '"trust_list":' + _compact(snapshot.trust_list or EMPTY_TRUST_LIST),
                '"revocation_list":' + _compact(snapshot.revocation_list or EMPTY_REVOCATION_LIST),
                '"pseudonym_key":'
                + _compact(
                    {"version": snapshot.pseudonym_key_version, "key": snapshot.pseudonym_key}
                ),
            )
        )
        shared = SharedParts(
            snapshot.generation, policies, tail, hashlib.sha256(tail.encode()).hexdigest()
        )
        self._shared = shared
        return shared

    async def policy_in_force(self, venue_type: str) -> PolicyInForce:
        policy = (await self.shared()).policies.get(venue_type)
        if policy is None:
            raise UnknownVenueType(f"no policy for venue type {venue_type!r}")
        return policy

    async def document(self, kiosk: KioskInfo) -> tuple[str, str]:
        """(ETag, body) of this kiosk's configuration."""
        shared = await self.shared()
        policy = shared.policies.get(kiosk.venue_type)
        if policy is None:
            raise UnknownVenueType(f"no policy for venue type {kiosk.venue_type!r}")
        head = _compact(
            {
                "kiosk_id": kiosk.kiosk_id,
                "venue_id": kiosk.venue_id,
                "venue_type": kiosk.venue_type,
                "policy_version": policy.version,
                "policy": policy.policy,
            }
        )
        tail = _compact(
            {"max_trust_age_hours": policy.max_trust_age_hours, "unit_status": kiosk.unit_status}
        )
        # head without its closing brace, tail without its opening one: the shared parts go
        # between, so the key order is the spec's.
        own_head, own_tail = head[:-1], tail[1:]
        digest = hashlib.sha256(
            f"{own_head}\n{own_tail}\n{shared.digest}".encode()
        ).hexdigest()
        body = f"{own_head},{shared.tail_json},{own_tail}"
        return f'"{digest[:32]}"', body


def _in_force(publication: PolicyPublication) -> PolicyInForce:
    return PolicyInForce(
        publication.policy_version, publication.policy, publication.max_trust_age_hours
    )


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 says)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(
        candidate.strip().removeprefix("W/") == wanted for candidate in if_none_match.split(",")
    )
