"""The outbound call path's view of a SIP account: owner, balance, presented number.

Implements the lookup an outbound call needs in one query: the presented number
is the SIP account's own choice if set, else the account's default; its
CallerID service flag comes with it. A number is presented only while the
account holds it in service (active, or suspended - then the balance stops the
call anyway): never another account's, a reserved or pending one, or a free
test number.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Account, Number, Rate, SipAccount
from callcontrol.domain import rating
from callcontrol.domain.outbound import SipAccountFacts
from callcontrol.domain.vocabulary import NumberKind, NumberState

PRESENTABLE_STATES = (NumberState.ACTIVE, NumberState.SUSPENDED)


class SqlSipAccountDirectory:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def facts(self, login: str) -> SipAccountFacts | None:
        presented_id = sa.func.coalesce(SipAccount.presented_number_id, Account.callerid_number_id)
        query = (
            sa.select(
                SipAccount.login,
                Account.id,
                Account.balance_minor,
                Account.currency,
                Number.id,
                Number.e164,
                Number.callerid_service,
                Number.account_id,
                Number.state,
                Number.kind,
            )
            .join(Account, Account.id == SipAccount.account_id)
            .outerjoin(Number, Number.id == presented_id)
            .where(SipAccount.login == login)
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        login_, account_id, balance, currency, number_id, e164, service, owner, state, kind = row
        owned = (
            number_id is not None
            and owner == account_id
            and state in PRESENTABLE_STATES
            and kind is NumberKind.VOICE
        )
        return SipAccountFacts(
            login=login_,
            account_id=account_id,
            balance_minor=balance,
            currency=currency,
            presented_number=e164 if owned else None,
            presented_number_id=number_id if owned else None,
            callerid_service=bool(service) if owned else False,
        )

    async def rate_for(self, digits: str) -> rating.Rate | None:
        """The rate of the longest prefix matching an E.164 number (digits, no '+')."""
        prefixes = [digits[:n] for n in range(1, min(len(digits), 15) + 1)]
        async with self._sessions() as session:
            row = (
                await session.execute(
                    sa.select(Rate.prefix, Rate.rate_per_minute_minor, Rate.currency)
                    .where(Rate.prefix.in_(prefixes))
                    .order_by(sa.func.length(Rate.prefix).desc())
                    .limit(1)
                )
            ).first()
        return rating.Rate(row[0], row[1], row[2]) if row else None
