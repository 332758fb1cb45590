"""What the door needs to decide offline: policy, trust and revocation lists, pseudonym key and
the unit's status. It comes from the collector's kiosk configuration (cached on disk) or, for a
standalone kiosk and the demo, from local files; the engine reads one immutable snapshot per visit.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.codes import RevocationList, TrustList, parse_revocation_list, parse_trust_list
from kiosk.errors import ConfigError, DataFileError
from kiosk.model import Policy
from kiosk.policies import policy_from_doc
from kiosk.wire import KioskConfigDoc

CACHE_NAME = "collector-config.json"


@dataclass(frozen=True, slots=True)
class Knowledge:
    policy: Policy
    trust: TrustList
    revocation: RevocationList
    pseudonym_key: bytes
    pseudonym_key_version: int
    trust_updated_at: float | None
    venue_closed: bool = False


def decode_pseudonym_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ConfigError(f"{where}: not base64url") from None
    if len(key) != 32:
        raise ConfigError(f"{where}: must be 32 bytes in base64url (43 characters)")
    return key


def from_collector_doc(doc: KioskConfigDoc, *, refreshed_at: float) -> Knowledge:
    """Knowledge from the collector's answer; raises DataFileError when its lists are unusable."""
    policy = policy_from_doc(doc.policy, doc.policy_version, float(doc.max_trust_age_hours))
    return Knowledge(
        policy=policy,
        trust=parse_trust_list(doc.trust_list),
        revocation=parse_revocation_list(doc.revocation_list),
        pseudonym_key=decode_pseudonym_key(doc.pseudonym_key.key, "pseudonym_key"),
        pseudonym_key_version=doc.pseudonym_key.version,
        trust_updated_at=refreshed_at,
        venue_closed=doc.unit_status == "closed",
    )


def save_cached_doc(state_dir: Path, raw: dict[str, Any], refreshed_at: float) -> None:
    """Keep the last good configuration so an offline start still works (it holds the pseudonym
    key, hence 0600, written to a temporary file and renamed so a crash leaves the old copy)."""
    path = state_dir / CACHE_NAME
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"refreshed_at": refreshed_at, "config": raw}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def load_cached_doc(state_dir: Path) -> tuple[KioskConfigDoc, float] | None:
    """The last good configuration, or None when there is none or it cannot be read."""
    path = state_dir / CACHE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return KioskConfigDoc.model_validate(data["config"]), float(data["refreshed_at"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFileError(f"{path}: cached collector configuration unreadable ({exc})") from None
