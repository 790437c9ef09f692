"""End users' documents of numbers that need them: upload, list, download,
review, delete, and their removal (erasure, retention).

Files are written under ``documents.root`` (``<account>/<uuid>.<ext>``) before
their row is committed, and removed if the commit fails; rows are deleted after
their files. Which caller may see a document is the API's to decide (the
owner's account or the operator: it passes ``may_see``); this module never
serves a file by name. Callers get ``DocumentView``s, never ORM rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Number, NumberDocument
from callcontrol.db.types import utcnow
from callcontrol.domain.end_user_documents import DocumentKind, DocumentState, document_type, review
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.vocabulary import NumberState
from callcontrol.repositories import media_files as files
from callcontrol.repositories.personal_data import delete_documents
from callcontrol.services.errors import NotFound, QuotaExceeded
from callcontrol.settings import DocumentSettings

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class DocumentView:
    """A document as the API shows it, with the number's DID (None once the
    number row is gone)."""

    id: int
    account_id: int
    number_id: int | None
    did: str | None
    kind: str
    content_type: str
    original_name: str
    stored_name: str
    size_bytes: int
    state: DocumentState
    reason: str | None
    created_at: datetime
    reviewed_at: datetime | None

    @classmethod
    def of(cls, row: NumberDocument, did: str | None) -> DocumentView:
        return cls(
            id=row.id, account_id=row.account_id, number_id=row.number_id, did=did,
            kind=row.kind, content_type=row.content_type, original_name=row.original_name,
            stored_name=row.stored_name, size_bytes=row.size_bytes,
            state=DocumentState(row.state), reason=row.reason, created_at=row.created_at,
            reviewed_at=row.reviewed_at,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reviewed:
    document: DocumentView
    accepts_number_id: int | None
    """A pending number whose documents this approval accepts (activation may
    proceed), or None."""


async def upload(
    sessions: Sessions, settings: DocumentSettings, number: Number, kind: DocumentKind,
    name: str, data: bytes, *, quota: int | None,
) -> DocumentView:  # fmt: skip
    if not number.needs_documents or number.account_id is None:
        raise InvalidInput(f"number {number.e164} needs no documents")
    content_type, ext = document_type(data, max_bytes=settings.max_bytes)
    owner = number.account_id
    if quota is not None:
        async with sessions() as session:
            count = await session.scalar(
                sa.select(sa.func.count())
                .select_from(NumberDocument)
                .where(NumberDocument.account_id == owner)
            )
        if (count or 0) >= quota:
            raise QuotaExceeded(f"the account stores {count} documents (quota {quota})")
    stored_name = f"{owner}/{uuid.uuid4()}.{ext}"
    await files.write(settings.root, stored_name, data)
    try:
        async with sessions() as session, session.begin():
            row = NumberDocument(
                number_id=number.id, account_id=owner, kind=kind.value,
                content_type=content_type, original_name=name, stored_name=stored_name,
                size_bytes=len(data), state=DocumentState.SUBMITTED.value,
            )  # fmt: skip
            session.add(row)
            await session.flush()
            await session.refresh(row)
    except BaseException:
        await files.remove(settings.root, stored_name)
        raise
    return DocumentView.of(row, number.e164)


async def of_number(sessions: Sessions, number: Number) -> list[DocumentView]:
    async with sessions() as session:
        rows = await session.scalars(
            sa.select(NumberDocument)
            .where(NumberDocument.number_id == number.id)
            .order_by(NumberDocument.id)
        )
        return [DocumentView.of(row, number.e164) for row in rows]


async def _row(session: AsyncSession, document_id: int) -> NumberDocument:
    found = await session.get(NumberDocument, document_id)
    if found is None:
        raise NotFound(f"document {document_id} not found")
    return found


async def visible(
    sessions: Sessions, document_id: int, may_see: Callable[[int], bool]
) -> DocumentView:
    """The document, if ``may_see`` its account; else NotFound (as if it did not exist)."""
    async with sessions() as session:
        found = await session.execute(
            sa.select(NumberDocument, Number.e164)
            .outerjoin(Number, Number.id == NumberDocument.number_id)
            .where(NumberDocument.id == document_id)
        )
        row = found.one_or_none()
    if row is None or not may_see(row[0].account_id):
        raise NotFound(f"document {document_id} not found")
    return DocumentView.of(row[0], row[1])


async def read(settings: DocumentSettings, document: DocumentView) -> bytes:
    data = await files.read(settings.root, document.stored_name)
    if data is None:
        raise NotFound(f"the file of document {document.id} is missing")
    return data


async def decide(
    sessions: Sessions, document: DocumentView, *, approved: bool, reason: str | None
) -> Reviewed:
    """Approve or reject; an approval of a pending number's first accepted
    documents says so (``Reviewed.accepts_number_id``)."""
    async with sessions() as session, session.begin():
        row = await _row(session, document.id)
        row.state = review(DocumentState(row.state), approved, reason).value
        row.reason = reason.strip() if reason else None
        row.reviewed_at = utcnow()
        await session.flush()
        number = await session.get(Number, row.number_id) if row.number_id else None
        accepts = (
            number.id
            if approved and number is not None and number.state is NumberState.PENDING
            and number.documents_accepted_at is None
            else None
        )  # fmt: skip
        return Reviewed(DocumentView.of(row, document.did), accepts)


async def delete(sessions: Sessions, root: Path, document: DocumentView) -> int:
    return await delete_where(sessions, root, NumberDocument.id == document.id)


async def delete_where(sessions: Sessions, root: Path, *where: sa.ColumnElement[bool]) -> int:
    """Delete matching documents, files first; how many."""
    return await delete_documents(sessions, root, *where)
