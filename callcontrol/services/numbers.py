"""The number life cycle as operations on the database.

``NumberService`` runs each operation in one short transaction (see
``transitions`` for the lock order and how a transition is stored), then
delivers the mail the transition queued. Rules kept here, beyond the pure
core's:

- service is prepaid: buying needs a balance that covers the setup fee and the
  first month, in the account's currency;
- an automatic purchase takes any available number of the region (and city,
  for landlines); on PostgreSQL ``FOR UPDATE SKIP LOCKED``, so two buyers never
  get the same number and never wait for each other;
- a deletion settles the rent due up to the deletion day (``billing.due_monthly_
  charges`` with ``deleted_on``), so a number deleted the day before its charge
  day is never charged for it; the deleted number stays ``disconnected`` (its
  owner may take it back) until the next daily run returns it to the pool;
- giving back works from ``disconnected`` and, when nobody took the number, from
  the pool (buy, then activate): the same outcome;
- every change of a balance goes through ``rebalance``: suspension below zero,
  reactivation above.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from callcontrol.db import ledger
from callcontrol.db.models import Account, ForwardingDestination, ForwardingRule, Number
from callcontrol.domain import lifecycle as lc
from callcontrol.domain.billing import (
    BillableNumber,
    bulk_purchase_discount,
    due_monthly_charges,
)
from callcontrol.domain.errors import CurrencyMismatch, InvalidInput
from callcontrol.domain.lifecycle import NumberAction, Transition
from callcontrol.domain.money import apply_discount, validate_minor
from callcontrol.domain.vocabulary import (
    DestinationType,
    ForwardingMode,
    LedgerKind,
    NumberKind,
    NumberState,
)
from callcontrol.notify.mailer import Mailer
from callcontrol.services import transitions as tr
from callcontrol.services.errors import InsufficientFunds, NoNumberAvailable
from callcontrol.services.refunds import refund_latest_order, refund_setup_fee
from callcontrol.services.tables import BillingRun
from callcontrol.services.transitions import OPERATOR, SYSTEM, Actor, Work

A = NumberAction
S = NumberState
T = TypeVar("T")
Clock = Callable[[], datetime]
DEFAULT_TEST_RING_TIMEOUT_S = 30


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ForwardTo:
    """Where a test number forwards its calls for the hour."""

    type: DestinationType
    target: str
    ring_timeout_s: int = DEFAULT_TEST_RING_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class NumberChange:
    """What an operation did to a number."""

    number_id: int
    from_state: NumberState
    to_state: NumberState

    @classmethod
    def of(cls, number_id: int, *steps: Transition) -> NumberChange:
        return cls(number_id, steps[0].from_state, steps[-1].to_state)


@dataclass(frozen=True, slots=True)
class TopUpResult:
    balance_minor: int
    posted: bool  # False: this idempotency key was used before; nothing moved
    reactivated: tuple[int, ...]  # number ids
    suspended: tuple[int, ...]


class NumberService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        mailer: Mailer,
        clock: Clock = utc_now,
        reservation_hold: timedelta = lc.DEFAULT_RESERVATION_HOLD,
    ) -> None:
        self._sessions = sessions
        self._mailer = mailer
        self._clock = clock
        self._hold = reservation_hold

    async def _run(self, operation: Callable[[Work], Awaitable[T]]) -> T:
        """One transaction; the queued mail goes out after the commit."""
        return await tr.in_transaction(
            self._sessions, self._mailer, self._clock(), operation, reservation_hold=self._hold
        )

    async def _on_number(
        self, number_id: int, action: NumberAction, actor: Actor, reason: str = ""
    ) -> NumberChange:
        async def op(work: Work) -> NumberChange:
            number = await tr.lock_number_with_owner(work.session, number_id)
            step = await tr.apply(work, number, action, actor, reason=reason)
            return NumberChange.of(number_id, step)

        return await self._run(op)

    # -- reservation and purchase ----------------------------------------------------------

    async def reserve(self, number_id: int, account_id: int) -> NumberChange:
        return await self._on_number(number_id, A.RESERVE, Actor.customer(account_id))

    async def release(self, number_id: int, account_id: int | None) -> NumberChange:
        """Release a reservation: by its holder, or by staff (``account_id=None``)."""
        actor = OPERATOR if account_id is None else Actor.customer(account_id)
        return await self._on_number(number_id, A.RELEASE_RESERVATION, actor)

    async def buy(self, number_id: int, account_id: int) -> NumberChange:
        """Buy a chosen number (available, or reserved for this account): pending."""

        async def op(work: Work) -> NumberChange:
            await tr.lock_account(work.session, account_id)
            number = await tr.lock_number(work.session, number_id)
            return await _buy_locked(work, number, account_id)

        return await self._run(op)

    async def buy_many(self, number_ids: list[int], account_id: int) -> list[NumberChange]:
        """Buy several chosen numbers at once, all or none. From 5 numbers on, the
        account's negotiated volume discount is credited on their setup fees (one
        ``discount`` entry; the monthly fees are not discounted)."""

        async def op(work: Work) -> list[NumberChange]:
            _, currency = await tr.lock_account(work.session, account_id)
            numbers = [await tr.lock_number(work.session, n) for n in sorted(set(number_ids))]
            total = sum(n.setup_fee_minor + n.monthly_fee_minor for n in numbers)
            balance, _ = await tr.lock_account(work.session, account_id)
            if balance < total:
                raise InsufficientFunds(
                    f"the balance {balance} does not cover the setup fees and first "
                    f"months ({total})"
                )
            changes = [await _buy_locked(work, n, account_id) for n in numbers]
            pct = await _negotiated_pct(work.session, account_id)
            setup = sum(n.setup_fee_minor for n in numbers)
            _, discount = apply_discount(setup, bulk_purchase_discount(len(numbers), pct))
            if discount:
                await ledger.post(
                    work.session, account_id=account_id, kind=LedgerKind.DISCOUNT,
                    amount_minor=discount, currency=currency,
                    idempotency_key=f"bulk-discount:{account_id}:{uuid.uuid4()}",
                    description=f"volume discount {pct}% on {len(numbers)} numbers' setup fees",
                )  # fmt: skip
            return changes

        return await self._run(op)

    async def buy_automatic(
        self, account_id: int, region: str, city: str | None = None,
        kind: NumberKind = NumberKind.VOICE,
    ) -> NumberChange:  # fmt: skip
        """Buy any available number of ``region`` (mobile) or ``region`` + ``city``."""

        async def op(work: Work) -> NumberChange:
            await tr.lock_account(work.session, account_id)
            number = await _pick_available(work.session, region, city, kind)
            return await _buy_locked(work, number, account_id)

        return await self._run(op)

    async def accept_documents(self, number_id: int) -> NumberChange:
        return await self._on_number(number_id, A.DOCUMENTS_ACCEPTED, OPERATOR)

    async def activate(self, number_id: int, *, on: date | None = None) -> NumberChange:
        """The carrier confirmed: active, first month charged, activation mail sent.
        ``on`` back-dates the activation day (and so the charge day); never the future."""

        async def op(work: Work) -> NumberChange:
            work.activation_day = on
            number = await tr.lock_number_with_owner(work.session, number_id)
            step = await tr.apply(work, number, A.ACTIVATE, SYSTEM)
            return NumberChange.of(number_id, step)

        return await self._run(op)

    async def refuse_activation(self, number_id: int, *, reason: str = "") -> NumberChange:
        """The carrier will not activate a pending number: back to the pool, and the
        setup fee of the order refunded (exactly once)."""

        async def op(work: Work) -> NumberChange:
            number = await tr.lock_number_with_owner(work.session, number_id)
            owner = number.account_id
            step = await tr.apply(work, number, A.REFUSE_ACTIVATION, OPERATOR, reason=reason)
            if owner is not None:
                await refund_setup_fee(work, number.id, owner)
            return NumberChange.of(number_id, step)

        return await self._run(op)

    # -- tests and expiries ----------------------------------------------------------------

    async def start_test(
        self, account_id: int, forward_to: ForwardTo, *, number_id: int | None = None,
        region: str | None = None,
    ) -> NumberChange:  # fmt: skip
        """Lend an available voice number for one hour, forwarding to ``forward_to``."""
        if (number_id is None) == (region is None):
            raise InvalidInput("name either the number or the region to test")

        async def op(work: Work) -> NumberChange:
            # The account lock serialises this account's test requests (one at a time).
            await tr.lock_account(work.session, account_id)
            if number_id is not None:
                number = await tr.lock_number(work.session, number_id)
            else:
                assert region is not None
                number = await _pick_available(work.session, region, None, NumberKind.VOICE)
            step = await tr.apply(work, number, A.START_TEST, Actor.customer(account_id))
            _set_test_forwarding(work.session, number.id, forward_to)
            return NumberChange.of(number.id, step)

        return await self._run(op)

    async def expire_tests(self) -> int:
        """Return every test number whose hour is over to the pool; how many."""
        ids = await self._due(S.TESTING, Number.test_expires_at)
        return await self._each(ids, A.TEST_EXPIRED, S.TESTING)

    async def expire_reservations(self) -> int:
        ids = await self._due(S.RESERVED, Number.reserved_until)
        return await self._each(ids, A.RESERVATION_EXPIRED, S.RESERVED)

    async def _due(
        self, state: NumberState, until: InstrumentedAttribute[datetime | None]
    ) -> list[int]:
        now = self._clock()
        async with self._sessions() as session:
            rows = await session.scalars(
                sa.select(Number.id).where(Number.state == state, until <= now).order_by(Number.id)
            )
            return list(rows.all())

    async def _each(self, ids: list[int], action: NumberAction, state: NumberState) -> int:
        """One short transaction per number; one that moved on meanwhile is skipped."""
        done = 0
        for number_id in ids:

            async def op(work: Work, number_id: int = number_id) -> bool:
                number = await tr.lock_number(work.session, number_id)
                if number.state is not state:
                    return False
                await tr.apply(work, number, action, SYSTEM)
                return True

            done += await self._run(op)
        return done

    # -- the end of a rental ---------------------------------------------------------------

    async def delete(self, number_id: int, account_id: int | None) -> NumberChange:
        """The owner (or staff, ``account_id=None``) deletes the number; the rent due up
        to today is settled, nothing later is charged."""
        actor = OPERATOR if account_id is None else Actor.customer(account_id)

        async def op(work: Work) -> NumberChange:
            number = await tr.lock_number_with_owner(work.session, number_id)
            step = await delete_locked(work, number, actor)
            return NumberChange.of(number_id, step)

        return await self._run(op)

    async def give_back(self, number_id: int, account_id: int) -> NumberChange:
        """The former owner takes the number back; the setup fee is paid again."""

        async def op(work: Work) -> NumberChange:
            await tr.lock_account(work.session, account_id)
            number = await tr.lock_number(work.session, number_id)
            if number.state is S.AVAILABLE and number.previous_account_id == account_id:
                bought = await _buy_locked(work, number, account_id)
                if number.needs_documents:
                    return bought
                step = await tr.apply(work, number, A.ACTIVATE, SYSTEM, reason="given back")
                return NumberChange(number_id, bought.from_state, step.to_state)
            await _check_prepaid(work, number, account_id)
            step = await tr.apply(work, number, A.GIVE_BACK, Actor.customer(account_id))
            return NumberChange.of(number_id, step)

        return await self._run(op)

    async def refund_order(self, number_id: int, *, tz: str | None = None) -> NumberChange:
        """Operator: cancel the number's latest order within 2 working days; the setup
        fee and first month are refunded and the number is deleted."""

        async def op(work: Work) -> NumberChange:
            number = await tr.lock_number_with_owner(work.session, number_id)
            await refund_latest_order(work, number, tz=tz)
            step = await delete_locked(work, number, OPERATOR, reason="order cancelled")
            return NumberChange.of(number_id, step)

        return await self._run(op)

    # -- money -----------------------------------------------------------------------------

    async def top_up(self, account_id: int, amount_minor: int, idempotency_key: str) -> TopUpResult:
        """Credit the account and reactivate its suspended numbers at once if positive."""
        if validate_minor(amount_minor, "top-up") <= 0:
            raise InvalidInput(f"a top-up must be positive, not {amount_minor}")

        async def op(work: Work) -> TopUpResult:
            _, currency = await tr.lock_account(work.session, account_id)
            posted = await ledger.post(
                work.session, account_id=account_id, kind=LedgerKind.TOP_UP,
                amount_minor=amount_minor, currency=currency, idempotency_key=idempotency_key,
            )  # fmt: skip
            steps = await tr.rebalance(work, account_id)
            return TopUpResult(posted.balance_minor, posted.posted, *_split(steps))

        return await self._run(op)

    async def on_balance_change(self, account_id: int) -> list[NumberChange]:
        """After a ledger post made elsewhere: suspend or reactivate the account's numbers."""

        async def op(work: Work) -> list[NumberChange]:
            return [NumberChange.of(n, s) for n, s in await tr.rebalance(work, account_id)]

        return await self._run(op)


def _split(steps: list[tr.Step]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    def ids(action: NumberAction) -> tuple[int, ...]:
        return tuple(number_id for number_id, step in steps if step.action is action)

    return ids(A.REACTIVATE), ids(A.SUSPEND)


# -- helpers inside one transaction ----------------------------------------------------------


async def _pick_available(
    session: AsyncSession, region: str, city: str | None, kind: NumberKind
) -> Number:
    """Lock one available number of the region (and city); others' picks are skipped."""
    query = sa.select(Number).where(
        Number.state == S.AVAILABLE, Number.region == region.upper(), Number.kind == kind
    )
    if city is not None:
        query = query.where(Number.city == city)
    number = await session.scalar(
        query.order_by(Number.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if number is None:
        where = f"{region}/{city}" if city else region
        raise NoNumberAvailable(f"no available {kind} number in {where}")
    return number


async def _negotiated_pct(session: AsyncSession, account_id: int) -> int:
    pct = await session.scalar(
        sa.select(Account.negotiated_bulk_discount_pct).where(Account.id == account_id)
    )
    return int(pct or 0)


async def _check_prepaid(work: Work, number: Number, account_id: int) -> None:
    """The (locked) account pays the setup fee and first month from its balance."""
    balance, currency = await tr.lock_account(work.session, account_id)
    if currency != number.currency:
        raise CurrencyMismatch(currency, number.currency)
    price = number.setup_fee_minor + number.monthly_fee_minor
    if balance < price:
        raise InsufficientFunds(
            f"the balance {balance} does not cover the setup fee and first month ({price})"
        )


async def _buy_locked(work: Work, number: Number, account_id: int) -> NumberChange:
    await _check_prepaid(work, number, account_id)
    step = await tr.apply(work, number, A.BUY, Actor.customer(account_id))
    return NumberChange.of(number.id, step)


def _set_test_forwarding(session: AsyncSession, number_id: int, to: ForwardTo) -> None:
    session.add(ForwardingRule(number_id=number_id, mode=ForwardingMode.SEQUENTIAL))
    session.add(
        ForwardingDestination(
            number_id=number_id, position=1, type=to.type, target=to.target,
            ring_timeout_s=to.ring_timeout_s,
        )
    )  # fmt: skip


async def delete_locked(
    work: Work, number: Number, actor: Actor, *, reason: str = ""
) -> Transition:
    """Delete the locked number and settle the rent due up to the deletion day."""
    owner, activated_on = number.account_id, number.activated_on
    step = await tr.apply(work, number, A.DELETE, actor, reason=reason)
    if owner is None or activated_on is None or number.monthly_fee_minor == 0:
        return step
    rental = BillableNumber(
        number_id=number.id, account_id=owner, activated_on=activated_on,
        monthly_fee_minor=number.monthly_fee_minor, currency=number.currency,
        state=step.from_state, deleted_on=work.now.date(),
    )  # fmt: skip
    since = await last_finished_run(work.session, before=work.now.date())
    due = due_monthly_charges([rental], work.now.date(), since=since)
    for charge in due:
        await ledger.post(
            work.session, account_id=owner, kind=charge.kind, amount_minor=-charge.amount_minor,
            currency=charge.currency, number_id=number.id, period_start=charge.period_start,
            idempotency_key=charge.idempotency_key, description="monthly fee (deleted number)",
        )  # fmt: skip
    if due:
        await tr.rebalance(work, owner)
    return step


async def last_finished_run(session: AsyncSession, *, before: date) -> date | None:
    """The day of the latest daily run that finished, among runs before ``before``."""
    return await session.scalar(
        sa.select(sa.func.max(BillingRun.run_date)).where(
            BillingRun.finished_at.is_not(None), BillingRun.run_date < before
        )
    )
