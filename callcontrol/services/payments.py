"""Bank transfers recorded by the operator, and company details.

Rules kept here:

- a transfer is identified by the bank's reference: recording it again (a
  retry, a second operator, a re-imported statement) changes nothing and says
  so; the same reference with another account, amount or date is a conflict
  (409), never a second credit;
- the money goes through the ledger as a top-up with the key
  ``bank-transfer:<reference>`` (``NumberService.top_up``, which also
  reactivates suspended numbers once the balance is positive), then the
  payment row is written. A crash between the two is healed by the retry: the
  ledger key makes the credit exactly-once and the row is written then;
- amounts are positive ints of minor units in the account's currency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import Account, LedgerEntry
from callcontrol.db.money_models import BankPayment, CompanyProfile
from callcontrol.db.types import utcnow
from callcontrol.domain.documents import BANK_TRANSFER_KEY
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.money import validate_minor
from callcontrol.services.errors import NotFound

REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.:-]{0,99}")


class ReferenceReused(ledger.IdempotencyConflict):
    """The bank reference was recorded before with other values."""


class TopUps(Protocol):
    async def top_up(self, account_id: int, amount_minor: int, idempotency_key: str) -> object: ...


@dataclass(frozen=True, slots=True)
class Recorded:
    payment: BankPayment
    balance_minor: int
    created: bool  # False: this reference had been recorded already


def check_reference(reference: str) -> str:
    if REFERENCE.fullmatch(reference) is None:
        raise InvalidInput(
            "a bank reference is 1-100 letters, digits or / _ . : - (starting with a letter "
            f"or digit), got {reference!r}"
        )
    return reference


class PaymentService:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], top_ups: TopUps) -> None:
        self._sessions = sessions
        self._top_ups = top_ups

    async def record(
        self, account_id: int, *, reference: str, amount_minor: int, received_on: date
    ) -> Recorded:
        check_reference(reference)
        if validate_minor(amount_minor, "amount_minor") <= 0:
            raise InvalidInput(f"a payment must be positive, not {amount_minor}")
        async with self._sessions() as session:
            account = await session.get(Account, account_id)
            if account is None:
                raise NotFound(f"account {account_id} not found")
            earlier = await _by_reference(session, reference)
        if earlier is not None:
            return await self._repeat(earlier, account_id, amount_minor, received_on)
        key = BANK_TRANSFER_KEY + reference
        await self._top_ups.top_up(account_id, amount_minor, key)
        try:
            async with self._sessions() as session, session.begin():
                entry_id = await session.scalar(
                    sa.select(LedgerEntry.id).where(LedgerEntry.idempotency_key == key)
                )
                if entry_id is None:
                    raise RuntimeError(f"the top-up {key} left no ledger entry")
                row = BankPayment(
                    account_id=account_id, reference=reference, amount_minor=amount_minor,
                    currency=account.currency, received_on=received_on,
                    ledger_entry_id=entry_id, recorded_at=utcnow(),
                )  # fmt: skip
                session.add(row)
        except IntegrityError:
            async with self._sessions() as session:
                earlier = await _by_reference(session, reference)
            if earlier is None:
                raise
            return await self._repeat(earlier, account_id, amount_minor, received_on)
        return Recorded(row, await self._balance(account_id), created=True)

    async def _repeat(
        self, earlier: BankPayment, account_id: int, amount_minor: int, received_on: date
    ) -> Recorded:
        same = (earlier.account_id, earlier.amount_minor, earlier.received_on) == (
            account_id, amount_minor, received_on,
        )  # fmt: skip
        if not same:
            raise ReferenceReused(
                f"bank reference {earlier.reference!r} was recorded on {earlier.received_on} "
                "with another account, amount or date"
            )
        return Recorded(earlier, await self._balance(account_id), created=False)

    async def _balance(self, account_id: int) -> int:
        async with self._sessions() as session:
            return int(
                await session.scalar(
                    sa.select(Account.balance_minor).where(Account.id == account_id)
                )
                or 0
            )

    async def list_for(self, account_id: int) -> list[BankPayment]:
        async with self._sessions() as session:
            rows = await session.scalars(
                sa.select(BankPayment)
                .where(BankPayment.account_id == account_id)
                .order_by(BankPayment.received_on, BankPayment.id)
            )
            return list(rows)


async def _by_reference(session: AsyncSession, reference: str) -> BankPayment | None:
    return await session.scalar(sa.select(BankPayment).where(BankPayment.reference == reference))


async def set_company(
    session: AsyncSession, account_id: int, *, legal_name: str, address: str, tax_id: str,
    contract_number: str,
) -> CompanyProfile:  # fmt: skip
    """Make the account a company account (or correct its details)."""
    row = await session.get(CompanyProfile, account_id)
    if row is None:
        row = CompanyProfile(account_id=account_id)
        session.add(row)
    row.legal_name, row.address, row.tax_id = legal_name, address, tax_id
    row.contract_number = contract_number
    row.updated_at = utcnow()
    await session.flush()
    return row
