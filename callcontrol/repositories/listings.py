"""The API's read queries: pages of an account's objects, the pool, a number by DID.

Each function takes the caller's session and returns ORM rows; who may see what
is decided by the API before it calls here (rows are filtered by the owner the
API passes, never loaded then compared).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import Account, MediaFile, Number, SipAccount
from callcontrol.domain.vocabulary import NumberKind, NumberState


@dataclass(frozen=True, slots=True)
class Page:
    limit: int = 100
    offset: int = 0


async def accounts(session: AsyncSession, page: Page) -> list[Account]:
    query = sa.select(Account).order_by(Account.id).limit(page.limit).offset(page.offset)
    return list(await session.scalars(query))


async def pool(
    session: AsyncSession, page: Page, *, country_code: int | None = None,
    region: str | None = None, city: str | None = None, kind: NumberKind | None = None,
) -> list[Number]:  # fmt: skip
    """Available numbers (the pool), filtered by what is given."""
    query = sa.select(Number).where(Number.state == NumberState.AVAILABLE)
    for column, value in (
        (Number.country_code, country_code),
        (Number.region, region),
        (Number.city, city),
        (Number.kind, kind),
    ):
        if value is not None:
            query = query.where(column == value)
    return list(
        await session.scalars(query.order_by(Number.id).limit(page.limit).offset(page.offset))
    )


async def numbers_of(session: AsyncSession, account_id: int, page: Page) -> list[Number]:
    query = sa.select(Number).where(Number.account_id == account_id).order_by(Number.id)
    return list(await session.scalars(query.limit(page.limit).offset(page.offset)))


async def number_by_did(session: AsyncSession, did: str) -> Number | None:
    return await session.scalar(sa.select(Number).where(Number.e164 == did))


async def number_by_id(session: AsyncSession, number_id: int) -> Number | None:
    return await session.get(Number, number_id)


async def media_file(session: AsyncSession, media_id: int) -> MediaFile | None:
    return await session.get(MediaFile, media_id)


async def media_of(session: AsyncSession, account_id: int, page: Page) -> list[MediaFile]:
    query = sa.select(MediaFile).where(MediaFile.account_id == account_id).order_by(MediaFile.id)
    return list(await session.scalars(query.limit(page.limit).offset(page.offset)))


async def sip_accounts_of(session: AsyncSession, account_id: int, page: Page) -> list[SipAccount]:
    query = sa.select(SipAccount).where(SipAccount.account_id == account_id).order_by(SipAccount.id)
    return list(await session.scalars(query.limit(page.limit).offset(page.offset)))
