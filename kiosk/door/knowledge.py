"""What the door needs to decide offline: policy, trust and revocation lists, pseudonym key and
the unit's status. The engine reads one immutable snapshot per visit from a `KnowledgeHolder`.

Where it comes from:
- standalone kiosk and the demo: the local files of `[standalone]` (`StandaloneKnowledge`, which
  re-reads them when they change and keeps the last good copy when a new one is bad). Their
  freshness for `max_trust_age_hours` is the modification time of the oldest list file: replacing
  the files is refreshing them.
- collector mode: the collector's kiosk configuration, cached on disk (mode 0600) by the sync
  task (issue 4), which calls `KnowledgeHolder.replace(from_collector_doc(...))` after each good
  pull. With no cache and no collector yet, the door starts with `stale_knowledge` and shows amber
  "cannot verify now" (every visit is a deny with `trust_stale`) until the first pull succeeds.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.codes import (
    RevocationList,
    TrustList,
    load_revocation_list,
    load_trust_list,
    parse_revocation_list,
    parse_trust_list,
)
from kiosk.door.config import KioskConfig
from kiosk.errors import ConfigError, DataFileError, KioskError
from kiosk.model import Policy
from kiosk.policies import load_policy, policy_from_doc
from kiosk.rules import trust_is_fresh
from kiosk.wire import KioskConfigDoc

log = logging.getLogger(__name__)

CACHE_NAME = "collector-config.json"


@dataclass(frozen=True, slots=True)
class Knowledge:
    """One consistent snapshot. `pseudonym_key` None: none known yet (then no code can be
    verified either, as the trust list is empty too, so no subject is ever needed)."""

    policy: Policy
    trust: TrustList
    revocation: RevocationList
    pseudonym_key: bytes | None
    pseudonym_key_version: int
    trust_updated_at: float | None
    venue_closed: bool = False
    source: str = "local"

    def __repr__(self) -> str:
        # The key must never reach a log line or a traceback through a repr.
        return (
            f"Knowledge(policy={self.policy.version!r}, keys={len(self.trust)}, "
            f"revoked={len(self.revocation.revoked)}, trust_updated_at={self.trust_updated_at}, "
            f"venue_closed={self.venue_closed}, source={self.source!r})"
        )

    def trust_fresh(self, now: float) -> bool:
        return trust_is_fresh(self.trust_updated_at, self.policy, now)

    def trust_age_s(self, now: float) -> float | None:
        """Seconds since the lists were refreshed (the heartbeat's `trust_age_s`)."""
        if self.trust_updated_at is None:
            return None
        return max(0.0, now - self.trust_updated_at)


class KnowledgeHolder:
    """The current snapshot, replaced whole (never edited) by whoever refreshes it; listeners
    hear of each replacement (the door screen's resting state follows `venue_closed`)."""

    def __init__(self, knowledge: Knowledge) -> None:
        self._current = knowledge
        self._listeners: list[Callable[[Knowledge], None]] = []

    def current(self) -> Knowledge:
        return self._current

    def replace(self, knowledge: Knowledge) -> None:
        old, self._current = self._current, knowledge
        if old.policy.version != knowledge.policy.version:
            log.info("policy %s in force", knowledge.policy.version)
        for listener in list(self._listeners):
            listener(knowledge)

    def listen(self, listener: Callable[[Knowledge], None]) -> None:
        self._listeners.append(listener)


def decode_pseudonym_key(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ConfigError(f"{where}: not base64url") from None
    if len(key) != 32:
        raise ConfigError(f"{where}: must be 32 bytes in base64url (43 characters)")
    return key


def local_policy(config: KioskConfig) -> Policy:
    """The built-in (or `kiosk.policy_dir`) policy of this venue type, with the local
    `max_trust_age_hours` and, when given, `standalone.policy_version`."""
    policy = load_policy(config.kiosk.venue_type, config.kiosk.policy_dir)
    changes: dict[str, Any] = {"max_trust_age_hours": config.kiosk.max_trust_age_hours}
    if config.standalone_mode and config.standalone.policy_version is not None:
        changes["version"] = config.standalone.policy_version
    return dataclasses.replace(policy, **changes)


def stale_knowledge(config: KioskConfig) -> Knowledge:
    """Nothing verified yet: no keys, no pseudonym key, lists never refreshed (trust_stale)."""
    return Knowledge(
        policy=local_policy(config),
        trust=TrustList(),
        revocation=RevocationList(),
        pseudonym_key=None,
        pseudonym_key_version=0,
        trust_updated_at=None,
        source="none",
    )


def from_collector_doc(doc: KioskConfigDoc, *, refreshed_at: float) -> Knowledge:
    """Knowledge from the collector's answer; raises DataFileError or ConfigError when it is
    unusable (the caller then keeps what it has)."""
    policy = policy_from_doc(doc.policy, doc.policy_version, float(doc.max_trust_age_hours))
    return Knowledge(
        policy=policy,
        trust=parse_trust_list(doc.trust_list),
        revocation=parse_revocation_list(doc.revocation_list),
        pseudonym_key=decode_pseudonym_key(doc.pseudonym_key.key, "pseudonym_key"),
        pseudonym_key_version=doc.pseudonym_key.version,
        trust_updated_at=refreshed_at,
        venue_closed=doc.unit_status == "closed",
        source="collector",
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
    """The last good configuration, or None when there is none; DataFileError when unreadable."""
    path = state_dir / CACHE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return KioskConfigDoc.model_validate(data["config"]), float(data["refreshed_at"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFileError(f"{path}: cached collector configuration unreadable ({exc})") from None


def collector_knowledge(config: KioskConfig) -> Knowledge:
    """At start in collector mode: the cached configuration, else `stale_knowledge`."""
    try:
        cached = load_cached_doc(config.kiosk.state_dir)
    except DataFileError as exc:
        log.warning("%s; starting without it until the collector answers", exc)
        cached = None
    if cached is None:
        return stale_knowledge(config)
    doc, refreshed_at = cached
    try:
        return from_collector_doc(doc, refreshed_at=refreshed_at)
    except KioskError as exc:
        log.warning("cached collector configuration unusable (%s); waiting for the collector", exc)
        return stale_knowledge(config)


class StandaloneKnowledge:
    """Knowledge from the `[standalone]` files, reloaded when they change."""

    def __init__(self, config: KioskConfig) -> None:
        if not config.standalone_mode:
            raise ValueError("collector.url is set: this kiosk is not standalone")
        self._config = config
        self._stamp: tuple[tuple[int, int], ...] | None = None

    def _files(self) -> list[Path]:
        alone = self._config.standalone
        files = [p for p in (alone.trust_list, alone.revocation_list) if p is not None]
        if alone.pseudonym_key_file is not None:
            files.append(alone.pseudonym_key_file)
        return files

    def _current_stamp(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path in self._files():
            try:
                stat = path.stat()
                stamps.append((stat.st_mtime_ns, stat.st_size))
            except OSError:
                stamps.append((-1, -1))
        return tuple(stamps)

    def load(self) -> Knowledge:
        """Read every file now; ConfigError or DataFileError names the one that is wrong."""
        alone = self._config.standalone
        stamp = self._current_stamp()
        assert alone.trust_list is not None  # the config refuses standalone without one
        trust = load_trust_list(alone.trust_list)
        lists = [alone.trust_list]
        revocation = RevocationList()
        if alone.revocation_list is not None:
            revocation = load_revocation_list(alone.revocation_list)
            lists.append(alone.revocation_list)
        try:
            refreshed = min(path.stat().st_mtime for path in lists)
        except OSError as exc:
            raise DataFileError(f"cannot stat a list file: {exc}") from None
        knowledge = Knowledge(
            policy=local_policy(self._config),
            trust=trust,
            revocation=revocation,
            pseudonym_key=self._pseudonym_key(),
            pseudonym_key_version=alone.pseudonym_key_version,
            trust_updated_at=refreshed,
            source="standalone",
        )
        self._stamp = stamp
        return knowledge

    def changed(self) -> bool:
        return self._stamp is not None and self._current_stamp() != self._stamp

    def reload_if_changed(self) -> Knowledge | None:
        """New knowledge when a file changed and reads well; None otherwise (a bad new file is
        logged once and the last good copy stays in force)."""
        if not self.changed():
            return None
        stamp = self._current_stamp()
        try:
            knowledge = self.load()
        except KioskError as exc:
            self._stamp = stamp  # do not retry (and log) until the file changes again
            log.warning("kept the last good lists: %s", exc)
            return None
        log.info("reloaded the standalone trust list, revocation list and key")
        return knowledge

    def _pseudonym_key(self) -> bytes:
        alone = self._config.standalone
        if alone.pseudonym_key is not None:
            return decode_pseudonym_key(
                alone.pseudonym_key.get_secret_value(), "standalone.pseudonym_key"
            )
        path = alone.pseudonym_key_file
        assert path is not None  # the config requires one of the two
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise ConfigError(
                f"standalone.pseudonym_key_file = {str(path)!r}: no such file"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"standalone.pseudonym_key_file = {str(path)!r}: cannot read it ({exc})"
            ) from None
        return decode_pseudonym_key(text, f"standalone.pseudonym_key_file = {str(path)!r}")


def initial_knowledge(config: KioskConfig) -> tuple[Knowledge, StandaloneKnowledge | None]:
    """What the door starts with, and the standalone loader to poll for changes (if any).
    Raises ConfigError / DataFileError in standalone mode when a file is wrong: a standalone
    kiosk has nothing else to go on and must not start half-configured."""
    if config.standalone_mode:
        loader = StandaloneKnowledge(config)
        return loader.load(), loader
    return collector_knowledge(config), None
