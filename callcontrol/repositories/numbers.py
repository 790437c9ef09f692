"""The call path's view of a DID: one snapshot, read in two short queries.

Implements ``engine.ports.NumberDirectory``. The snapshot carries the owner's
balance, the forwarding rule, its destinations (PSTN ones with their rate, by
longest prefix) and the Asterisk media URIs of the greetings.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from callcontrol.db.models import (
    Account,
    ForwardingDestination,
    ForwardingRule,
    MediaFile,
    Number,
    Rate,
)
from callcontrol.domain import rating
from callcontrol.domain.routing import DestinationFacts, NumberSnapshot
from callcontrol.domain.vocabulary import DestinationType, ForwardingMode
from callcontrol.settings import MediaSettings


def media_uri(media: MediaSettings, stored_name: str) -> str:
    """``sound:<path as Asterisk sees it, without the extension>``."""
    stem = stored_name[:-4] if stored_name.endswith(".wav") else stored_name
    return "sound:" + media.asterisk_path(stem)


class SqlNumberDirectory:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], media: MediaSettings) -> None:
        self._sessions = sessions
        self._media = media

    async def snapshot(self, did: str) -> NumberSnapshot | None:
        greeting = aliased(MediaFile)
        vm_greeting = aliased(MediaFile)
        query = (
            sa.select(
                Number,
                Account.balance_minor,
                ForwardingRule.mode,
                greeting.stored_name,
                vm_greeting.stored_name,
            )
            .outerjoin(Account, Account.id == Number.account_id)
            .outerjoin(ForwardingRule, ForwardingRule.number_id == Number.id)
            .outerjoin(greeting, greeting.id == Number.greeting_media_id)
            .outerjoin(vm_greeting, vm_greeting.id == Number.voicemail_greeting_media_id)
            .where(Number.e164 == did)
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).first()
            if row is None:
                return None
            number, balance, mode, greeting_name, vm_name = row
            destinations = await self._destinations(session, number.id)
        return NumberSnapshot(
            number_id=number.id,
            account_id=number.account_id,
            e164=number.e164,
            kind=number.kind,
            state=number.state,
            balance_minor=balance or 0,
            currency=number.currency,
            test_expires_at=number.test_expires_at,
            greeting_media=media_uri(self._media, greeting_name) if greeting_name else None,
            voicemail_enabled=number.voicemail_enabled,
            voicemail_greeting_media=media_uri(self._media, vm_name) if vm_name else None,
            mode=mode or ForwardingMode.SEQUENTIAL,
            destinations=destinations,
        )

    async def _destinations(
        self, session: AsyncSession, number_id: int
    ) -> tuple[DestinationFacts, ...]:
        rows = (
            await session.scalars(
                sa.select(ForwardingDestination)
                .where(ForwardingDestination.number_id == number_id)
                .order_by(ForwardingDestination.position)
            )
        ).all()
        facts = []
        for row in rows:
            rate = None
            if row.type is DestinationType.PSTN:
                rate = await _rate_for(session, row.target.lstrip("+"))
            facts.append(
                DestinationFacts(row.position, row.type, row.target, row.ring_timeout_s, rate)
            )
        return tuple(facts)


async def _rate_for(session: AsyncSession, digits: str) -> rating.Rate | None:
    """The rate of the longest matching prefix."""
    prefixes = [digits[:n] for n in range(1, min(len(digits), 15) + 1)]
    row = (
        await session.execute(
            sa.select(Rate.prefix, Rate.rate_per_minute_minor, Rate.currency)
            .where(Rate.prefix.in_(prefixes))
            .order_by(sa.func.length(Rate.prefix).desc())
            .limit(1)
        )
    ).first()
    return rating.Rate(row[0], row[1], row[2]) if row else None
