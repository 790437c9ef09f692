"""Stores finished calls: the CDR, one row per leg, and the PSTN charges.

Implements ``engine.ports.CallLedger``. Everything for one call is written in
one transaction; the CDR id is the caller's channel id and each charge has an
idempotency key, so writing the same call twice (a retry, a restart) stores
and charges it once.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import Account, Cdr, CdrLeg
from callcontrol.domain import rating
from callcontrol.domain.call_events import CallRecord, LegRecord
from callcontrol.domain.vocabulary import LedgerKind

# Q.850 cause -> the SIP code chan_pjsip sends for it (checked on Asterisk 22).
SIP_CODE_OF_CAUSE = {1: 404, 17: 486, 18: 408, 19: 480, 21: 403, 34: 503, 41: 503, 42: 503}


def leg_cost_minor(leg: LegRecord) -> int:
    if leg.rate is None or leg.billed_seconds <= 0:
        return 0
    return rating.cost(leg.rate, leg.billed_seconds)


class SqlCallLedger:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record_call(self, record: CallRecord) -> None:
        async with self._sessions() as session, session.begin():
            exists = await session.scalar(sa.select(Cdr.id).where(Cdr.id == record.call_id))
            if exists is not None:
                return
            currency = None
            if record.account_id is not None:
                currency = await session.scalar(
                    sa.select(Account.currency).where(Account.id == record.account_id)
                )
            cost = sum(leg_cost_minor(leg) for leg in record.legs)
            session.add(_cdr_row(record, cost, currency))
            session.add_all(_leg_row(record.call_id, leg) for leg in record.legs if leg.started_at)
            await session.flush()
            await self._charge(session, record, currency)

    async def _charge(
        self, session: AsyncSession, record: CallRecord, currency: str | None
    ) -> None:
        if record.account_id is None or currency is None:
            return
        for leg in record.legs:
            cost = leg_cost_minor(leg)
            if cost == 0:
                continue
            await ledger.post(
                session,
                account_id=record.account_id,
                kind=LedgerKind.CALL_CHARGE,
                amount_minor=-cost,
                currency=currency,
                idempotency_key=f"call:{record.call_id}:{leg.position}",
                number_id=record.number_id,
                cdr_id=record.call_id,
                description=f"{leg.billed_seconds} s to {leg.target}",
            )


def _cdr_row(record: CallRecord, cost: int, currency: str | None) -> Cdr:
    answered = None
    if record.answered_position is not None:
        leg = next(leg for leg in record.legs if leg.position == record.answered_position)
        answered = f"{leg.position}:{leg.type.value}:{leg.target}"
    return Cdr(
        id=record.call_id,
        direction=record.direction,
        did=record.did,
        number_id=record.number_id,
        account_id=record.account_id,
        caller=record.caller,
        started_at=record.started_at,
        answered_at=record.answered_at,
        ended_at=record.ended_at,
        disposition=record.disposition,
        sip_code=SIP_CODE_OF_CAUSE.get(record.cause or 0) if record.answered_at is None else None,
        hangup_cause=record.cause,
        reject_reason=record.reject_reason,
        answered_destination=answered,
        ring_ms=record.ring_ms,
        talk_ms=record.talk_ms,
        cost_minor=cost,
        currency=currency,
    )


def _leg_row(cdr_id: str, leg: LegRecord) -> CdrLeg:
    return CdrLeg(
        cdr_id=cdr_id,
        position=leg.position,
        destination_type=leg.type,
        target=leg.target,
        channel_id=leg.channel_id,
        started_at=leg.started_at,
        answered_at=leg.answered_at,
        ended_at=leg.ended_at,
        outcome=leg.outcome,
        cause=leg.cause,
        billed_seconds=leg.billed_seconds,
        cost_minor=leg_cost_minor(leg),
    )
