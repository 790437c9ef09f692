"""Issuing the closing documents: the ledger read for a period, numbered, frozen.

Rules kept here (the documents' content rules are ``domain.documents``'):

- a document is issued once per account, kind and period; asking again gives
  the same document (same number, same content), so retries burn no number;
- the number is taken by incrementing ``document_counters`` in the transaction
  that inserts the document. PostgreSQL row-locks the counter until commit and
  SQLite has one writer, so concurrent issues queue; a failed issue rolls its
  increment back. Numbers therefore never repeat and never skip;
- the content is rendered at issue and stored; the PDF is printed from it, so
  what a person reads is exactly the JSON that was issued.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Account, CdrLeg, LedgerEntry, Number
from callcontrol.db.money_models import CompanyProfile, Document, DocumentCounter
from callcontrol.db.types import utcnow
from callcontrol.domain.documents import (
    DocumentKind,
    Movement,
    Party,
    Period,
    Statement,
    document_number,
)
from callcontrol.services.errors import NotFound

_COUNTERS = cast(sa.Table, DocumentCounter.__table__)


@dataclass(frozen=True, slots=True)
class Issued:
    document: Document
    created: bool  # False: it had been issued before for this period

    @property
    def content(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.document.content))


async def party_of(session: AsyncSession, account: Account) -> Party:
    company = await session.get(CompanyProfile, account.id)
    if company is None:
        return Party(account.id, account.name)
    return Party(account.id, account.name, company.legal_name, company.address,
                 company.tax_id, company.contract_number)  # fmt: skip


async def opening_balance(session: AsyncSession, account_id: int, at: datetime) -> int:
    """The ledger's balance just before ``at`` (the sum of every earlier entry)."""
    total = await session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount_minor), 0)).where(
            LedgerEntry.account_id == account_id, LedgerEntry.created_at < at
        )
    )
    return int(total or 0)


async def movements(session: AsyncSession, account_id: int, period: Period) -> list[Movement]:
    billed = (
        sa.select(CdrLeg.cdr_id, sa.func.sum(CdrLeg.billed_seconds).label("seconds"))
        .where(CdrLeg.cost_minor > 0)
        .group_by(CdrLeg.cdr_id)
        .subquery()
    )
    rows = await session.execute(
        sa.select(LedgerEntry, Number.e164, billed.c.seconds)
        .outerjoin(Number, Number.id == LedgerEntry.number_id)
        .outerjoin(billed, billed.c.cdr_id == LedgerEntry.cdr_id)
        .where(
            LedgerEntry.account_id == account_id,
            LedgerEntry.created_at >= period.starts_at,
            LedgerEntry.created_at < period.ends_at,
        )
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
    )
    return [
        Movement(
            entry_id=entry.id,
            at=entry.created_at,
            kind=entry.kind,
            amount_minor=entry.amount_minor,
            number=e164,
            key=entry.idempotency_key,
            description=entry.description,
            billed_seconds=int(seconds or 0),
        )
        for entry, e164, seconds in rows
    ]


async def statement(session: AsyncSession, account: Account, period: Period) -> Statement:
    party = await party_of(session, account)
    opening = await opening_balance(session, account.id, period.starts_at)
    found = await movements(session, account.id, period)
    return Statement.of(party, period, account.currency, opening, found)


async def _existing(
    session: AsyncSession, account_id: int, kind: DocumentKind, period: Period
) -> Document | None:
    return await session.scalar(
        sa.select(Document).where(
            Document.account_id == account_id,
            Document.kind == kind.value,
            Document.period_from == period.first,
            Document.period_to == period.last,
        )
    )


async def _next_seq(session: AsyncSession, kind: DocumentKind) -> int:
    result = await session.execute(
        sa.update(_COUNTERS)
        .where(_COUNTERS.c.kind == kind.value)
        .values(last_seq=_COUNTERS.c.last_seq + 1)
        .returning(_COUNTERS.c.last_seq)
    )
    return int(result.scalar_one())


class DocumentService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def issue(self, account_id: int, kind: DocumentKind, period: Period) -> Issued:
        try:
            return await self._issue_once(account_id, kind, period)
        except IntegrityError:
            # Issued concurrently for the same period: that one stands, ours rolled back.
            async with self._sessions() as session:
                found = await _existing(session, account_id, kind, period)
            if found is None:
                raise
            return Issued(found, created=False)

    async def _issue_once(self, account_id: int, kind: DocumentKind, period: Period) -> Issued:
        async with self._sessions() as session, session.begin():
            account = await session.get(Account, account_id)
            if account is None:
                raise NotFound(f"account {account_id} not found")
            found = await _existing(session, account_id, kind, period)
            if found is not None:
                return Issued(found, created=False)
            content = await statement(session, account, period)
            seq = await _next_seq(session, kind)
            number = document_number(kind, seq)
            issued_at = self._clock()
            document = Document(
                account_id=account_id, kind=kind.value, seq=seq, number=number,
                period_from=period.first, period_to=period.last, currency=account.currency,
                total_minor=content.total_of(kind), issued_at=issued_at,
                content=json.dumps(content.render(kind, number, issued_at), ensure_ascii=False),
            )  # fmt: skip
            session.add(document)
            await session.flush()
            return Issued(document, created=True)
