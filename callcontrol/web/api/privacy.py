"""Personal data: export it, erase it on request, and remove it when it expires.

Rules kept here (privacy policy: data is kept only as long as needed; requests to
change or delete it are carried out; money records are not personal data to erase):
- export: everything stored about an account, as one JSON document;
- erasure (operator, on the customer's request): name and email cleared,
  voicemail recordings deleted (file and row), the caller numbers of the
  account's calls anonymised, ``accounts.erased_at`` set; the ledger is kept;
- ``purge_expired``: caller numbers of calls and voicemail recordings older than
  the retention are removed; ``callcontrol serve`` runs it every
  ``privacy.purge_interval_s`` (``services/privacy_purge.py``).
Recordings are deleted from disk before their rows, so a crash in between leaves
a row pointing at nothing rather than a recording nobody can find.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Cdr, MediaFile, Number, SipAccount, VoicemailMessage
from callcontrol.web.api import files, lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.schemas import (
    ErasureOut,
    MediaOut,
    PersonalData,
    SipAccountOut,
)
from callcontrol.web.api.statistics import (
    call_out,
    calls_query,
    transaction_out,
    transactions_query,
)
from callcontrol.web.api.voicemail import voicemail_out

TAG = "privacy"
ERASED_NAME = "(erased)"
_BATCH = 500


@dataclass(frozen=True, slots=True)
class PurgeResult:
    calls_anonymised: int
    recordings_deleted: int


async def _sip_accounts(session: AsyncSession, owner: int) -> list[SipAccountOut]:
    query = sa.select(SipAccount).where(SipAccount.account_id == owner).order_by(SipAccount.id)
    return await lookup.sip_account_outs(session, await session.scalars(query))


async def _media(session: AsyncSession, owner: int) -> list[MediaOut]:
    query = sa.select(MediaFile).where(MediaFile.account_id == owner).order_by(MediaFile.id)
    return [MediaOut.model_validate(r) for r in await session.scalars(query)]


async def export_personal_data(call: ApiCall) -> PersonalData:
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        numbers = await session.scalars(sa.select(Number).where(Number.account_id == owner.id))
        voicemail = await session.execute(
            sa.select(VoicemailMessage, Number.e164)
            .outerjoin(Number, Number.id == VoicemailMessage.number_id)
            .where(VoicemailMessage.account_id == owner.id)
        )
        calls = await session.scalars(calls_query(owner.id, None, None))
        entries = await session.execute(transactions_query(owner.id, None, None))
        return PersonalData(
            exported_at=datetime.now(UTC),
            account=await lookup.account_out(session, owner),
            numbers=[lookup.number_out(n) for n in numbers],
            sip_accounts=await _sip_accounts(session, owner.id),
            media=await _media(session, owner.id),
            voicemail=[voicemail_out(m, did) for m, did in voicemail],
            calls=[call_out(c) for c in calls],
            transactions=[transaction_out(e, did) for e, did in entries],
        )


async def _delete_recordings(
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
                await files.remove(media_root, stored_name)
            ids = [message_id for message_id, _ in rows]
            await session.execute(sa.delete(VoicemailMessage).where(VoicemailMessage.id.in_(ids)))
        deleted += len(rows)
        if len(rows) < _BATCH:
            return deleted


async def _anonymise_calls(session: AsyncSession, *where: sa.ColumnElement[bool]) -> int:
    result = await session.execute(
        sa.update(Cdr).where(Cdr.caller.is_not(None), *where).values(caller=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def erase_account(call: ApiCall) -> ErasureOut:
    account_id = call.id("account_id")
    async with call.sessions() as session:
        await lookup.account(session, call.caller, account_id)
    recordings = await _delete_recordings(
        call.sessions, call.media.root, VoicemailMessage.account_id == account_id
    )
    now = datetime.now(UTC)
    async with call.sessions() as session, session.begin():
        owner = await lookup.account(session, call.caller, account_id)
        owner.name, owner.email, owner.erased_at = ERASED_NAME, None, now
        anonymised = await _anonymise_calls(session, Cdr.account_id == account_id)
    return ErasureOut(
        account_id=account_id, erased_at=now, recordings_deleted=recordings,
        calls_anonymised=anonymised,
    )  # fmt: skip


async def purge_expired(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    retention_days: int,
    *,
    media_root: Path,
) -> PurgeResult:
    """Remove caller numbers and voicemail recordings older than ``retention_days``."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    cutoff = now - timedelta(days=retention_days)
    recordings = await _delete_recordings(
        sessions, media_root, VoicemailMessage.created_at < cutoff
    )
    async with sessions() as session, session.begin():
        anonymised = await _anonymise_calls(session, Cdr.started_at < cutoff)
        await session.execute(
            sa.update(VoicemailMessage)
            .where(VoicemailMessage.caller.is_not(None), VoicemailMessage.created_at < cutoff)
            .values(caller=None)
        )
    return PurgeResult(calls_anonymised=anonymised, recordings_deleted=recordings)


ACC = "/api/v1/accounts/{account_id}"
ROUTES = [
    Route("GET", ACC + "/personal-data", export_personal_data,
          "Export all personal data of the account (JSON)", TAG, response=PersonalData),
    Route("POST", ACC + "/erasure", erase_account,
          "Erase the account's personal data (money records are kept)", TAG,
          operator_only=True, response=ErasureOut),
]  # fmt: skip
