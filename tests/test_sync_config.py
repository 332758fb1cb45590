"""Pulling the kiosk configuration: applied without a restart, ETag and 304, a bad document
keeps what is in force, the last good copy on disk for an offline start."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_sync_fake import SyncKit, make_sync_kit, until

from kiosk.codes import verify
from kiosk.door.knowledge import CACHE_NAME, Knowledge, collector_knowledge
from kiosk.door.sync import SyncService
from kiosk.model import Verdict


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[SyncKit]:
    async with make_sync_kit(tmp_path) as made:
        yield made


def cached(kit: SyncKit) -> dict[str, object]:
    path = kit.runtime.config.kiosk.state_dir / CACHE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    return dict(json.loads(path.read_text()))


async def test_a_pulled_configuration_is_applied_and_kept_on_disk(kit: SyncKit) -> None:
    holder = kit.runtime.knowledge
    assert holder.current().source == "none"
    seen: list[Knowledge] = []
    holder.listen(seen.append)
    service = kit.service()
    assert await service.pull_config() is None
    knowledge = holder.current()
    assert (knowledge.source, knowledge.policy.version) == ("collector", "default-1")
    assert len(knowledge.trust) == 1 and knowledge.pseudonym_key is not None
    assert knowledge.trust_fresh(time.time()) and seen == [knowledge]
    assert cached(kit)["config"] == kit.collector.config_doc
    assert service.status.config == "applied default-1"


async def test_an_unchanged_configuration_is_a_304_that_refreshes_trust_age(
    kit: SyncKit,
) -> None:
    clock = [time.time()]
    kit.runtime.clock = lambda: clock[0]
    service = kit.service()
    assert await service.pull_config() is None
    first = kit.runtime.knowledge.current()
    clock[0] += 3600
    assert await service.pull_config() is None
    assert kit.collector.config_requests == [None, '"cfg-1"']
    assert service.status.config == "unchanged"
    again = kit.runtime.knowledge.current()
    assert again.trust_updated_at == clock[0] and again.trust_age_s(clock[0]) == 0
    assert (again.policy, again.trust, again.pseudonym_key) == (
        first.policy,
        first.trust,
        first.pseudonym_key,
    )
    assert cached(kit)["refreshed_at"] == clock[0]  # an offline restart knows it too


async def test_a_published_revocation_list_denies_the_code_without_a_restart(
    kit: SyncKit,
) -> None:
    now = int(time.time())
    code = kit.issuer.code("revoked", now)  # its holder goes on the list below
    service = kit.service()
    await service.pull_config()
    holder = kit.runtime.knowledge
    before = verify(code, holder.current().trust, holder.current().revocation, now)
    assert before.verdict is Verdict.VALID
    kit.collector.publish(revocation_list=kit.issuer.revocation(now).to_json())
    assert await service.pull_config() is None
    after = verify(code, holder.current().trust, holder.current().revocation, now)
    assert after.verdict is Verdict.REVOKED


async def test_policy_and_unit_status_change_without_a_restart(kit: SyncKit) -> None:
    service = kit.service()
    await service.pull_config()
    policy = {**kit.collector.config_doc["policy"], "max_temperature_c": 37.0}
    kit.collector.publish(policy=policy, policy_version="strict-2", unit_status="closed")
    assert await service.pull_config() is None
    knowledge = kit.runtime.knowledge.current()
    assert (knowledge.policy.version, knowledge.policy.max_temperature_c) == ("strict-2", 37.0)
    assert knowledge.venue_closed


@pytest.mark.parametrize(
    "change",
    [
        {"pseudonym_key": {"version": 2, "key": "short"}},
        {"trust_list": {"keys": [{"kty": "RSA"}]}},
        {"revocation_list": {"updated": "yesterday", "revoked": []}},
        {"policy": {"max_temperature_c": 99}},
    ],
    ids=["pseudonym_key", "trust_list", "revocation_list", "policy"],
)
async def test_a_bad_document_keeps_the_knowledge_in_force(
    kit: SyncKit, caplog: pytest.LogCaptureFixture, change: dict[str, object]
) -> None:
    service = kit.service()
    await service.pull_config()
    good = kit.runtime.knowledge.current()
    on_disk = cached(kit)
    kit.collector.publish(**change)
    with caplog.at_level(logging.ERROR, logger="kiosk.door.sync"):
        failure = await service.pull_config()
    assert failure is not None and failure.kind == "rejected"
    assert kit.runtime.knowledge.current() is good
    assert cached(kit) == on_disk
    assert service.status.config.startswith("rejected")
    assert "keeping policy default-1" in caplog.text
    key = kit.collector.config_doc["pseudonym_key"]["key"]
    assert key not in caplog.text
    # Fixed at the collector: picked up at the next pull.
    kit.collector.publish(**{name: on_disk["config"][name] for name in change})  # type: ignore[index]
    assert await service.pull_config() is None
    assert kit.runtime.knowledge.current() is not good


async def test_an_offline_start_uses_the_last_good_copy(kit: SyncKit) -> None:
    service = kit.service()
    await service.pull_config()
    pulled = kit.runtime.knowledge.current()
    await kit.collector.stop()
    # A restart: what `kiosk run` starts from before the collector answers.
    restarted = collector_knowledge(kit.runtime.config)
    assert (restarted.source, restarted.policy, restarted.trust) == (
        "collector",
        pulled.policy,
        pulled.trust,
    )
    assert restarted.pseudonym_key == pulled.pseudonym_key
    assert restarted.trust_updated_at == pulled.trust_updated_at


async def test_refused_and_failing_pulls_are_retried_and_alerted(kit: SyncKit) -> None:
    service = kit.service()
    kit.collector.down_for_config = True
    failure = await service.pull_config()
    assert failure is not None and failure.kind == "server_error"
    right = kit.collector.token
    kit.token_file.write_text("z" * 43)
    failure = await service.pull_config()
    assert failure is not None and failure.kind == "refused"
    assert service.status.alert is not None
    kit.token_file.write_text(right)
    kit.collector.down_for_config = False
    assert await service.pull_config() is None
    assert service.status.alert is None


async def test_the_running_service_retries_a_failed_pull_soon(kit: SyncKit) -> None:
    kit.collector.down_for_config = True
    service: SyncService = kit.service()
    task = asyncio.create_task(service.run())
    try:  # config_interval is 300 s: the quick retry is the backoff's
        await until(lambda: len(kit.collector.config_requests) >= 2)
        kit.collector.down_for_config = False
        await until(lambda: kit.runtime.knowledge.current().source == "collector")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
