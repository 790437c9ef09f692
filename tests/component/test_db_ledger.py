"""The ledger moves money exactly once and never loses an update, on both backends."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.engine import create_engine, session_factory
from callcontrol.db.models import Account, BalanceIsLedgerOwned, LedgerEntry
from callcontrol.domain.vocabulary import LedgerKind
from callcontrol.settings import DatabaseSettings

Sessions = async_sessionmaker[AsyncSession]


async def _account(sessions: Sessions, currency: str = "EUR") -> int:
    async with sessions() as session, session.begin():
        account = Account(name="Acme GmbH", email="billing@acme.example", currency=currency)
        session.add(account)
        await session.flush()
        return account.id


async def _state(sessions: Sessions, account_id: int) -> tuple[int, int, int]:
    """(cached balance, ledger sum, number of entries)."""
    async with sessions() as session:
        cached = await session.scalar(
            sa.select(Account.balance_minor).where(Account.id == account_id)
        )
        entries = await session.scalar(
            sa.select(sa.func.count()).where(LedgerEntry.account_id == account_id)
        )
        summed = await ledger.balance_from_ledger(session, account_id)
    assert cached is not None and entries is not None
    return cached, summed, entries


async def test_a_post_moves_the_balance_and_writes_one_entry(db_session: Sessions) -> None:
    account_id = await _account(db_session)
    async with db_session() as session, session.begin():
        top_up = await ledger.post(
            session, account_id=account_id, kind=LedgerKind.TOP_UP,
            amount_minor=10_00, currency="EUR",
        )  # fmt: skip
        fee = await ledger.post(
            session, account_id=account_id, kind=LedgerKind.MONTHLY_FEE,
            amount_minor=-4_50, currency="EUR", number_id=None,
            period_start=date(2024, 2, 20), idempotency_key="monthly:7:2024-02-20",
        )  # fmt: skip

    assert (top_up.posted, top_up.balance_minor) == (True, 10_00)
    assert (fee.posted, fee.balance_minor) == (True, 5_50)
    assert await _state(db_session, account_id) == (5_50, 5_50, 2)


async def test_the_same_idempotency_key_charges_once(db_session: Sessions) -> None:
    account_id = await _account(db_session)
    key = "call:2f1c0d7e-0000-4000-8000-000000000001"
    charge = {"account_id": account_id, "kind": LedgerKind.CALL_CHARGE,
              "amount_minor": -37, "currency": "EUR", "idempotency_key": key}  # fmt: skip

    async with db_session() as session, session.begin():
        first = await ledger.post(session, **charge)  # type: ignore[arg-type]
    async with db_session() as session, session.begin():
        again = await ledger.post(session, **charge)  # type: ignore[arg-type]
        # The caller's transaction survived the duplicate and still commits work.
        after = await ledger.post(
            session, account_id=account_id, kind=LedgerKind.TOP_UP,
            amount_minor=100, currency="EUR",
        )  # fmt: skip

    assert first.posted and not again.posted and again.already_posted
    assert again.entry_id == first.entry_id
    assert again.balance_minor == -37
    assert after.balance_minor == 63
    assert await _state(db_session, account_id) == (63, 63, 2)


async def test_a_reused_key_with_another_amount_is_a_conflict(db_session: Sessions) -> None:
    account_id = await _account(db_session)
    async with db_session() as session, session.begin():
        await ledger.post(
            session, account_id=account_id, kind=LedgerKind.SETUP_FEE,
            amount_minor=-5_00, currency="EUR", idempotency_key="setup:1",
        )  # fmt: skip
    with pytest.raises(ledger.IdempotencyConflict):
        async with db_session() as session, session.begin():
            await ledger.post(
                session, account_id=account_id, kind=LedgerKind.SETUP_FEE,
                amount_minor=-9_00, currency="EUR", idempotency_key="setup:1",
            )  # fmt: skip
    assert await _state(db_session, account_id) == (-5_00, -5_00, 1)


async def test_a_rolled_back_transaction_leaves_neither_entry_nor_balance(
    db_session: Sessions,
) -> None:
    account_id = await _account(db_session)
    async with db_session() as session:
        async with session.begin():
            await ledger.post(
                session, account_id=account_id, kind=LedgerKind.TOP_UP,
                amount_minor=20_00, currency="EUR",
            )  # fmt: skip
            await session.rollback()
    assert await _state(db_session, account_id) == (0, 0, 0)


async def test_wrong_currency_changes_nothing(db_session: Sessions) -> None:
    account_id = await _account(db_session, currency="USD")
    async with db_session() as session, session.begin():
        with pytest.raises(ledger.CurrencyMismatch):
            await ledger.post(
                session, account_id=account_id, kind=LedgerKind.TOP_UP,
                amount_minor=1_00, currency="EUR",
            )  # fmt: skip
    assert await _state(db_session, account_id) == (0, 0, 0)


async def test_unknown_account_is_reported(db_session: Sessions) -> None:
    async with db_session() as session, session.begin():
        with pytest.raises(ledger.AccountNotFound):
            await ledger.post(
                session, account_id=999_999, kind=LedgerKind.TOP_UP,
                amount_minor=1_00, currency="EUR", idempotency_key="x",
            )  # fmt: skip


@pytest.mark.parametrize("amount", [1.5, True, "100"])
async def test_amount_must_be_integer_minor_units(db_session: Sessions, amount: object) -> None:
    async with db_session() as session:
        with pytest.raises(TypeError):
            await ledger.post(
                session, account_id=1, kind=LedgerKind.TOP_UP,
                amount_minor=amount, currency="EUR",  # type: ignore[arg-type]
            )  # fmt: skip


async def test_a_loaded_account_sees_the_new_balance(db_session: Sessions) -> None:
    account_id = await _account(db_session)
    async with db_session() as session, session.begin():
        account = await session.get_one(Account, account_id)
        await ledger.post(
            session, account_id=account_id, kind=LedgerKind.TOP_UP,
            amount_minor=7_00, currency="EUR",
        )  # fmt: skip
        assert account.balance_minor == 7_00
    assert await _state(db_session, account_id) == (7_00, 7_00, 1)


async def test_the_balance_cannot_be_set_outside_the_ledger(db_session: Sessions) -> None:
    account_id = await _account(db_session)
    async with db_session() as session:
        account = await session.get_one(Account, account_id)
        with pytest.raises(BalanceIsLedgerOwned):
            account.balance_minor = 1_000_000


async def test_concurrent_posts_on_one_account_lose_no_update(db_session: Sessions) -> None:
    """N tasks, each with its own session and transaction, post on one account at once."""
    account_id = await _account(db_session)
    amounts = [(-1) ** i * (i * 7 + 3) for i in range(40)]

    async def post_one(amount: int) -> None:
        async with db_session() as session, session.begin():
            await ledger.post(
                session, account_id=account_id, kind=LedgerKind.ADJUSTMENT,
                amount_minor=amount, currency="EUR",
            )  # fmt: skip
            await asyncio.sleep(0)  # let others interleave inside open transactions

    await asyncio.gather(*(post_one(a) for a in amounts))

    assert await _state(db_session, account_id) == (sum(amounts), sum(amounts), len(amounts))


async def test_concurrent_posts_with_one_key_charge_once(db_session: Sessions) -> None:
    account_id = await _account(db_session)

    async def charge() -> ledger.LedgerPostResult:
        async with db_session() as session, session.begin():
            return await ledger.post(
                session, account_id=account_id, kind=LedgerKind.MONTHLY_FEE,
                amount_minor=-4_99, currency="EUR", idempotency_key="monthly:1:2024-03-31",
            )  # fmt: skip

    results = await asyncio.gather(*(charge() for _ in range(12)))

    assert sum(r.posted for r in results) == 1
    assert len({r.entry_id for r in results}) == 1
    assert await _state(db_session, account_id) == (-4_99, -4_99, 1)


_posting = st.tuples(
    st.integers(min_value=-(10**9), max_value=10**9),
    st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(postings=st.lists(_posting, max_size=12))
def test_balance_is_the_sum_of_first_postings_per_key(
    fresh_db_url: str, postings: list[tuple[int, str | None]]
) -> None:
    """Whatever the sequence, cached balance == ledger sum == what should have been posted."""

    async def scenario() -> tuple[tuple[int, int, int], int, int]:
        engine = create_engine(DatabaseSettings(url=fresh_db_url))
        sessions = session_factory(engine)
        try:
            account_id = await _account(sessions)
            expected, first_amount = 0, dict[str, int]()
            for amount, key in postings:
                if key is not None and key in first_amount:
                    amount = first_amount[key]  # a retry of the same charge
                async with sessions() as session, session.begin():
                    await ledger.post(
                        session, account_id=account_id, kind=LedgerKind.ADJUSTMENT,
                        amount_minor=amount, currency="EUR",
                        idempotency_key=None if key is None else f"{account_id}:{key}",
                    )  # fmt: skip
                if key is None or key not in first_amount:
                    expected += amount
                if key is not None:
                    first_amount.setdefault(key, amount)
            rows = sum(1 for _, key in postings if key is None) + len(first_amount)
            return await _state(sessions, account_id), expected, rows
        finally:
            await engine.dispose()

    (cached, summed, entries), expected, rows = asyncio.run(scenario())
    assert cached == summed == expected
    assert entries == rows
