"""Removing personal data from the database and the media folder.

Used by the API's erasure on request (``web/api/privacy.py``) and by the
periodic purge of what is past its retention (``services/privacy_purge.py``).
Money records are not touched. Recordings are deleted from disk before their
rows, so a crash in between leaves a row pointing at nothing rather than a
recording nobody can find.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Cdr, NumberDocument, VoicemailMessage
from callcontrol.repositories import media_files

_BATCH = 500


@dataclass(frozen=True, slots=True)
class PurgeResult:
    calls_anonymised: int
    recordings_deleted: int
    documents_deleted: int = 0


async def delete_documents(
    sessions: async_sessionmaker[AsyncSession], root: Path, *where: sa.ColumnElement[bool]
) -> int:
    """Delete matching end-user documents (file, then row); how many."""
    async with sessions() as session:
        rows = (
            await session.execute(
                sa.select(NumberDocument.id, NumberDocument.stored_name).where(*where)
            )
        ).all()
    for _, stored_name in rows:
        await media_files.remove(root, stored_name)
    if rows:
        async with sessions() as session, session.begin():
            ids = [document_id for document_id, _ in rows]
            await session.execute(sa.delete(NumberDocument).where(NumberDocument.id.in_(ids)))
    return len(rows)


async def delete_recordings(
    sessions: async_sessionmaker[AsyncSession], media_root: Path, *where: sa.ColumnElement[bool]
) -> int:
    """Delete matching voicemail (file, then row) in batches; how many."""
    deleted = 0
    while True:
        async with sessions() as session, session.begin():
            rows = (
                await session.execute(
                    sa.select(VoicemailMessage.id, VoicemailMessage.stored_name)
                    .where(*where)
                    .limit(_BATCH)
                )
            ).all()
            for _, stored_name in rows:
                await media_files.remove(media_root, stored_name)
            ids = [message_id for message_id, _ in rows]
            await session.execute(sa.delete(VoicemailMessage).where(VoicemailMessage.id.in_(ids)))
        deleted += len(rows)
        if len(rows) < _BATCH:
            return deleted


async def anonymise_calls(session: AsyncSession, *where: sa.ColumnElement[bool]) -> int:
    result = await session.execute(
        sa.update(Cdr).where(Cdr.caller.is_not(None), *where).values(caller=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_expired(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    retention_days: int,
    *,
    media_root: Path,
    documents_root: Path | None = None,
) -> PurgeResult:
    """Remove caller numbers and voicemail recordings older than ``retention_days``,
    and end users' documents reviewed longer ago than that (with ``documents_root``)."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    cutoff = now - timedelta(days=retention_days)
    recordings = await delete_recordings(sessions, media_root, VoicemailMessage.created_at < cutoff)
    async with sessions() as session, session.begin():
        anonymised = await anonymise_calls(session, Cdr.started_at < cutoff)
        await session.execute(
            sa.update(VoicemailMessage)
            .where(VoicemailMessage.caller.is_not(None), VoicemailMessage.created_at < cutoff)
            .values(caller=None)
        )
    documents = 0
    if documents_root is not None:
        documents = await delete_documents(
            sessions, documents_root,
            NumberDocument.reviewed_at.is_not(None), NumberDocument.reviewed_at < cutoff,
        )  # fmt: skip
    return PurgeResult(
        calls_anonymised=anonymised, recordings_deleted=recordings, documents_deleted=documents
    )
