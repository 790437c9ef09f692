"""The PSTN price list: per-minute rates by destination prefix.

Rules kept here: one rate per prefix (unique); the longest matching prefix wins
when a call is rated (the call path's own lookup, ``repositories/numbers``).
Importing a sheet is all or nothing and replaces the rate of a prefix already
present (an update), adding the others; it never deletes rates the sheet does
not name. A destination without a rate is refused by the call path as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import Rate
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.inventory import RowError
from callcontrol.domain.rate_sheet import RateRow
from callcontrol.services.errors import NotFound
from callcontrol.services.inventory import ImportRefused


class PrefixTaken(InvalidInput):
    code = "prefix_taken"


@dataclass(frozen=True, slots=True)
class ImportedRates:
    added: int
    updated: int


async def list_rates(
    session: AsyncSession, *, prefix: str | None, limit: int, offset: int
) -> list[Rate]:
    query = sa.select(Rate).order_by(Rate.prefix)
    if prefix:
        query = query.where(Rate.prefix.startswith(prefix, autoescape=True))
    return list(await session.scalars(query.limit(limit).offset(offset)))


async def rate_for(session: AsyncSession, digits: str) -> Rate | None:
    """The rate of the longest prefix of ``digits`` (E.164 digits, no '+')."""
    prefixes = [digits[:n] for n in range(1, min(len(digits), 15) + 1)]
    return await session.scalar(
        sa.select(Rate)
        .where(Rate.prefix.in_(prefixes))
        .order_by(sa.func.length(Rate.prefix).desc())
        .limit(1)
    )


async def get_rate(session: AsyncSession, rate_id: int) -> Rate:
    found = await session.get(Rate, rate_id)
    if found is None:
        raise NotFound(f"rate {rate_id} not found")
    return found


async def add_rate(session: AsyncSession, row: RateRow) -> Rate:
    if await session.scalar(sa.select(Rate.id).where(Rate.prefix == row.prefix)) is not None:
        raise PrefixTaken(f"prefix {row.prefix} already has a rate; edit it instead")
    rate = Rate(
        prefix=row.prefix, rate_per_minute_minor=row.rate_per_minute_minor,
        currency=row.currency, description=row.description,
    )  # fmt: skip
    session.add(rate)
    await session.flush()
    return rate


async def import_rates(
    session: AsyncSession, rows: Sequence[RateRow], errors: Sequence[RowError]
) -> ImportedRates:
    if errors:
        raise ImportRefused(errors)
    existing = {r.prefix: r for r in await session.scalars(sa.select(Rate))}
    added = updated = 0
    for row in rows:
        rate = existing.get(row.prefix)
        if rate is None:
            session.add(Rate(
                prefix=row.prefix, rate_per_minute_minor=row.rate_per_minute_minor,
                currency=row.currency, description=row.description,
            ))  # fmt: skip
            added += 1
        else:
            rate.rate_per_minute_minor = row.rate_per_minute_minor
            rate.currency, rate.description = row.currency, row.description
            updated += 1
    await session.flush()
    return ImportedRates(added, updated)


RATE_FIELDS = frozenset({"rate_per_minute_minor", "currency", "description"})
"""What a rate's edit may change (its prefix is its identity: delete and add)."""


async def edit_rate(session: AsyncSession, rate_id: int, changes: Mapping[str, object]) -> Rate:
    unknown = set(changes) - RATE_FIELDS
    if unknown:
        raise InvalidInput(f"a rate's {', '.join(sorted(unknown))} cannot be changed")
    rate = await get_rate(session, rate_id)
    for name, value in changes.items():
        setattr(rate, name, value)
    await session.flush()
    return rate


async def delete_rate(session: AsyncSession, rate_id: int) -> None:
    await session.delete(await get_rate(session, rate_id))
    await session.flush()
