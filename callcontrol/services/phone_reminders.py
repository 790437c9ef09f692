"""Low-balance reminders by phone: queued by the billing run, called by a worker.

The billing run mails its reminder and hands the same notice to
``PhoneReminderQueue`` (its ``PhoneNotifier``), which stores one
``phone_reminders`` row per account and charge date - the unique key makes a
second notice for the same fee a no-op, whoever sends it. ``PhoneReminderWorker``
then places the due calls (``run_due``; ``callcontrol serve`` runs it every
``interval_s``, ``callcontrol reminders call`` once). The rules of when and how
often are ``domain.phone_reminders``'; here:

- an attempt is claimed before the call with a compare-and-set on
  ``attempts`` and recorded as a ``phone_reminder_attempts`` row (unique per
  attempt number), so two workers never call for the same attempt;
- every attempt's outcome and Q.850 cause is written when the call ends; an
  attempt left unfinished by a crash is closed as failed by the next run and
  the retry rules apply;
- without an uploaded prompt nothing is called (and no attempt is spent); an
  account whose contact phone was removed is given up.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.money_models import (
    AccountContact,
    PhoneReminder,
    PhoneReminderAttempt,
    ReminderPrompt,
)
from callcontrol.db.types import utcnow
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.phone_reminders import (
    AttemptOutcome,
    CallHours,
    ReminderState,
    RetryPolicy,
    after_attempt,
    next_call_time,
    notice_media,
    outcome_of,
    parse_contact_phone,
)
from callcontrol.services.billing_run import LowBalanceNotice
from callcontrol.services.periodic import every
from callcontrol.settings import PhoneReminderSettings

log = structlog.get_logger(__name__)
Sessions = async_sessionmaker[AsyncSession]
MAX_PARALLEL_CALLS = 10


class CallOutcome(Protocol):
    @property
    def answered(self) -> bool: ...

    @property
    def cause(self) -> int | None: ...


class ReminderCaller(Protocol):
    async def call(self, *, phone: str, channel_id: str, media: Sequence[str]) -> CallOutcome: ...


class PhoneReminderQueue:
    """The billing run's phone notifier: one stored reminder per account and fee date."""

    def __init__(self, *, sessions: Sessions, clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    async def notify_low_balance(self, notice: LowBalanceNotice) -> None:
        async with self._sessions() as session:
            contact = await session.get(AccountContact, notice.account_id)
        if contact is None:
            log.info("phone_reminder_no_contact_phone", account_id=notice.account_id)
            return
        try:
            async with self._sessions() as session, session.begin():
                session.add(PhoneReminder(
                    account_id=notice.account_id, due_on=notice.due_on,
                    number=notice.numbers[0] if notice.numbers else "",
                    amount_minor=notice.fees_minor, currency=notice.currency,
                    state=ReminderState.PENDING.value, attempts=0,
                    next_attempt_at=self._clock(), created_at=self._clock(),
                ))  # fmt: skip
        except IntegrityError:  # already queued for this fee: never twice
            log.info("phone_reminder_already_queued", account_id=notice.account_id,
                     due_on=notice.due_on.isoformat())  # fmt: skip
            return
        log.info("phone_reminder_queued", account_id=notice.account_id,
                 due_on=notice.due_on.isoformat())  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Claimed:
    reminder_id: int
    attempt: int
    phone: str
    channel_id: str
    media: list[str]


class PhoneReminderWorker:
    def __init__(
        self, *, sessions: Sessions, caller: ReminderCaller, settings: PhoneReminderSettings,
        prompt_root: Path, clock: Callable[[], datetime] = utcnow,
    ) -> None:  # fmt: skip
        """``prompt_root``: the media folder as Asterisk sees it (prompts are played from it)."""
        self._sessions = sessions
        self._caller = caller
        self._settings = settings
        self._prompt_root = prompt_root
        self._clock = clock
        self._hours = CallHours(settings.call_from_hour, settings.call_until_hour)
        self._policy = RetryPolicy(settings.max_attempts, timedelta(seconds=settings.retry_after_s))

    async def run_due(self) -> int:
        """Place every due call (in parallel, bounded); the number of calls placed."""
        await self._close_stale()
        prompt = await self._prompt()
        if prompt is None:
            log.warning("phone_reminders_without_prompt")
            return 0
        claimed = [c for r in await self._due() if (c := await self._claim(r, prompt))]
        limit = asyncio.Semaphore(MAX_PARALLEL_CALLS)

        async def one(call: _Claimed) -> None:
            async with limit:
                await self._place(call)

        async with asyncio.TaskGroup() as group:
            for call in claimed:
                group.create_task(one(call))
        return len(claimed)

    async def _prompt(self) -> str | None:
        async with self._sessions() as session:
            name = await session.scalar(
                sa.select(ReminderPrompt.stored_name)
                .order_by(ReminderPrompt.created_at.desc(), ReminderPrompt.id.desc())
                .limit(1)
            )
        return None if name is None else str(self._prompt_root / name.removesuffix(".wav"))

    async def _due(self) -> list[PhoneReminder]:
        async with self._sessions() as session:
            rows = await session.scalars(
                sa.select(PhoneReminder).where(
                    PhoneReminder.state == ReminderState.PENDING.value,
                    PhoneReminder.next_attempt_at <= self._clock(),
                ).order_by(PhoneReminder.next_attempt_at, PhoneReminder.id)
            )  # fmt: skip
            return list(rows)

    async def _claim(self, reminder: PhoneReminder, prompt: str) -> _Claimed | None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            contact = await session.get(AccountContact, reminder.account_id)
            if contact is None:
                await _set(session, reminder, ReminderState.GAVE_UP, None)
                return None
            try:
                phone = parse_contact_phone(contact.phone)
            except InvalidInput:
                await _set(session, reminder, ReminderState.GAVE_UP, None)
                return None
            allowed = next_call_time(phone, now, self._hours)
            if allowed > now:  # night where the phone is: wait for the morning
                await _set(session, reminder, ReminderState.PENDING, allowed)
                return None
            attempt = reminder.attempts + 1
            taken = await session.execute(
                sa.update(PhoneReminder)
                .where(PhoneReminder.id == reminder.id,
                       PhoneReminder.attempts == reminder.attempts,
                       PhoneReminder.state == ReminderState.PENDING.value)
                .values(attempts=attempt, next_attempt_at=None)
            )  # fmt: skip
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None  # another worker took this attempt
            channel_id = f"reminder-{reminder.id}-{attempt}-{uuid.uuid4().hex[:8]}"
            session.add(PhoneReminderAttempt(
                reminder_id=reminder.id, attempt=attempt, phone=phone.e164,
                channel_id=channel_id, started_at=now,
            ))  # fmt: skip
        media = notice_media(prompt, reminder.number, reminder.amount_minor, reminder.currency,
                             reminder.due_on)  # fmt: skip
        return _Claimed(reminder.id, attempt, phone.e164, channel_id, media)

    async def _place(self, call: _Claimed) -> None:
        log.info("phone_reminder_calling", reminder_id=call.reminder_id, attempt=call.attempt,
                 channel_id=call.channel_id)  # fmt: skip
        try:
            result = await self._caller.call(
                phone=call.phone, channel_id=call.channel_id, media=call.media
            )
            outcome = outcome_of(result.answered, result.cause)
            cause = result.cause
        except Exception:  # the attempt is recorded as failed; the retry rules go on
            log.exception("phone_reminder_call_crashed", reminder_id=call.reminder_id)
            outcome, cause = AttemptOutcome.FAILED, None
        await self._finish(call.reminder_id, call.attempt, outcome, cause)

    async def _finish(
        self, reminder_id: int, attempt: int, outcome: AttemptOutcome, cause: int | None
    ) -> None:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            await session.execute(
                sa.update(PhoneReminderAttempt)
                .where(PhoneReminderAttempt.reminder_id == reminder_id,
                       PhoneReminderAttempt.attempt == attempt)
                .values(finished_at=now, outcome=outcome.value, cause=cause)
            )  # fmt: skip
            reminder = await session.get(PhoneReminder, reminder_id)
            if reminder is None:
                return
            then = after_attempt(outcome, attempt, now, self._policy)
            await _set(session, reminder, then.state, then.next_attempt_at)
        log.info("phone_reminder_attempt_done", reminder_id=reminder_id, attempt=attempt,
                 outcome=outcome.value, cause=cause, state=then.state.value)  # fmt: skip

    async def _close_stale(self) -> None:
        """Attempts a crash left running: failed, and the reminder goes on by the rules."""
        s = self._settings
        cutoff = self._clock() - timedelta(seconds=s.ring_timeout_s + s.max_call_s + 60)
        query = sa.select(PhoneReminderAttempt.reminder_id, PhoneReminderAttempt.attempt).where(
            PhoneReminderAttempt.outcome.is_(None), PhoneReminderAttempt.started_at < cutoff
        )
        async with self._sessions() as session:
            stale = (await session.execute(query)).all()
        for reminder_id, attempt in stale:
            await self._finish(reminder_id, attempt, AttemptOutcome.FAILED, None)


async def _set(
    session: AsyncSession, reminder: PhoneReminder, state: ReminderState, at: datetime | None
) -> None:
    await session.execute(
        sa.update(PhoneReminder)
        .where(PhoneReminder.id == reminder.id)
        .values(state=state.value, next_attempt_at=at)
    )


async def run_every(
    worker: PhoneReminderWorker, interval_s: float, *, ready: Callable[[], bool] = lambda: True
) -> None:
    """``callcontrol serve``'s loop: a failing round is logged, the next one retries; a
    round while not ``ready`` (the reminder app's lease is another engine's) calls nobody."""

    async def one_round() -> None:
        try:
            if ready():
                await worker.run_due()
        except Exception:
            log.exception("phone_reminders_round_failed")

    await every(interval_s, one_round)
