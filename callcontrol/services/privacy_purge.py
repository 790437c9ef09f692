"""Purges personal data past its retention, periodically, inside ``callcontrol serve``.

Every ``purge_interval_s`` (an hour by default), starting at once, one tick:
caller numbers of CDRs and voicemail recordings older than ``retention_days``
are removed by the purge the composition root hands in
(``repositories/personal_data.purge_expired``). The purge is idempotent, so a
restart or a second instance only repeats work that finds nothing left. A
failing tick is logged and the next one tries again; only cancellation stops
the loop.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

import structlog

from callcontrol.services.numbers import Clock, utc_now
from callcontrol.services.periodic import every, owned_task
from callcontrol.settings import PrivacySettings

log = structlog.get_logger(__name__)


class PurgeCounts(Protocol):
    @property
    def calls_anonymised(self) -> int: ...
    @property
    def recordings_deleted(self) -> int: ...


class ExpiredDataPurge(Protocol):
    """Removes what is older than ``retention_days`` before ``now``; says how much."""

    async def __call__(self, now: datetime, retention_days: int) -> PurgeCounts: ...


class PrivacyPurgeScheduler:
    def __init__(
        self, *, purge: ExpiredDataPurge, settings: PrivacySettings, clock: Clock = utc_now
    ) -> None:
        self._purge = purge
        self._settings = settings
        self._clock = clock

    async def run(self) -> None:
        """Tick forever; cancel the task to stop."""
        await every(self._settings.purge_interval_s, self.tick)

    def running(self) -> AbstractAsyncContextManager[asyncio.Task[None]]:
        """The loop as an owned task, cancelled and awaited on exit (for a cleanup_ctx)."""
        return owned_task(self.run, name="privacy-purge")

    async def tick(self) -> PurgeCounts | None:
        """One purge; None if it failed (logged, not raised: the next tick retries)."""
        try:
            counts = await self._purge(self._clock(), self._settings.retention_days)
        except Exception:
            log.exception("privacy_purge_failed")
            return None
        if counts.calls_anonymised or counts.recordings_deleted:
            log.info(
                "privacy_purge_done",
                calls_anonymised=counts.calls_anonymised,
                recordings_deleted=counts.recordings_deleted,
            )
        return counts
