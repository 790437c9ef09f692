"""Runs the daily billing and the minute-by-minute expiries inside ``callcontrol serve``.

Every ``interval_s`` (a minute) one tick: once the clock is past
``run_at_hour_utc`` and no run for today has finished (the ``billing_runs``
table says, so a restart or a second instance does not matter: charges are
keyed anyway), the whole daily run; otherwise expire free tests and
reservations. A failing tick is logged and the next one tries again; only
cancellation stops the loop.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import datetime

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.notify.mailer import Mailer
from callcontrol.services.billing_run import PhoneNotifier, run_billing
from callcontrol.services.numbers import Clock, NumberService, utc_now
from callcontrol.services.periodic import every, owned_task
from callcontrol.services.tables import BillingRun
from callcontrol.settings import BillingSettings

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S = 60.0


class BillingScheduler:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: BillingSettings,
        mailer: Mailer,
        phone: PhoneNotifier | None = None,
        clock: Clock = utc_now,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._mailer = mailer
        self._phone = phone
        self._clock = clock
        self._interval_s = interval_s

    async def run(self) -> None:
        """Tick forever; cancel the task to stop."""
        await every(self._interval_s, self.tick)

    def running(self) -> AbstractAsyncContextManager[asyncio.Task[None]]:
        """The loop as an owned task, cancelled and awaited on exit (for a cleanup_ctx)."""
        return owned_task(self.run, name="billing-scheduler")

    async def tick(self) -> None:
        now = self._clock()
        try:
            if await self._daily_run_due(now):
                report = await run_billing(
                    self._sessions, today=now.date(), settings=self._settings,
                    mailer=self._mailer, phone=self._phone, now=now,
                )  # fmt: skip
                log.info("daily_billing_done", charges_posted=report.charges_posted)
            else:
                await self._expire(now)
        except Exception:  # a bad tick must not end billing; the next one retries
            log.exception("billing_tick_failed")

    async def _daily_run_due(self, now: datetime) -> bool:
        if now.hour < self._settings.run_at_hour_utc:
            return False
        async with self._sessions() as session:
            finished = await session.scalar(
                sa.select(BillingRun.id)
                .where(BillingRun.run_date == now.date(), BillingRun.finished_at.is_not(None))
                .limit(1)
            )
        return finished is None

    async def _expire(self, now: datetime) -> None:
        numbers = NumberService(sessions=self._sessions, mailer=self._mailer, clock=lambda: now)
        await numbers.expire_tests()
        await numbers.expire_reservations()
