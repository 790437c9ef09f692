"""The outbound lookup against the real database (SQLite / PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import Account, Number, Rate, SipAccount
from callcontrol.domain.vocabulary import LedgerKind, NumberKind, NumberState
from callcontrol.repositories.sip_accounts import SqlSipAccountDirectory


async def _seed(sessions: async_sessionmaker[AsyncSession], *, service: bool) -> tuple[int, int]:
    async with sessions() as session, session.begin():
        owner = Account(name="A", email="a@example.invalid", currency="EUR")
        other = Account(name="B", email="b@example.invalid", currency="EUR")
        session.add_all([owner, other])
        await session.flush()
        await ledger.post(
            session, account_id=owner.id, kind=LedgerKind.TOP_UP, amount_minor=250, currency="EUR"
        )
        numbers = []
        for e164, account in (("+4930123456", owner), ("+4930999999", other)):
            number = Number(
                e164=e164,
                country_code=49,
                region="DE",
                kind=NumberKind.VOICE,
                state=NumberState.ACTIVE,
                account_id=account.id,
                activated_on=datetime.now(UTC).date(),
                monthly_fee_minor=500,
                setup_fee_minor=0,
                currency="EUR",
                callerid_service=service,
            )
            session.add(number)
            numbers.append(number)
        await session.flush()
        session.add(Rate(prefix="49", rate_per_minute_minor=9, currency="EUR"))
        session.add(Rate(prefix="4915", rate_per_minute_minor=19, currency="EUR"))
        session.add(
            SipAccount(
                account_id=owner.id,
                login="alice",
                domain="sip.example.invalid",
                password_digest="0" * 32,
                presented_number_id=numbers[0].id,
            )
        )
        session.add(
            SipAccount(
                account_id=owner.id,
                login="mallory",
                domain="sip.example.invalid",
                password_digest="0" * 32,
                presented_number_id=numbers[1].id,  # someone else's number
            )
        )
        return owner.id, numbers[0].id


async def test_a_sip_account_presents_its_own_number_with_the_owners_balance(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    owner, number = await _seed(db_session, service=True)
    directory = SqlSipAccountDirectory(sessions=db_session)
    facts = await directory.facts("alice")
    assert facts is not None
    assert (facts.account_id, facts.balance_minor, facts.currency) == (owner, 250, "EUR")
    assert (facts.presented_number, facts.presented_number_id) == ("+4930123456", number)
    assert facts.callerid_service
    assert await directory.facts("nobody") is None


async def test_another_accounts_number_is_never_presented(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(db_session, service=True)
    facts = await SqlSipAccountDirectory(sessions=db_session).facts("mallory")
    assert facts is not None and facts.presented_number is None
    assert not facts.callerid_service


@pytest.mark.parametrize(
    "state",
    [NumberState.RESERVED, NumberState.PENDING, NumberState.TESTING, NumberState.DISCONNECTED],
)
async def test_a_number_the_account_does_not_hold_in_service_is_not_presented(
    db_session: async_sessionmaker[AsyncSession], state: NumberState
) -> None:
    _, number_id = await _seed(db_session, service=True)
    async with db_session() as session, session.begin():
        number = await session.get(Number, number_id)
        assert number is not None
        number.state = state
    facts = await SqlSipAccountDirectory(sessions=db_session).facts("alice")
    assert facts is not None and facts.presented_number is None
    assert not facts.callerid_service


async def test_the_longest_matching_prefix_rates_the_destination(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(db_session, service=False)
    directory = SqlSipAccountDirectory(sessions=db_session)
    mobile = await directory.rate_for("4915112345678")
    landline = await directory.rate_for("4930555")
    assert mobile is not None and mobile.rate_per_minute_minor == 19
    assert landline is not None and landline.rate_per_minute_minor == 9
    assert await directory.rate_for("33123") is None
