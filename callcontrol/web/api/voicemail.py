"""Voicemail left on the account's numbers: list, download (audio/wav), delete.

Deleting removes the row and then the recording; a recording already gone
from disk does not stop the row from going.
"""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from callcontrol.db.models import Number, VoicemailMessage
from callcontrol.repositories import media_files as files
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import NotFound
from callcontrol.web.api.schemas import PageQuery, VoicemailList, VoicemailOut

TAG = "voicemail"


def voicemail_out(row: VoicemailMessage, did: str | None) -> VoicemailOut:
    return VoicemailOut(
        id=row.id, did=did, caller=row.caller, duration_ms=row.duration_ms,
        size_bytes=row.size_bytes, created_at=row.created_at,
    )  # fmt: skip


def _with_did() -> sa.Select[VoicemailMessage, str]:
    return sa.select(VoicemailMessage, Number.e164).outerjoin(
        Number, Number.id == VoicemailMessage.number_id
    )


async def list_voicemail(call: ApiCall) -> VoicemailList:
    page = call.query_as(PageQuery)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        rows = await session.execute(
            _with_did()
            .where(VoicemailMessage.account_id == owner.id)
            .order_by(VoicemailMessage.created_at.desc(), VoicemailMessage.id.desc())
            .limit(page.limit)
            .offset(page.offset)
        )
        return VoicemailList(items=[voicemail_out(m, did) for m, did in rows])


async def get_voicemail(call: ApiCall) -> VoicemailOut:
    async with call.sessions() as session:
        row = await lookup.voicemail(session, call.caller, call.id("message_id"))
        did = await session.scalar(sa.select(Number.e164).where(Number.id == row.number_id))
        return voicemail_out(row, did)


async def download_voicemail(call: ApiCall) -> web.Response:
    async with call.sessions() as session:
        row = await lookup.voicemail(session, call.caller, call.id("message_id"))
    data = await files.read(call.media.root, row.stored_name)
    if data is None:
        raise NotFound(f"the recording of voicemail message {row.id} is missing")
    return web.Response(
        body=data,
        content_type="audio/wav",
        headers={"Content-Disposition": f'attachment; filename="voicemail-{row.id}.wav"'},
    )


async def delete_voicemail(call: ApiCall) -> None:
    async with call.sessions() as session, session.begin():
        row = await lookup.voicemail(session, call.caller, call.id("message_id"))
        await session.delete(row)
    await files.remove(call.media.root, row.stored_name)


ACC = "/api/v1/accounts/{account_id}/voicemail"
ONE = "/api/v1/voicemail/{message_id}"
ROUTES = [
    Route("GET", ACC, list_voicemail, "Voicemail of the account, newest first", TAG,
          query=PageQuery, response=VoicemailList),
    Route("GET", ONE, get_voicemail, "One voicemail message", TAG, response=VoicemailOut),
    Route("GET", ONE + "/audio", download_voicemail, "Download the recording", TAG,
          media_type="audio/wav"),
    Route("DELETE", ONE, delete_voicemail, "Delete the message and its recording", TAG,
          status=204),
]  # fmt: skip
