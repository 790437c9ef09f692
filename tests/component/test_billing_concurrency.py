"""Many tasks, separate sessions, one account or one pool: no lost update, no double sale."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import Account, LedgerEntry, Number
from callcontrol.domain.billing import after_balance_change
from callcontrol.domain.errors import DomainError
from callcontrol.domain.vocabulary import DestinationType, LedgerKind, NumberKind, NumberState
from callcontrol.services.billing_run import BillingReport, run_billing
from callcontrol.services.errors import NoNumberAvailable
from callcontrol.services.numbers import ForwardTo, NumberService
from callcontrol.settings import BillingSettings

Sessions = async_sessionmaker[AsyncSession]
S = NumberState
CHARGE_DAY = date(2024, 2, 10)
NOON = datetime.combine(CHARGE_DAY, time(12), UTC)


class NullMailer:
    async def send(self, message: object) -> None:
        return None


def service(sessions: Sessions) -> NumberService:
    return NumberService(sessions=sessions, mailer=NullMailer(), clock=lambda: NOON)


async def make_account(sessions: Sessions, balance: int) -> int:
    async with sessions() as session, session.begin():
        account = Account(name="Acme", email="owner@acme.example", currency="EUR")
        session.add(account)
        await session.flush()
        if balance:
            await ledger.post(
                session, account_id=account.id, kind=LedgerKind.ADJUSTMENT,
                amount_minor=balance, currency="EUR",
            )  # fmt: skip
        return account.id


async def make_numbers(
    sessions: Sessions, count: int, *, account: int | None = None, prefix: str = "+4989"
) -> list[int]:
    state = S.AVAILABLE if account is None else S.ACTIVE
    activated = None if account is None else date(2024, 1, 10)
    async with sessions() as session, session.begin():
        numbers = [
            Number(
                e164=f"{prefix}{i:04d}", country_code=49, region="DE", city="Munich",
                kind=NumberKind.VOICE, state=state, account_id=account, activated_on=activated,
                monthly_fee_minor=5_00, setup_fee_minor=1_00, currency="EUR",
            )
            for i in range(count)
        ]  # fmt: skip
        session.add_all(numbers)
        await session.flush()
        return [n.id for n in numbers]


async def call_charge(sessions: Sessions, account: int, amount: int) -> None:
    async with sessions() as session, session.begin():
        await ledger.post(
            session, account_id=account, kind=LedgerKind.CALL_CHARGE, amount_minor=-amount,
            currency="EUR",
        )  # fmt: skip
    await service(sessions).on_balance_change(account)


async def test_concurrent_top_ups_call_charges_and_a_billing_run_lose_no_update(
    db_session: Sessions,
) -> None:
    account = await make_account(db_session, 10_00)
    numbers = await make_numbers(db_session, 5, account=account)
    numbers_service = service(db_session)

    await asyncio.gather(
        *(numbers_service.top_up(account, 1_00, f"pay:{i}") for i in range(30)),
        *(call_charge(db_session, account, 1_00) for _ in range(30)),
        run_billing(
            db_session, today=CHARGE_DAY, settings=BillingSettings(), mailer=NullMailer(),
            now=NOON,
        ),
    )  # fmt: skip

    async with db_session() as session:
        cached = await session.scalar(sa.select(Account.balance_minor).where(Account.id == account))
        summed = await ledger.balance_from_ledger(session, account)
        monthly = await session.scalar(
            sa.select(sa.func.count()).where(LedgerEntry.kind == LedgerKind.MONTHLY_FEE)
        )
        states = (
            await session.scalars(sa.select(Number.state).where(Number.id.in_(numbers)))
        ).all()
    assert cached == summed == 10_00 - 5 * 5_00
    assert monthly == 5
    assert all(after_balance_change(state, summed) is state for state in states)
    assert set(states) == {S.SUSPENDED}


async def test_two_billing_runs_at_once_charge_each_period_once(db_session: Sessions) -> None:
    accounts = [await make_account(db_session, 100_00) for _ in range(3)]
    for i, account in enumerate(accounts):
        await make_numbers(db_session, 4, account=account, prefix=f"+4969{i}")

    async def one_run() -> BillingReport:
        return await run_billing(
            db_session, today=CHARGE_DAY, settings=BillingSettings(), mailer=NullMailer(),
            now=NOON,
        )  # fmt: skip

    first, second = await asyncio.gather(one_run(), one_run())

    assert first.charges_posted + second.charges_posted == 12
    async with db_session() as session:
        for account in accounts:
            assert await ledger.balance_from_ledger(session, account) == 100_00 - 4 * 5_00


async def test_concurrent_automatic_buyers_never_get_the_same_number(
    db_session: Sessions,
) -> None:
    await make_numbers(db_session, 8)
    buyers = [await make_account(db_session, 100_00) for _ in range(10)]
    numbers_service = service(db_session)

    outcomes = await asyncio.gather(
        *(numbers_service.buy_automatic(b, "DE", "Munich") for b in buyers),
        return_exceptions=True,
    )

    bought = [o.number_id for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(bought) == len(set(bought)) == 8
    assert len(refused) == 2 and all(isinstance(e, NoNumberAvailable) for e in refused)
    async with db_session() as session:
        owners = (await session.scalars(sa.select(Number.account_id))).all()
    assert sorted(o for o in owners if o is not None) == sorted(
        b for b, o in zip(buyers, outcomes, strict=True) if not isinstance(o, BaseException)
    )


async def test_one_account_asking_for_many_tests_at_once_gets_one(db_session: Sessions) -> None:
    await make_numbers(db_session, 5)
    account = await make_account(db_session, 0)
    forward = ForwardTo(DestinationType.SIP_URI, "sip:bob@sip.other-provider.example")
    numbers_service = service(db_session)

    outcomes = await asyncio.gather(
        *(numbers_service.start_test(account, forward, region="DE") for _ in range(5)),
        return_exceptions=True,
    )

    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, DomainError) for o in outcomes if isinstance(o, BaseException))
