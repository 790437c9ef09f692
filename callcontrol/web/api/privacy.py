"""Personal data: export it, erase it on request, and remove it when it expires.

Rules kept here (privacy policy: data is kept only as long as needed; requests to
change or delete it are carried out; money records are not personal data to erase):
- export: everything stored about an account, as one JSON document;
- erasure (operator, on the customer's request): the account is closed first
  (``services/erasure``: tokens revoked, SIP accounts deprovisioned, numbers
  released by the rules), then name and email cleared, voicemail recordings
  deleted (file and row), the caller numbers of the account's calls
  anonymised, ``accounts.erased_at`` set; the ledger is kept; a later PATCH of
  the account is refused (409);
- expiry: ``repositories/personal_data.purge_expired``, run by ``callcontrol
  serve`` every ``privacy.purge_interval_s`` (``services/privacy_purge.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import (
    Cdr,
    MediaFile,
    Number,
    NumberDocument,
    SipAccount,
    VoicemailMessage,
)
from callcontrol.repositories.personal_data import (
    anonymise_calls,
    delete_documents,
    delete_recordings,
)
from callcontrol.services.erasure import close_account
from callcontrol.web.api import lookup
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


async def erase_account(call: ApiCall) -> ErasureOut:
    account_id = call.id("account_id")
    async with call.sessions() as session:
        await lookup.account(session, call.caller, account_id)
    await close_account(call.sessions, call.numbers, call.provisioner, account_id)
    await delete_documents(
        call.sessions, call.settings.documents.root, NumberDocument.account_id == account_id
    )
    recordings = await delete_recordings(
        call.sessions, call.media.root, VoicemailMessage.account_id == account_id
    )
    now = datetime.now(UTC)
    async with call.sessions() as session, session.begin():
        owner = await lookup.account(session, call.caller, account_id)
        owner.name, owner.email, owner.erased_at = ERASED_NAME, None, now
        anonymised = await anonymise_calls(session, Cdr.account_id == account_id)
    return ErasureOut(
        account_id=account_id, erased_at=now, recordings_deleted=recordings,
        calls_anonymised=anonymised,
    )  # fmt: skip


ACC = "/api/v1/accounts/{account_id}"
ROUTES = [
    Route("GET", ACC + "/personal-data", export_personal_data,
          "Export all personal data of the account (JSON)", TAG, response=PersonalData),
    Route("POST", ACC + "/erasure", erase_account,
          "Erase the account's personal data (money records are kept)", TAG,
          operator_only=True, response=ErasureOut),
]  # fmt: skip
