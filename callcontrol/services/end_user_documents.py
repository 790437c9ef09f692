"""End users' documents of numbers that need them: upload, list, download,
review, delete, and their removal (erasure, retention).

Files are written under ``documents.root`` (``<account>/<uuid>.<ext>``) before
their row is committed, and removed if the commit fails; rows are deleted after
their files. Which caller may see a document is the API's to decide (the
owner's account or the operator); this module never serves a file by name.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Number, NumberDocument
from callcontrol.db.types import utcnow
from callcontrol.domain.end_user_documents import DocumentKind, DocumentState, document_type, review
from callcontrol.domain.errors import InvalidInput
from callcontrol.repositories import media_files as files
from callcontrol.repositories.personal_data import delete_documents
from callcontrol.services.errors import NotFound, QuotaExceeded
from callcontrol.settings import DocumentSettings

Sessions = async_sessionmaker[AsyncSession]


async def upload(
    sessions: Sessions, settings: DocumentSettings, number: Number, kind: DocumentKind,
    name: str, data: bytes, *, quota: int | None,
) -> NumberDocument:  # fmt: skip
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
    return row


async def of_number(session: AsyncSession, number_id: int) -> list[NumberDocument]:
    rows = await session.scalars(
        sa.select(NumberDocument)
        .where(NumberDocument.number_id == number_id)
        .order_by(NumberDocument.id)
    )
    return list(rows)


async def get(session: AsyncSession, document_id: int) -> NumberDocument:
    found = await session.get(NumberDocument, document_id)
    if found is None:
        raise NotFound(f"document {document_id} not found")
    return found


async def read(settings: DocumentSettings, row: NumberDocument) -> bytes:
    data = await files.read(settings.root, row.stored_name)
    if data is None:
        raise NotFound(f"the file of document {row.id} is missing")
    return data


async def decide(
    session: AsyncSession, document_id: int, *, approved: bool, reason: str | None
) -> NumberDocument:
    row = await get(session, document_id)
    row.state = review(DocumentState(row.state), approved, reason).value
    row.reason = reason.strip() if reason else None
    row.reviewed_at = utcnow()
    await session.flush()
    return row


async def delete_where(sessions: Sessions, root: Path, *where: sa.ColumnElement[bool]) -> int:
    """Delete matching documents, files first; how many."""
    return await delete_documents(sessions, root, *where)
