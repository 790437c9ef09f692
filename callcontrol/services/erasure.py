"""Closing an account whose personal data is erased.

Erasure is the end of the customer relationship, so besides the personal data
(``repositories/personal_data``) it closes what could still act for the
account or bring data back:

- every API token of the account is revoked (a revoked token is a 401 at once);
- every SIP account is deprovisioned from Asterisk (phones can no longer
  register or call out) through the one provisioner;
- numbers are released by the life-cycle rules: a reservation is released, an
  active or suspended number is deleted (rent settled up to today, as any
  deletion), a pending one is refused (returned to the pool, its setup fee
  refunded); a lent test number runs out by itself within its hour;
- the account stays, marked ``erased_at``: its ledger is kept, and the API
  refuses any later change of its name or email (409).
"""

from __future__ import annotations

from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import ApiToken, Number, SipAccount
from callcontrol.db.types import utcnow
from callcontrol.domain.vocabulary import NumberState
from callcontrol.services.numbers import NumberService


class Deprovisioner(Protocol):
    async def delete_sip_account(self, login: str) -> None: ...


async def revoke_account_tokens(sessions: async_sessionmaker[AsyncSession], account_id: int) -> int:
    async with sessions() as session, session.begin():
        result = await session.execute(
            sa.update(ApiToken)
            .where(ApiToken.account_id == account_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def close_account(
    sessions: async_sessionmaker[AsyncSession],
    numbers: NumberService,
    provisioner: Deprovisioner,
    account_id: int,
) -> None:
    await revoke_account_tokens(sessions, account_id)
    async with sessions() as session:
        logins = list(
            await session.scalars(
                sa.select(SipAccount.login).where(SipAccount.account_id == account_id)
            )
        )
        held = (
            await session.execute(
                sa.select(Number.id, Number.state).where(Number.account_id == account_id)
            )
        ).all()
    for login in logins:
        await provisioner.delete_sip_account(login)
    for number_id, state in held:
        if state is NumberState.RESERVED:
            await numbers.release(number_id, None)
        elif state in (NumberState.ACTIVE, NumberState.SUSPENDED):
            await numbers.delete(number_id, None)
        elif state is NumberState.PENDING:
            await numbers.refuse_activation(number_id, reason="account erased")
