"""Carries out one life-cycle transition inside the caller's transaction.

``apply`` asks ``lifecycle.transition`` about a number row the caller has
locked, stores the new state, writes the ``number_events`` audit row and turns
each effect into a write: owner and expiry columns, ``number_billing_state``,
ledger charges (``ledger.post`` with an idempotency key) and queued mail.
A charge is followed by ``rebalance`` of the charged account, so a fee that
pushes the balance below zero suspends the account's numbers in the same
transaction.

Lock order, kept by every caller: the account row first, then number rows in
id order. A refused transition raises before anything is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import (
    Account,
    ForwardingDestination,
    ForwardingRule,
    LedgerEntry,
    Number,
    NumberEvent,
)
from callcontrol.domain import lifecycle as lc
from callcontrol.domain.billing import after_balance_change
from callcontrol.domain.lifecycle import NumberAction, NumberFacts, Transition
from callcontrol.domain.vocabulary import LedgerKind, NumberState
from callcontrol.notify.mailer import Mailer
from callcontrol.services.errors import NotFound
from callcontrol.services.mails import NumberMail, NumberMailKind, Outbox, deliver
from callcontrol.services.tables import NumberBillingState

log = structlog.get_logger(__name__)

S = NumberState
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a customer (``account_id``) or the system / staff (None)."""

    account_id: int | None
    label: str

    @classmethod
    def customer(cls, account_id: int) -> Actor:
        return cls(account_id, f"account:{account_id}")


SYSTEM = Actor(None, "system")
Step = tuple[int, Transition]  # (number id, what happened to it)
OPERATOR = Actor(None, "operator")


@dataclass(slots=True)
class Work:
    """One transaction's context: the session, the clock reading and the outbox."""

    session: AsyncSession
    now: datetime
    outbox: Outbox = field(default_factory=Outbox)
    reservation_hold: timedelta = lc.DEFAULT_RESERVATION_HOLD
    activation_day: date | None = None  # an explicit (back-dated) activation


async def in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    mailer: Mailer,
    now: datetime,
    operation: Callable[[Work], Awaitable[T]],
    *,
    reservation_hold: timedelta = lc.DEFAULT_RESERVATION_HOLD,
) -> T:
    """Run ``operation`` in one transaction; deliver its queued mail after the commit.

    A transaction PostgreSQL aborted to break a deadlock (or a serialization
    failure) was rolled back whole, so it is run again, up to ``RETRIES`` times:
    concurrent top-ups, call charges and the billing run lock an account and its
    numbers and may meet in the other order."""
    for attempt in range(1, RETRIES + 1):
        try:
            async with sessions() as session:
                async with session.begin():
                    work = Work(session, now, reservation_hold=reservation_hold)
                    result = await operation(work)
            break
        except sa_exc.DBAPIError as exc:
            if attempt == RETRIES or _sqlstate(exc) not in RETRIED_SQLSTATES:
                raise
            log.warning("transaction_retried", attempt=attempt, sqlstate=_sqlstate(exc))
    if len(work.outbox):
        await deliver(work.outbox, sessions=sessions, mailer=mailer)
    return result


RETRIES = 3
RETRIED_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


# -- locks -----------------------------------------------------------------------------------


async def lock_account(session: AsyncSession, account_id: int) -> tuple[int, str]:
    """Lock the account row; return ``(balance_minor, currency)``."""
    row = (
        await session.execute(
            sa.select(Account.balance_minor, Account.currency)
            .where(Account.id == account_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"account {account_id} does not exist")
    return int(row[0]), str(row[1])


async def lock_number(session: AsyncSession, number_id: int) -> Number:
    number = await session.scalar(
        sa.select(Number)
        .where(Number.id == number_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if number is None:
        raise NotFound(f"number {number_id} does not exist")
    return number


async def lock_number_with_owner(session: AsyncSession, number_id: int) -> Number:
    """Lock the number's current owner account, then the number (the lock order)."""
    number: Number | None = None
    for _ in range(5):
        owner = await session.scalar(sa.select(Number.account_id).where(Number.id == number_id))
        if owner is not None:
            await lock_account(session, owner)
        number = await lock_number(session, number_id)
        if number.account_id == owner:
            return number
    assert number is not None  # the owner kept changing; the number itself is locked
    return number


# -- the transition --------------------------------------------------------------------------


async def apply(
    work: Work, number: Number, action: NumberAction, actor: Actor, *, reason: str = ""
) -> Transition:
    """Decide ``action`` on the locked ``number`` and store the outcome."""
    facts = await _facts(work, number, action, actor)
    decided = lc.transition(
        facts,
        action,
        actor_account_id=actor.account_id,
        now=work.now,
        reservation_hold=work.reservation_hold,
        activation_day=work.activation_day,
    )
    number.state = decided.to_state
    number.state_changed_at = work.now
    event = NumberEvent(
        number_id=number.id,
        from_state=decided.from_state,
        to_state=decided.to_state,
        reason=f"{action.value}: {reason}"[:200] if reason else action.value,
        actor=actor.label,
        at=work.now,
    )
    work.session.add(event)
    await work.session.flush()
    charged: set[int] = set()
    for effect in decided.effects:
        await _carry_out(work, number, effect, event.id, charged)
    if decided.to_state is S.AVAILABLE:
        await _wipe_customer_settings(work.session, number)
    for account_id in sorted(charged):
        await rebalance(work, account_id)
    return decided


async def rebalance(work: Work, account_id: int) -> list[Step]:
    """Suspend the account's active numbers if its balance is negative, reactivate
    its suspended ones if positive (``billing.after_balance_change``)."""
    balance, _ = await lock_account(work.session, account_id)
    numbers = (
        await work.session.scalars(
            sa.select(Number)
            .where(Number.account_id == account_id, Number.state.in_((S.ACTIVE, S.SUSPENDED)))
            .order_by(Number.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    done: list[Step] = []
    for number in numbers:
        target = after_balance_change(number.state, balance)
        if target is number.state:
            continue
        action = NumberAction.SUSPEND if target is S.SUSPENDED else NumberAction.REACTIVATE
        step = await apply(work, number, action, SYSTEM, reason=f"balance {balance}")
        done.append((number.id, step))
    return done


async def billing_state(session: AsyncSession, number_id: int) -> NumberBillingState:
    """The number's billing row, created on first use (the number row is locked)."""
    row = await session.get(NumberBillingState, number_id, populate_existing=True)
    if row is None:
        row = NumberBillingState(number_id=number_id)
        session.add(row)
        await session.flush()  # a second look-up in this transaction must find it
    return row


async def _facts(work: Work, n: Number, action: NumberAction, actor: Actor) -> NumberFacts:
    has_test = False
    if action is NumberAction.START_TEST and actor.account_id is not None:
        has_test = await account_has_active_test(work.session, actor.account_id, work.now)
    return NumberFacts(
        number_id=n.id,
        state=n.state,
        kind=n.kind,
        currency=n.currency,
        account_id=n.account_id,
        reservable=n.reservable,
        needs_documents=n.needs_documents,
        documents_accepted=n.documents_accepted_at is not None,
        setup_fee_minor=n.setup_fee_minor,
        monthly_fee_minor=n.monthly_fee_minor,
        former_owner_account_id=n.previous_account_id,
        reserved_until=n.reserved_until,
        test_expires_at=n.test_expires_at,
        account_has_active_test=has_test,
    )


async def account_has_active_test(session: AsyncSession, account_id: int, now: datetime) -> bool:
    found = await session.scalar(
        sa.select(Number.id)
        .where(
            Number.test_account_id == account_id,
            Number.state == S.TESTING,
            Number.test_expires_at > now,
        )
        .limit(1)
    )
    return found is not None


async def _carry_out(
    work: Work, n: Number, effect: lc.Effect, event_id: int, charged: set[int]
) -> None:
    session = work.session
    match effect:
        case lc.SetOwner(account_id=account_id):
            n.account_id = account_id
            if n.state is S.TESTING:
                n.test_account_id = account_id
        case lc.ClearOwner():
            n.account_id = n.test_account_id = None
            n.reserved_until = n.test_expires_at = n.documents_accepted_at = None
        case lc.RecordFormerOwner(account_id=account_id):
            n.previous_account_id = account_id
        case lc.SetReservationExpiry(until=until):
            n.reserved_until = until
        case lc.SetTestExpiry(expires_at=expires_at):
            n.test_expires_at = expires_at
        case lc.ChargeSetupFee(account_id=account_id, amount_minor=amount, currency=currency):
            await ledger.post(
                session, account_id=account_id, kind=LedgerKind.SETUP_FEE,
                amount_minor=-amount, currency=currency, number_id=n.id,
                idempotency_key=f"setup:{n.id}:{event_id}",
                description=f"setup fee {n.e164}",
            )  # fmt: skip
            charged.add(account_id)
        case lc.ChargeFirstMonth() as first:
            key = await _fresh_month_key(session, first.idempotency_key)
            await ledger.post(
                session, account_id=first.account_id, kind=LedgerKind.MONTHLY_FEE,
                amount_minor=-first.amount_minor, currency=first.currency, number_id=n.id,
                period_start=first.period_start, idempotency_key=key,
                description=f"monthly fee {n.e164} from {first.period_start.isoformat()}",
            )  # fmt: skip
            charged.add(first.account_id)
        case lc.SetActivatedOn(day=day):
            n.activated_on = day
            state = await billing_state(session, n.id)
            state.suspended_since = state.deleted_on = state.last_reminder_for = None
        case lc.SendActivationMail(account_id=account_id, number_id=number_id):
            work.outbox.add(NumberMail(NumberMailKind.ACTIVATION, account_id, number_id))
        case lc.SendDisconnectionMail(account_id=account_id, number_id=number_id):
            work.outbox.add(NumberMail(NumberMailKind.DISCONNECTION, account_id, number_id))
        case lc.RecordDocumentsAccepted():
            n.documents_accepted_at = work.now
        case lc.SetSuspendedSince(day=day):
            (await billing_state(session, n.id)).suspended_since = day
        case lc.ClearSuspendedSince():
            (await billing_state(session, n.id)).suspended_since = None
        case lc.RecordDeletedOn(day=day):
            (await billing_state(session, n.id)).deleted_on = day


async def _fresh_month_key(session: AsyncSession, key: str) -> str:
    """The period's charge key, unless that charge was refunded (an order cancelled
    and the number given back the same day): then a key of its own, so the month
    is paid again instead of being skipped as "already charged"."""
    while True:
        charged = await session.scalar(
            sa.select(LedgerEntry.id).where(LedgerEntry.idempotency_key == key)
        )
        if charged is None:
            return key
        refund = await session.scalar(
            sa.select(LedgerEntry.id).where(LedgerEntry.idempotency_key == f"refund:{charged}")
        )
        if refund is None:
            return key  # charged and not refunded: this period is paid
        key = f"{key}:after-refund:{refund}"


async def _wipe_customer_settings(session: AsyncSession, n: Number) -> None:
    """A number back in the pool carries nothing of its last customer (privacy)."""
    n.greeting_media_id = n.voicemail_greeting_media_id = None
    n.voicemail_enabled = False
    n.callerid_service = False
    await session.execute(
        sa.delete(ForwardingDestination).where(ForwardingDestination.number_id == n.id)
    )
    await session.execute(sa.delete(ForwardingRule).where(ForwardingRule.number_id == n.id))
