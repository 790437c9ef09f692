"""The daily billing run: rent, suspension, disconnection, reminders, expiries.

``run_billing`` is idempotent and crash-safe. Every monthly charge is its own
short transaction, posted with the key ``monthly:<number_id>:<period_start>``
(the ledger refuses a key twice) together with the suspension it causes; so a
second run charges nothing again, and a run killed half-way is simply run
again: each number is charged exactly once per period. The run catches up
from the last *finished* run (``billing_runs``), so missed days are charged
period by period.

Steps, in order: charge what is due; suspend or reactivate numbers whose
balance moved elsewhere (call charges); disconnect numbers suspended for
``grace_days``; return numbers disconnected before today to the pool (the day
in between lets the former owner take a deleted number back, and keeps two
owners' charge keys of one number from meeting on one day); remind accounts
whose balance will not cover the next fees (mail and phone, once per charge
date); expire free tests and reservations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from itertools import groupby
from typing import Protocol, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import Account, Number
from callcontrol.domain.billing import (
    BillableNumber,
    MonthlyCharge,
    due_monthly_charges,
    next_charge_date,
    reminder_due,
    should_disconnect,
)
from callcontrol.domain.lifecycle import NumberAction
from callcontrol.domain.vocabulary import NumberKind, NumberState
from callcontrol.notify.mailer import Mailer
from callcontrol.services import transitions as tr
from callcontrol.services.mails import reminder_mail, send_logged
from callcontrol.services.numbers import NumberService, last_finished_run
from callcontrol.services.tables import BillingRun, NumberBillingState
from callcontrol.services.transitions import SYSTEM, Work
from callcontrol.settings import BillingSettings

log = structlog.get_logger(__name__)

S = NumberState
T = TypeVar("T")
Sessions = async_sessionmaker[AsyncSession]
BATCH = 500
_RENTED = (S.ACTIVE, S.SUSPENDED)


@dataclass(frozen=True, slots=True)
class LowBalanceNotice:
    account_id: int
    due_on: date
    balance_minor: int
    fees_minor: int
    currency: str
    numbers: tuple[str, ...]  # E.164


class PhoneNotifier(Protocol):
    """Tells the customer by phone that the balance will not cover the next fees."""

    async def notify_low_balance(self, notice: LowBalanceNotice) -> None: ...


class LoggingPhoneNotifier:
    """The default: no telephony robot wired, the notice is logged for the operator."""

    async def notify_low_balance(self, notice: LowBalanceNotice) -> None:
        log.info(
            "low_balance_phone_notice",
            account_id=notice.account_id,
            due_on=notice.due_on.isoformat(),
            balance_minor=notice.balance_minor,
            fees_minor=notice.fees_minor,
            numbers=list(notice.numbers),
        )


@dataclass(slots=True)
class BillingReport:
    run_date: date
    since: date | None = None  # the last finished run before this one
    charges_posted: int = 0
    charges_already_posted: int = 0
    suspended: int = 0
    reactivated: int = 0
    disconnected: int = 0
    returned_to_pool: int = 0
    reminders_sent: int = 0
    tests_expired: int = 0
    reservations_expired: int = 0

    def lines(self) -> list[str]:
        return [f"{f.name}: {getattr(self, f.name)}" for f in fields(self)]

    def count(self, steps: Sequence[tr.Step]) -> None:
        for _, step in steps:
            if step.action is NumberAction.SUSPEND:
                self.suspended += 1
            elif step.action is NumberAction.REACTIVATE:
                self.reactivated += 1


async def run_billing(
    sessions: Sessions,
    *,
    today: date,
    settings: BillingSettings,
    mailer: Mailer,
    phone: PhoneNotifier | None = None,
    now: datetime | None = None,
) -> BillingReport:
    """Run the daily billing for ``today``; safe to repeat and to re-run after a crash.

    ``now`` (tz-aware) stamps the transitions and expires tests; by default the
    current time of day on ``today``.
    """
    now = now or datetime.combine(today, datetime.now(UTC).time(), UTC)
    run = _Run(sessions, mailer, now, today, settings)
    run_id, run.report.since = await run.start()
    await run.charge_due()
    await run.rebalance_moved_balances()
    await run.disconnect_unpaid()
    await run.return_disconnected_to_pool()
    await run.remind(phone or LoggingPhoneNotifier())
    numbers = NumberService(sessions=sessions, mailer=mailer, clock=lambda: now)
    run.report.tests_expired = await numbers.expire_tests()
    run.report.reservations_expired = await numbers.expire_reservations()
    await run.finish(run_id)
    log.info("billing_run_finished", **{k: str(v) for k, v in vars_of(run.report).items()})
    return run.report


def vars_of(report: BillingReport) -> dict[str, object]:
    return {f.name: getattr(report, f.name) for f in fields(report)}


class _Run:
    def __init__(
        self, sessions: Sessions, mailer: Mailer, now: datetime, today: date,
        settings: BillingSettings,
    ) -> None:  # fmt: skip
        self.sessions, self.mailer, self.now = sessions, mailer, now
        self.today, self.settings = today, settings
        self.report = BillingReport(run_date=today)

    async def _txn(self, operation: Callable[[Work], Awaitable[T]]) -> T:
        return await tr.in_transaction(self.sessions, self.mailer, self.now, operation)

    async def start(self) -> tuple[int, date | None]:
        async with self.sessions() as session, session.begin():
            since = await last_finished_run(session, before=self.today)
            run = BillingRun(run_date=self.today, started_at=self.now)
            session.add(run)
            await session.flush()
            return run.id, since

    async def finish(self, run_id: int) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                sa.update(BillingRun)
                .where(BillingRun.id == run_id)
                .values(finished_at=self.now, charges_posted=self.report.charges_posted)
            )

    # -- rent --------------------------------------------------------------------------------

    async def charge_due(self) -> None:
        after = 0
        while batch := await self._rented_batch(after):
            after = batch[-1].number_id
            activated = {n.number_id: n.activated_on for n in batch}
            for charge in due_monthly_charges(batch, self.today, since=self.report.since):
                day = activated[charge.number_id]
                await self._txn(partial(self._charge, charge=charge, activated_on=day))

    async def _rented_batch(self, after: int) -> list[BillableNumber]:
        async with self.sessions() as session:
            rows = await session.execute(
                sa.select(
                    Number.id, Number.account_id, Number.activated_on, Number.monthly_fee_minor,
                    Number.currency, Number.state,
                )
                .where(
                    Number.id > after, Number.state.in_(_RENTED), Number.account_id.is_not(None),
                    Number.activated_on.is_not(None), Number.monthly_fee_minor > 0,
                )
                .order_by(Number.id)
                .limit(BATCH)
            )  # fmt: skip
            return [
                BillableNumber(
                    number_id=n, account_id=a, activated_on=d, monthly_fee_minor=fee,
                    currency=currency, state=state,
                )
                for n, a, d, fee, currency, state in rows.all()
                if a is not None and d is not None
            ]  # fmt: skip

    async def _charge(self, work: Work, charge: MonthlyCharge, activated_on: date) -> None:
        await tr.lock_account(work.session, charge.account_id)
        number = await tr.lock_number(work.session, charge.number_id)
        rental = (number.account_id, number.activated_on)
        if number.state not in _RENTED or rental != (charge.account_id, activated_on):
            return  # deleted, disconnected or re-rented since the batch was read
        posted = await ledger.post(
            work.session, account_id=charge.account_id, kind=charge.kind,
            amount_minor=-charge.amount_minor, currency=charge.currency,
            number_id=charge.number_id, period_start=charge.period_start,
            idempotency_key=charge.idempotency_key,
            description=f"monthly fee {number.e164} "
            f"{charge.period_start.isoformat()}..{charge.period_end.isoformat()}",
        )  # fmt: skip
        if not posted.posted:
            self.report.charges_already_posted += 1
            return
        self.report.charges_posted += 1
        self.report.count(await tr.rebalance(work, charge.account_id))

    # -- balances, disconnection, the pool ---------------------------------------------------

    async def rebalance_moved_balances(self) -> None:
        """Accounts whose numbers' state no longer matches the balance (call charges)."""
        owner = Account.id == Number.account_id
        mismatched = sa.or_(
            sa.and_(Number.state == S.ACTIVE, Account.balance_minor < 0),
            sa.and_(Number.state == S.SUSPENDED, Account.balance_minor > 0),
        )
        async with self.sessions() as session:
            accounts = (
                await session.scalars(
                    sa.select(Account.id).join(Number, owner).where(mismatched).distinct()
                )
            ).all()
        for account_id in accounts:
            self.report.count(await self._txn(partial(tr.rebalance, account_id=account_id)))

    async def disconnect_unpaid(self) -> None:
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    sa.select(Number.id)
                    .outerjoin(NumberBillingState, NumberBillingState.number_id == Number.id)
                    .where(Number.state == S.SUSPENDED)
                    .order_by(Number.id)
                )
            ).all()
        for (number_id,) in rows:
            self.report.disconnected += await self._txn(
                partial(self._disconnect_if_unpaid, number_id=number_id)
            )

    async def _disconnect_if_unpaid(self, work: Work, number_id: int) -> int:
        number = await tr.lock_number_with_owner(work.session, number_id)
        if number.state is not S.SUSPENDED:
            return 0
        state = await tr.billing_state(work.session, number_id)
        if state.suspended_since is None:  # suspended before this table knew it
            state.suspended_since = number.state_changed_at.date()
        since = state.suspended_since
        if not should_disconnect(since, self.today, self.settings.grace_days):
            return 0
        reason = f"unpaid, suspended since {since.isoformat()}"
        await tr.apply(work, number, NumberAction.DISCONNECT, SYSTEM, reason=reason)
        return 1

    async def return_disconnected_to_pool(self) -> None:
        start_of_today = datetime.combine(self.today, time(), UTC)
        async with self.sessions() as session:
            ids = (
                await session.scalars(
                    sa.select(Number.id).where(
                        Number.state == S.DISCONNECTED,
                        Number.kind != NumberKind.SMS_ONCE,
                        Number.state_changed_at < start_of_today,
                    )
                )
            ).all()
        for number_id in ids:
            self.report.returned_to_pool += await self._txn(
                partial(self._return_to_pool, number_id=number_id)
            )

    async def _return_to_pool(self, work: Work, number_id: int) -> int:
        number = await tr.lock_number(work.session, number_id)
        if number.state is not S.DISCONNECTED:
            return 0
        await tr.apply(work, number, NumberAction.RETURN_TO_POOL, SYSTEM)
        return 1

    # -- reminders ---------------------------------------------------------------------------

    async def remind(self, phone: PhoneNotifier) -> None:
        for due in await self._reminders_due():
            if not await self._txn(partial(_mark_reminded, due=due)):
                continue
            message = reminder_mail(
                due.email, due_on=due.due_on, balance_minor=due.balance_minor,
                fees_minor=due.fees_minor, currency=due.currency, numbers=due.e164s,
            )  # fmt: skip
            if not await send_logged(self.mailer, message, account_id=due.account_id):
                await self._txn(partial(_unmark_reminded, due=due))  # retried next run
                continue
            self.report.reminders_sent += 1
            await phone.notify_low_balance(due.notice())

    async def _reminders_due(self) -> list[_Reminder]:
        horizon = self.today + timedelta(days=self.settings.reminder_days)
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    sa.select(
                        Number.account_id, Number.id, Number.e164, Number.activated_on,
                        Number.monthly_fee_minor, Number.currency,
                        NumberBillingState.last_reminder_for, Account.balance_minor, Account.email,
                    )
                    .join(Account, Account.id == Number.account_id)
                    .outerjoin(NumberBillingState, NumberBillingState.number_id == Number.id)
                    .where(
                        Number.state.in_(_RENTED), Number.activated_on.is_not(None),
                        Number.monthly_fee_minor > 0, Account.email.is_not(None),
                    )
                    .order_by(Number.account_id, Number.id)
                )
            ).all()  # fmt: skip
        rents = [
            _Rent(a, n, e164, d, fee, currency, last, balance, email)
            for a, n, e164, d, fee, currency, last, balance, email in rows
            if a is not None and d is not None and email is not None
        ]
        due: list[_Reminder] = []
        for _, of_account in groupby(rents, key=lambda r: r.account_id):
            due += self._account_reminders(list(of_account), horizon)
        return due

    def _account_reminders(self, rents: list[_Rent], horizon: date) -> list[_Reminder]:
        """Per charge date in the window: does the balance cover every fee up to it?"""
        by_date: dict[date, list[_Rent]] = defaultdict(list)
        for rent in rents:
            upcoming = next_charge_date(rent.activated_on, self.today)
            if upcoming <= horizon:
                by_date[upcoming].append(rent)
        reminders: list[_Reminder] = []
        fees_so_far = 0
        for day in sorted(by_date):
            fees_so_far += sum(r.fee_minor for r in by_date[day])
            first = by_date[day][0]
            needing = [
                r for r in by_date[day]
                if reminder_due(
                    first.balance_minor, fees_so_far, day, self.today,
                    self.settings.reminder_days, r.last_reminder_for,
                )
            ]  # fmt: skip
            if needing:
                reminders.append(
                    _Reminder(
                        account_id=first.account_id, email=first.email, due_on=day,
                        balance_minor=first.balance_minor, fees_minor=fees_so_far,
                        currency=first.currency, number_ids=tuple(r.number_id for r in needing),
                        e164s=tuple(r.e164 for r in needing),
                    )
                )  # fmt: skip
        return reminders


@dataclass(frozen=True, slots=True)
class _Rent:
    account_id: int
    number_id: int
    e164: str
    activated_on: date
    fee_minor: int
    currency: str
    last_reminder_for: date | None
    balance_minor: int
    email: str


@dataclass(frozen=True, slots=True)
class _Reminder:
    account_id: int
    email: str
    due_on: date
    balance_minor: int
    fees_minor: int
    currency: str
    number_ids: tuple[int, ...]
    e164s: tuple[str, ...]

    def notice(self) -> LowBalanceNotice:
        return LowBalanceNotice(
            self.account_id, self.due_on, self.balance_minor, self.fees_minor, self.currency,
            self.e164s,
        )  # fmt: skip


async def _mark_reminded(work: Work, due: _Reminder) -> bool:
    """Claim the reminder (False: another run already sent it for this date)."""
    await tr.lock_account(work.session, due.account_id)
    states = [await _locked_state(work, n) for n in due.number_ids]
    if all(s.last_reminder_for == due.due_on for s in states):
        return False
    for state in states:
        state.last_reminder_for = due.due_on
    return True


async def _unmark_reminded(work: Work, due: _Reminder) -> None:
    for number_id in due.number_ids:
        state = await _locked_state(work, number_id)
        if state.last_reminder_for == due.due_on:
            state.last_reminder_for = None


async def _locked_state(work: Work, number_id: int) -> NumberBillingState:
    await tr.lock_number(work.session, number_id)
    return await tr.billing_state(work.session, number_id)
