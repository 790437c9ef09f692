"""The operator's number inventory: import, search, edit, retire.

Rules kept here:
- An import is all or nothing: rows are checked by ``domain.inventory``, then
  against the database (a DID already in the inventory is an error on its
  line); with any error nothing is stored and every error is returned.
  Imported numbers are ``available`` (in the pool).
- Prices and flags can be edited at any time; the new prices apply to the
  next purchase and the next monthly charge. The currency of a number that
  someone holds cannot change (its charges would mix currencies).
- Retiring takes a number out of the inventory for good: only an
  ``available`` number may be retired (a held one is first released, deleted
  or refused); its row goes, the history that named it (CDRs, ledger) keeps
  the DID and amounts with the link cleared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import Number
from callcontrol.domain.errors import IllegalTransition, InvalidInput
from callcontrol.domain.inventory import InventoryRow, RowError
from callcontrol.domain.money import require_iso_4217
from callcontrol.domain.vocabulary import NumberKind, NumberState
from callcontrol.services.errors import NotFound


class ImportRefused(InvalidInput):
    """The file has errors; nothing was stored. ``errors`` names each line."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} bad rows; nothing was imported")
        self.errors = list(errors)


async def import_numbers(
    session: AsyncSession, rows: Sequence[InventoryRow], errors: Sequence[RowError]
) -> int:
    """Store every row in the session's transaction, or raise ``ImportRefused``."""
    problems = list(errors)
    dids = [row.e164 for row in rows]
    existing: set[str] = set()
    for start in range(0, len(dids), 500):
        chunk = dids[start : start + 500]
        existing |= set(await session.scalars(sa.select(Number.e164).where(Number.e164.in_(chunk))))
    for row in rows:
        if row.e164 in existing:
            problems.append(RowError(row.line, "e164", f"{row.e164} is already in the inventory"))
    if problems:
        raise ImportRefused(sorted(problems, key=lambda e: e.line))
    for row in rows:
        session.add(Number(
            e164=row.e164, country_code=row.country_code, region=row.region, city=row.city,
            kind=row.kind, state=NumberState.AVAILABLE, reservable=row.reservable,
            needs_documents=row.needs_documents, monthly_fee_minor=row.monthly_fee_minor,
            setup_fee_minor=row.setup_fee_minor, currency=row.currency,
            expected_activation=row.expected_activation,
        ))  # fmt: skip
    await session.flush()
    return len(rows)


@dataclass(frozen=True, slots=True)
class InventoryFilter:
    state: NumberState | None = None
    account_id: int | None = None
    country_code: int | None = None
    region: str | None = None
    city: str | None = None
    kind: NumberKind | None = None
    did_prefix: str | None = None  # "+4930" or "4930"
    limit: int = 100
    offset: int = 0


async def search(session: AsyncSession, f: InventoryFilter) -> list[Number]:
    query = sa.select(Number)
    for column, value in (
        (Number.state, f.state),
        (Number.account_id, f.account_id),
        (Number.country_code, f.country_code),
        (Number.region, f.region),
        (Number.city, f.city),
        (Number.kind, f.kind),
    ):
        if value is not None:
            query = query.where(column == value)
    if f.did_prefix:
        digits = f.did_prefix.lstrip("+")
        query = query.where(Number.e164.startswith("+" + digits, autoescape=True))
    rows = await session.scalars(query.order_by(Number.id).limit(f.limit).offset(f.offset))
    return list(rows)


@dataclass(frozen=True, slots=True)
class InventoryEdit:
    """Only the fields given (not None) change; ``city``/``expected_activation``
    may be cleared with ``clear``."""

    monthly_fee_minor: int | None = None
    setup_fee_minor: int | None = None
    currency: str | None = None
    reservable: bool | None = None
    needs_documents: bool | None = None
    city: str | None = None
    expected_activation: str | None = None
    clear: frozenset[str] = frozenset()


async def number_by_did(session: AsyncSession, did: str, *, lock: bool = False) -> Number:
    query = sa.select(Number).where(Number.e164 == did)
    if lock:
        query = query.with_for_update()
    found = await session.scalar(query)
    if found is None:
        raise NotFound(f"number {did} not found")
    return found


async def edit(session: AsyncSession, did: str, change: InventoryEdit) -> Number:
    number = await number_by_did(session, did, lock=True)
    if change.currency is not None and change.currency != number.currency:
        require_iso_4217(change.currency)
        if number.account_id is not None:
            raise IllegalTransition(
                number.state, number.state, "edit", "the currency of a held number cannot change"
            )
        number.currency = change.currency
    for name in ("monthly_fee_minor", "setup_fee_minor", "reservable", "needs_documents"):
        value = getattr(change, name)
        if value is not None:
            setattr(number, name, value)
    for name in ("city", "expected_activation"):
        value = getattr(change, name)
        if value is not None:
            setattr(number, name, value)
        elif name in change.clear:
            setattr(number, name, None)
    await session.flush()
    return number


async def retire(session: AsyncSession, did: str) -> None:
    number = await number_by_did(session, did, lock=True)
    if number.state is not NumberState.AVAILABLE:
        raise IllegalTransition(
            number.state, None, "retire",
            f"the number is {number.state}; only an available number may be retired",
        )  # fmt: skip
    # Core DELETE: the database clears the links (CDRs, ledger: SET NULL).
    await session.execute(sa.delete(Number).where(Number.id == number.id))
