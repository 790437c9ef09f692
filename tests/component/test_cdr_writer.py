"""The CDR writer (``SqlCallLedger``) against a real database (SQLite or PostgreSQL).

Exactly once (a call written twice is stored and charged once), group commit
(calls ending together share one transaction), one bad record never loses the
others, and the SIP code column says what the caller was actually sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import Account, Cdr, CdrLeg, LedgerEntry
from callcontrol.domain.call_events import CallRecord, LegRecord
from callcontrol.domain.rating import Rate
from callcontrol.domain.vocabulary import (
    CallDirection,
    DestinationType,
    Disposition,
    LedgerKind,
    LegOutcome,
)
from callcontrol.repositories.cdrs import SqlCallLedger

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def new_account(sessions: async_sessionmaker[AsyncSession], balance: int = 1000) -> int:
    async with sessions() as session, session.begin():
        account = Account(name="CDR test", email="cdr@example.invalid", currency="EUR")
        session.add(account)
        await session.flush()
        await ledger.post(
            session,
            account_id=account.id,
            kind=LedgerKind.TOP_UP,
            amount_minor=balance,
            currency="EUR",
        )
        return account.id


def pstn_call(call_id: str, account_id: int | None, talk_s: int = 61) -> CallRecord:
    leg = LegRecord(
        position=1,
        type=DestinationType.PSTN,
        target="+33612345678",
        channel_id=f"{call_id}-leg1",
        started_at=at(1),
        answered_at=at(3),
        ended_at=at(3 + talk_s),
        outcome=LegOutcome.ANSWERED,
        cause=16,
        billed_seconds=talk_s,
        rate=Rate("336", 12, "EUR"),
    )
    return CallRecord(
        call_id=call_id,
        direction=CallDirection.INBOUND,
        did="+4930123456",
        number_id=None,
        account_id=account_id,
        caller="4915112345678",
        started_at=at(0),
        answered_at=at(3),
        ended_at=at(3 + talk_s),
        disposition=Disposition.ANSWERED,
        cause=16,
        reject_reason=None,
        answered_position=1,
        ring_ms=2000,
        talk_ms=talk_s * 1000,
        legs=(leg,),
    )


def ended_without_answer(call_id: str, cause: int, *, caller_answered: bool) -> CallRecord:
    return replace(
        pstn_call(call_id, None),
        answered_at=None,
        disposition=Disposition.BUSY,
        cause=cause,
        answered_position=None,
        talk_ms=0,
        legs=(),
        caller_answered=caller_answered,
    )


async def charges(sessions: async_sessionmaker[AsyncSession], account_id: int) -> list[int]:
    async with sessions() as session:
        rows = await session.scalars(
            sa.select(LedgerEntry.amount_minor).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == LedgerKind.CALL_CHARGE
            )
        )
        return list(rows)


async def test_a_call_written_twice_is_stored_and_charged_once(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    account = await new_account(db_session)
    writer = SqlCallLedger(sessions=db_session, linger_s=0)
    record = pstn_call("call-once", account)
    await writer.record_call(record)
    await writer.record_call(record)  # a retry, or the engine writing again after a restart
    assert await charges(db_session, account) == [-13]  # 61 s at 12/min, per second, rounded up
    async with db_session() as session:
        cdr = await session.get(Cdr, "call-once")
        assert cdr is not None and cdr.cost_minor == 13 and cdr.sip_code is None
        legs = (await session.scalars(sa.select(CdrLeg).where(CdrLeg.cdr_id == "call-once"))).all()
        assert [leg.billed_seconds for leg in legs] == [61]


async def test_calls_ending_together_share_one_transaction(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    account = await new_account(db_session)
    writer = SqlCallLedger(sessions=db_session, linger_s=0.05)
    records = [pstn_call(f"call-batch-{n}", account) for n in range(5)]
    await asyncio.gather(*(writer.record_call(r) for r in records))
    assert writer.batches == 1
    assert len(await charges(db_session, account)) == 5


async def test_one_bad_record_does_not_lose_the_others_in_its_batch(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    account = await new_account(db_session)
    writer = SqlCallLedger(sessions=db_session, linger_s=0.05)
    good = [pstn_call(f"call-good-{n}", account) for n in range(3)]
    bad = pstn_call("call-bad", 999_999)  # no such account: its charge cannot be posted
    results = await asyncio.gather(
        *(writer.record_call(r) for r in [*good, bad]), return_exceptions=True
    )
    assert [r is None for r in results] == [True, True, True, False]
    async with db_session() as session:
        stored = set(await session.scalars(sa.select(Cdr.id).where(Cdr.id.like("call-good-%"))))
    assert stored == {"call-good-0", "call-good-1", "call-good-2"}


async def test_the_sip_code_is_the_final_response_the_caller_got_or_none(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    writer = SqlCallLedger(sessions=db_session, linger_s=0)
    await writer.record_call(ended_without_answer("call-486", 17, caller_answered=False))
    await writer.record_call(ended_without_answer("call-greeted", 17, caller_answered=True))
    async with db_session() as session:
        rejected = await session.get(Cdr, "call-486")
        greeted = await session.get(Cdr, "call-greeted")
    assert rejected is not None and rejected.sip_code == 486
    assert greeted is not None and greeted.sip_code is None and greeted.hangup_cause == 17


async def test_a_cdr_carries_its_accounts_currency_with_or_without_charges(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    """The currency is read inside the INSERT (no query of its own): the account's,
    in a batch without charges as in one with them, and none without an account."""
    account = await new_account(db_session)
    writer = SqlCallLedger(sessions=db_session, linger_s=0.05)
    free = replace(pstn_call("call-free", account), legs=(), answered_position=None)  # no charge
    await asyncio.gather(
        writer.record_call(free),
        writer.record_call(replace(free, call_id="call-free-2")),
        writer.record_call(replace(free, call_id="call-no-account", account_id=None)),
    )
    await writer.record_call(pstn_call("call-charged", account))
    async with db_session() as session:
        result = await session.execute(sa.select(Cdr.id, Cdr.currency).where(Cdr.id.like("call-%")))
        rows = {cdr_id: currency for cdr_id, currency in result}
    assert rows == {
        "call-free": "EUR",
        "call-free-2": "EUR",
        "call-no-account": None,
        "call-charged": "EUR",
    }
    assert writer.batches == 2


async def test_calls_beyond_a_full_batch_are_written_by_the_next_one(
    db_session: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that ends while a batch lingers waits for that batch only if it fits
    in it; the others queue for the next batch (none is left waiting for ever)."""
    monkeypatch.setattr("callcontrol.repositories.cdrs.MAX_BATCH", 2)
    writer = SqlCallLedger(sessions=db_session, linger_s=0.05)
    records = [ended_without_answer(f"call-over-{n}", 17, caller_answered=False) for n in range(5)]
    await asyncio.wait_for(asyncio.gather(*(writer.record_call(r) for r in records)), 10)
    async with db_session() as session:
        stored = set(await session.scalars(sa.select(Cdr.id).where(Cdr.id.like("call-over-%"))))
    assert stored == {f"call-over-{n}" for n in range(5)}
    assert writer.batches == 3
