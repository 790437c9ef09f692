"""Greetings and voicemail greetings: upload, list, download, delete.

Rules kept here:
- Only WAV PCM 8 kHz 16-bit mono is accepted (``domain.wav.require_telephony_wav``);
  anything else is a 422 saying what the file is and what is expected.
- The body is read with a bound: never more than ``media.max_upload_bytes + 1``
  bytes; a larger upload is a 413 (at once when Content-Length says so).
- What is stored is ``canonical_wav()`` (a plain 44-byte header), under
  ``<kind>s/<account>/<uuid>.wav`` in the media root, with a ``media_files`` row.
  The file is written before the row is committed and removed if the commit fails.
- Which stored file plays is chosen per number (``PATCH /numbers/{did}``).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from callcontrol.db.models import MediaFile
from callcontrol.domain.vocabulary import MediaKind
from callcontrol.domain.wav import canonical_wav, require_telephony_wav
from callcontrol.repositories import listings
from callcontrol.repositories import media_files as files
from callcontrol.services import quotas
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route, read_bounded
from callcontrol.web.api.errors import NotFound, UnsupportedMediaType
from callcontrol.web.api.openapi import UPLOAD_TYPES
from callcontrol.web.api.schemas import MediaList, MediaOut, PageQuery, UploadQuery

TAG = "greetings"
_ACCEPTED = {*UPLOAD_TYPES, "audio/x-wav", "audio/wave", "audio/vnd.wave"}
_FOLDERS = {MediaKind.GREETING: "greetings", MediaKind.VOICEMAIL_GREETING: "voicemail-greetings"}


async def upload_media(call: ApiCall) -> MediaOut:
    query = call.query_as(UploadQuery)
    if call.request.content_type not in _ACCEPTED:
        raise UnsupportedMediaType(
            f"send the file as audio/wav (raw body), not {call.request.content_type}"
        )
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
    limit = call.media.max_upload_bytes
    data = await read_bounded(call.request, limit, "the file")
    info = require_telephony_wav(data, max_bytes=limit)
    audio = canonical_wav(data, info)
    if not call.caller.is_operator:
        async with call.sessions() as session:
            await quotas.check_media(session, call.settings.quotas, owner.id, len(audio))
    stored_name = f"{_FOLDERS[query.kind]}/{owner.id}/{uuid.uuid4()}.wav"
    await files.write(call.media.root, stored_name, audio)
    try:
        async with call.sessions() as session, session.begin():
            row = MediaFile(
                account_id=owner.id, kind=query.kind, original_name=query.name,
                stored_name=stored_name, size_bytes=len(audio), duration_ms=info.duration_ms,
            )  # fmt: skip
            session.add(row)
            await session.flush()
            await session.refresh(row)
    except BaseException:
        await files.remove(call.media.root, stored_name)
        raise
    return MediaOut.model_validate(row)


async def list_media(call: ApiCall) -> MediaList:
    page = call.query_as(PageQuery)
    async with call.sessions() as session:
        owner = await lookup.account(session, call.caller, call.id("account_id"))
        rows = await listings.media_of(session, owner.id, listings.Page(page.limit, page.offset))
        return MediaList(items=[MediaOut.model_validate(r) for r in rows])


async def get_media(call: ApiCall) -> MediaOut:
    async with call.sessions() as session:
        return MediaOut.model_validate(
            await lookup.media(session, call.caller, call.id("media_id"))
        )


async def download_media(call: ApiCall) -> web.Response:
    async with call.sessions() as session:
        row = await lookup.media(session, call.caller, call.id("media_id"))
    data = await files.read(call.media.root, row.stored_name)
    if data is None:
        raise NotFound(f"the audio of media file {row.id} is missing")
    return web.Response(body=data, content_type="audio/wav")


async def delete_media(call: ApiCall) -> None:
    """The row goes (numbers that played it fall silent: the key is SET NULL), then the file."""
    async with call.sessions() as session, session.begin():
        row = await lookup.media(session, call.caller, call.id("media_id"))
        await session.delete(row)
    await files.remove(call.media.root, row.stored_name)


ACC = "/api/v1/accounts/{account_id}/media"
ONE = "/api/v1/media/{media_id}"
ROUTES = [
    Route("POST", ACC, upload_media, "Upload a greeting (WAV PCM 8 kHz 16-bit mono)", TAG,
          query=UploadQuery, upload=True, response=MediaOut, status=201),
    Route("GET", ACC, list_media, "The account's stored greetings", TAG,
          query=PageQuery, response=MediaList),
    Route("GET", ONE, get_media, "A stored greeting", TAG, response=MediaOut),
    Route("GET", ONE + "/audio", download_media, "Download a stored greeting", TAG,
          media_type="audio/wav"),
    Route("DELETE", ONE, delete_media, "Delete a stored greeting", TAG, status=204),
]  # fmt: skip
