"""End users' documents of numbers that need them (the local carrier asks).

The number's owner uploads (raw body: PDF, JPEG or PNG, recognised by content,
size-limited) and sees each document's state and the rejection reason; the
operator lists, downloads and reviews them (approve, or reject with a reason);
an approval of a pending number's document accepts its documents, so the
activation may proceed. Files are stored apart from the media folder, served
only to the owner's account and the operator, as an attachment
(``application/octet-stream``), never inline. Deleted by the owner, by erasure
and by the retention purge (reviewed longer ago than the retention).
"""

from __future__ import annotations

from aiohttp import web

from callcontrol.db.models import Number, NumberDocument
from callcontrol.domain.end_user_documents import MAGIC, DocumentKind, DocumentState
from callcontrol.domain.vocabulary import NumberState
from callcontrol.services import end_user_documents as documents
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route, read_bounded
from callcontrol.web.api.errors import NotFound
from callcontrol.web.api.schemas import (
    DocumentList,
    DocumentOut,
    DocumentReview,
    DocumentUploadQuery,
)

TAG = "documents"
TYPES = tuple(sorted({t for t, _ in MAGIC.values()} | {"application/octet-stream"}))


def document_out(row: NumberDocument, did: str | None) -> DocumentOut:
    return DocumentOut(
        id=row.id, did=did, kind=row.kind, content_type=row.content_type,
        original_name=row.original_name, size_bytes=row.size_bytes,
        state=DocumentState(row.state).value, reason=row.reason, created_at=row.created_at,
        reviewed_at=row.reviewed_at,
    )  # fmt: skip


async def upload_number_document(call: ApiCall) -> DocumentOut:
    q = call.query_as(DocumentUploadQuery)
    async with call.sessions() as session:
        number = await lookup.owned_number(session, call.caller, call.did())
    limit = call.settings.documents.max_bytes
    data = await read_bounded(call.request, limit, "the document")
    quota = None if call.caller.is_operator else call.settings.quotas.documents
    row = await documents.upload(
        call.sessions, call.settings.documents, number, DocumentKind(q.kind), q.name, data,
        quota=quota,
    )  # fmt: skip
    return document_out(row, number.e164)


async def list_number_documents(call: ApiCall) -> DocumentList:
    async with call.sessions() as session:
        number = await lookup.owned_number(session, call.caller, call.did())
        rows = await documents.of_number(session, number.id)
    return DocumentList(items=[document_out(r, number.e164) for r in rows])


async def _visible(call: ApiCall) -> tuple[NumberDocument, str | None]:
    async with call.sessions() as session:
        row = await documents.get(session, call.id("number_document_id"))
        if not call.caller.may_see(row.account_id):
            raise NotFound(f"document {row.id} not found")
        number = await session.get(Number, row.number_id) if row.number_id else None
        return row, number.e164 if number is not None else None


async def get_number_document(call: ApiCall) -> DocumentOut:
    return document_out(*await _visible(call))


async def download_number_document(call: ApiCall) -> web.Response:
    row, _ = await _visible(call)
    data = await documents.read(call.settings.documents, row)
    ext = row.stored_name.rsplit(".", 1)[-1]
    return web.Response(
        body=data, content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="document-{row.id}.{ext}"',
                 "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


async def review_number_document(call: ApiCall) -> DocumentOut:
    body = call.body_as(DocumentReview)
    row, did = await _visible(call)
    async with call.sessions() as session, session.begin():
        row = await documents.decide(session, row.id, approved=body.approved, reason=body.reason)
        number = await session.get(Number, row.number_id) if row.number_id else None
    if (
        body.approved and number is not None and number.state is NumberState.PENDING
        and number.documents_accepted_at is None
    ):  # fmt: skip
        await call.numbers.accept_documents(number.id)
    return document_out(row, did)


async def delete_number_document(call: ApiCall) -> None:
    row, _ = await _visible(call)
    await documents.delete_where(
        call.sessions, call.settings.documents.root, NumberDocument.id == row.id
    )


NUM = "/api/v1/numbers/{did}/documents"
ONE = "/api/v1/number-documents/{number_document_id}"
ROUTES = [
    Route("POST", NUM, upload_number_document, "Upload an end user's document (PDF, JPEG or PNG)",
          TAG, query=DocumentUploadQuery, upload=True, upload_types=TYPES,
          response=DocumentOut, status=201, errors=(409,)),
    Route("GET", NUM, list_number_documents, "The number's documents, their state and reasons", TAG,
          response=DocumentList),
    Route("GET", ONE, get_number_document, "A document's state", TAG, response=DocumentOut),
    Route("GET", ONE + "/file", download_number_document, "Download a document (attachment)", TAG,
          media_type="application/octet-stream"),
    Route("POST", ONE + "/review", review_number_document, "Approve, or reject with a reason", TAG,
          operator_only=True, body=DocumentReview, response=DocumentOut),
    Route("DELETE", ONE, delete_number_document, "Delete a document", TAG, status=204),
]  # fmt: skip
