"""The collector's kiosk configuration, applied to the running door.

A new document is validated (`wire.KioskConfigDoc`, then the trust and revocation lists and the
pseudonym key through `knowledge.from_collector_doc`) and replaces the door's knowledge in one
step (`KnowledgeHolder.replace`): the next visit is decided under the new policy and lists, no
restart. The last good document is kept on disk (mode 0600, it holds the pseudonym key) so an
offline start still works. A `304` means what is in force is what the collector publishes: the
lists count as refreshed (the trust age restarts, here and in the cached copy). A bad document
changes nothing and says why, without the values it holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from kiosk.door.config import KioskConfig
from kiosk.door.knowledge import KnowledgeHolder, from_collector_doc, save_cached_doc
from kiosk.errors import KioskError
from kiosk.wire import KioskConfigDoc

log = logging.getLogger(__name__)


class ConfigApplier:
    """`apply` a fetched document or note an `unchanged` one; `etag` is what to send as
    If-None-Match next, `state` a line for the status page."""

    def __init__(
        self,
        holder: KnowledgeHolder,
        config: KioskConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._holder = holder
        self._config = config
        self._clock = clock
        self.etag: str | None = None
        self.state = "not fetched"
        self.applied_at: float | None = None
        self._raw: dict[str, Any] | None = None
        self._mismatch_logged = False

    async def apply(self, raw: dict[str, Any], etag: str | None) -> str | None:
        """Put the document in force; None when it was, else what is wrong with it."""
        now = self._clock()
        try:
            doc = KioskConfigDoc.model_validate(raw)
            knowledge = from_collector_doc(doc, refreshed_at=now)
        except (ValidationError, KioskError) as exc:
            problem = _summary(exc) if isinstance(exc, ValidationError) else str(exc)
            log.error(
                "the collector's configuration is unusable (%s); keeping policy %s and the "
                "lists in force",
                problem,
                self._holder.current().policy.version,
                extra={"event": "config_rejected"},
            )
            self.state = f"rejected: {problem}"[:300]
            return problem
        self._check_identity(doc)
        self._holder.replace(knowledge)
        self.etag, self._raw = etag, raw
        self.state, self.applied_at = f"applied {doc.policy_version}", now
        log.info(
            "applied the collector's configuration: policy %s, %d trusted keys, %d revoked, "
            "unit %s",
            doc.policy_version,
            len(knowledge.trust),
            len(knowledge.revocation.revoked),
            doc.unit_status,
            extra={"event": "config_applied", "policy_version": doc.policy_version},
        )
        await self._keep(raw, now)
        return None

    async def unchanged(self) -> None:
        """A 304 for `etag`: the knowledge in force is current as of now."""
        now = self._clock()
        current = self._holder.current()
        if current.source == "collector":
            self._holder.replace(dataclasses.replace(current, trust_updated_at=now))
        self.state = "unchanged"
        if self._raw is not None:
            await self._keep(self._raw, now)

    async def _keep(self, raw: dict[str, Any], refreshed_at: float) -> None:
        try:
            await asyncio.to_thread(
                save_cached_doc, self._config.kiosk.state_dir, raw, refreshed_at
            )
        except OSError as exc:
            # In force all the same; only an offline restart would miss it.
            log.warning(
                "could not keep the configuration on disk (%s): an offline restart would use "
                "an older copy",
                exc.strerror or exc,
                extra={"event": "config_cache_failed"},
            )

    def _check_identity(self, doc: KioskConfigDoc) -> None:
        kiosk = self._config.kiosk
        if (doc.kiosk_id, doc.venue_id) == (kiosk.id, kiosk.venue_id) or self._mismatch_logged:
            return
        self._mismatch_logged = True
        log.error(
            "the collector knows this token as kiosk %s at venue %s, but kiosk.id/venue_id say "
            "%s at %s: its entries will be refused until they match",
            doc.kiosk_id,
            doc.venue_id,
            kiosk.id,
            kiosk.venue_id,
            extra={"event": "identity_mismatch"},
        )


def _summary(exc: ValidationError) -> str:
    """Where the document is wrong, without the values (the pseudonym key may be among them)."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "(document)"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
