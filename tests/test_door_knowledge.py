"""Where the door's knowledge comes from: standalone files (reloaded when they change, the last
good copy kept when a new one is bad), the collector's cached configuration, or nothing yet."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kiosk.demo.kit import StandaloneKit, make_kit
from kiosk.door.config import KioskConfig
from kiosk.door.knowledge import (
    KnowledgeHolder,
    StandaloneKnowledge,
    collector_knowledge,
    initial_knowledge,
    save_cached_doc,
)
from kiosk.errors import KioskError


@pytest.fixture
def kit(tmp_path: Path) -> StandaloneKit:
    return make_kit(tmp_path)


def test_standalone_files_make_fresh_knowledge(kit: StandaloneKit) -> None:
    config = KioskConfig.model_validate(
        kit.config(kiosk={"venue_type": "hospital"}, standalone={"policy_version": "local-3"})
    )
    knowledge, loader = initial_knowledge(config)
    assert loader is not None
    assert knowledge.policy.version == "local-3"
    assert knowledge.trust_fresh(time.time())
    assert len(knowledge.trust) == 1 and knowledge.pseudonym_key is not None
    assert "key" not in repr(knowledge).replace("keys=", "")  # no secret in a repr


def test_old_list_files_are_stale(kit: StandaloneKit) -> None:
    old = time.time() - 49 * 3600
    os.utime(kit.revocation_list, (old, old))
    knowledge, _ = initial_knowledge(KioskConfig.model_validate(kit.config()))
    assert not knowledge.trust_fresh(time.time())


def test_changed_files_are_reloaded_and_a_bad_one_is_not(kit: StandaloneKit) -> None:
    loader = StandaloneKnowledge(KioskConfig.model_validate(kit.config()))
    first = loader.load()
    assert loader.reload_if_changed() is None  # nothing changed
    kit.issuer.code("revoked", int(time.time()))
    time.sleep(0.01)
    kit.write_lists()
    second = loader.reload_if_changed()
    assert second is not None and len(second.revocation.revoked) == 1
    assert len(first.revocation.revoked) == 0
    kit.trust_list.write_text("{not json")
    assert loader.reload_if_changed() is None  # kept the last good copy
    assert loader.reload_if_changed() is None  # and does not complain again


def test_a_broken_standalone_file_stops_the_start(kit: StandaloneKit) -> None:
    kit.pseudonym_key_file.write_text("short\n")
    with pytest.raises(KioskError, match="pseudonym_key_file"):
        initial_knowledge(KioskConfig.model_validate(kit.config()))


def collector_config(kit: StandaloneKit) -> KioskConfig:
    token = kit.folder / "token"
    token.write_text("t" * 43)
    data = {k: v for k, v in kit.config().items() if k != "standalone"}
    data["collector"] = {"url": "https://collector.example", "token_file": str(token)}
    return KioskConfig.model_validate(data)


def test_collector_mode_without_cache_starts_stale_and_a_bad_cache_too(
    kit: StandaloneKit,
) -> None:
    config = collector_config(kit)
    knowledge = collector_knowledge(config)
    assert (knowledge.source, knowledge.trust_updated_at, knowledge.pseudonym_key) == (
        "none",
        None,
        None,
    )
    kit.state.mkdir()
    (kit.state / "collector-config.json").write_text("{truncated")
    assert collector_knowledge(config).source == "none"
    save_cached_doc(kit.state, {"kiosk_id": "k"}, time.time())  # not a configuration
    assert collector_knowledge(config).source == "none"


def test_the_holder_tells_its_listeners(kit: StandaloneKit) -> None:
    knowledge, _ = initial_knowledge(KioskConfig.model_validate(kit.config()))
    holder = KnowledgeHolder(knowledge)
    heard = []
    holder.listen(heard.append)
    from dataclasses import replace

    closed = replace(knowledge, venue_closed=True)
    holder.replace(closed)
    assert holder.current() is closed and heard == [closed]
