"""The ledger: the one place money moves.

Rules this module keeps:
- Every change of ``accounts.balance_minor`` is one ``ledger_entries`` row, written
  in the caller's current transaction together with the balance; the caller commits
  or rolls back both.
- The balance is moved by ``UPDATE ... SET balance_minor = balance_minor + :amount
  RETURNING balance_minor``: atomic on both backends, so concurrent posts never lose
  an update (PostgreSQL row-locks the account until commit; SQLite has one writer).
- A charge with an ``idempotency_key`` is posted at most once: the unique constraint
  decides, inside a SAVEPOINT so a duplicate leaves the caller's transaction usable.
  A duplicate that disagrees with the first post (other account, amount or currency)
  is a bug upstream and raises :class:`IdempotencyConflict`.
- Amounts are integers in minor units, in the account's own currency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from callcontrol.db.models import Account, LedgerEntry
from callcontrol.db.types import utcnow
from callcontrol.domain.vocabulary import LedgerKind

_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Core tables: the balance UPDATE and the entry INSERT bypass the ORM on purpose.
_ACCOUNTS = cast(sa.Table, Account.__table__)
_ENTRIES = cast(sa.Table, LedgerEntry.__table__)


class LedgerError(Exception):
    """A posting that must not happen; nothing was changed."""


class AccountNotFound(LedgerError):
    pass


class CurrencyMismatch(LedgerError):
    pass


class IdempotencyConflict(LedgerError):
    """The key was already used for a different posting."""


@dataclass(frozen=True, slots=True)
class LedgerPostResult:
    entry_id: int  # the new entry, or the earlier one when already posted
    balance_minor: int  # the account balance after this post (in this transaction)
    posted: bool  # False: the idempotency key was already used; nothing changed

    @property
    def already_posted(self) -> bool:
        return not self.posted


async def post(
    session: AsyncSession,
    *,
    account_id: int,
    kind: LedgerKind,
    amount_minor: int,
    currency: str,
    idempotency_key: str | None = None,
    number_id: int | None = None,
    cdr_id: str | None = None,
    period_start: date | None = None,
    description: str = "",
) -> LedgerPostResult:
    """Record ``amount_minor`` (+ credit, - debit) on the account, in the current transaction."""
    _check_amount(amount_minor, currency)
    entry = {
        "account_id": account_id,
        "kind": kind,
        "amount_minor": amount_minor,
        "currency": currency,
        "created_at": utcnow(),
        "number_id": number_id,
        "cdr_id": cdr_id,
        "period_start": period_start,
        "idempotency_key": idempotency_key,
        "description": description,
    }
    # Flush the caller's pending work first, so an IntegrityError inside the
    # savepoint can only be ours.
    await session.flush()
    try:
        async with session.begin_nested():
            entry_id = await _insert_entry(session, entry)
            balance = await _move_balance(session, account_id, amount_minor, currency)
    except IntegrityError:
        earlier = await _entry_by_key(session, idempotency_key) if idempotency_key else None
        if earlier is None:
            await _current_balance(session, account_id)  # AccountNotFound if that was it
            raise
        _check_same_posting(earlier, account_id, amount_minor, currency)
        balance = await _current_balance(session, account_id)
        return LedgerPostResult(entry_id=earlier.id, balance_minor=balance, posted=False)
    _refresh_loaded_account(session, account_id, balance)
    return LedgerPostResult(entry_id=entry_id, balance_minor=balance, posted=True)


async def balance_from_ledger(session: AsyncSession, account_id: int) -> int:
    """The balance as the ledger says it is (sum of entries), to check the cached one."""
    total = await session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount_minor), 0)).where(
            LedgerEntry.account_id == account_id
        )
    )
    return int(total or 0)


def _check_amount(amount_minor: int, currency: str) -> None:
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise TypeError(f"amount_minor must be an int of minor units, not {amount_minor!r}")
    if not _CURRENCY.match(currency):
        raise ValueError(f"currency must be ISO 4217 (three capitals), not {currency!r}")


async def _insert_entry(session: AsyncSession, entry: dict[str, object]) -> int:
    result = await session.execute(sa.insert(_ENTRIES).values(**entry).returning(_ENTRIES.c.id))
    return int(result.scalar_one())


async def _move_balance(
    session: AsyncSession, account_id: int, amount_minor: int, currency: str
) -> int:
    accounts = _ACCOUNTS
    result = await session.execute(
        sa.update(accounts)
        .where(accounts.c.id == account_id, accounts.c.currency == currency)
        .values(balance_minor=accounts.c.balance_minor + amount_minor)
        .returning(accounts.c.balance_minor)
    )
    balance = result.scalar_one_or_none()
    if balance is None:
        # Raising inside the savepoint rolls the entry back with it.
        known = await session.scalar(
            sa.select(accounts.c.currency).where(accounts.c.id == account_id)
        )
        if known is None:
            raise AccountNotFound(f"account {account_id} does not exist")
        raise CurrencyMismatch(f"account {account_id} is kept in {known}, not {currency}")
    return int(balance)


async def _entry_by_key(session: AsyncSession, key: str) -> LedgerEntry | None:
    return await session.scalar(sa.select(LedgerEntry).where(LedgerEntry.idempotency_key == key))


def _check_same_posting(
    earlier: LedgerEntry, account_id: int, amount_minor: int, currency: str
) -> None:
    if (earlier.account_id, earlier.amount_minor, earlier.currency) != (
        account_id,
        amount_minor,
        currency,
    ):
        raise IdempotencyConflict(
            f"idempotency key {earlier.idempotency_key!r} was posted as "
            f"{earlier.amount_minor} {earlier.currency} on account {earlier.account_id}"
        )


async def _current_balance(session: AsyncSession, account_id: int) -> int:
    accounts = _ACCOUNTS
    balance = await session.scalar(
        sa.select(accounts.c.balance_minor).where(accounts.c.id == account_id)
    )
    if balance is None:
        raise AccountNotFound(f"account {account_id} does not exist")
    return int(balance)


def _refresh_loaded_account(session: AsyncSession, account_id: int, balance: int) -> None:
    # The UPDATE bypassed the ORM; an Account already loaded in this session must
    # not keep showing the old balance (and must not count as a user change).
    account = session.sync_session.identity_map.get(identity_key(Account, account_id))
    if account is not None:
        set_committed_value(account, "balance_minor", balance)
