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

from callcontrol.domain.end_user_documents import MAGIC, DocumentKind
from callcontrol.services import end_user_documents as documents
from callcontrol.services.end_user_documents import DocumentView
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route, read_bounded
from callcontrol.web.api.schemas import (
    DocumentList,
    DocumentOut,
    DocumentReview,
    DocumentUploadQuery,
)

TAG = "documents"
TYPES = tuple(sorted({t for t, _ in MAGIC.values()} | {"application/octet-stream"}))


def document_out(doc: DocumentView) -> DocumentOut:
    return DocumentOut(
        id=doc.id, did=doc.did, kind=doc.kind, content_type=doc.content_type,
        original_name=doc.original_name, size_bytes=doc.size_bytes, state=doc.state.value,
        reason=doc.reason, created_at=doc.created_at, reviewed_at=doc.reviewed_at,
    )  # fmt: skip


async def upload_number_document(call: ApiCall) -> DocumentOut:
    q = call.query_as(DocumentUploadQuery)
    async with call.sessions() as session:
        number = await lookup.owned_number(session, call.caller, call.did())
    limit = call.settings.documents.max_bytes
    data = await read_bounded(call.request, limit, "the document")
    quota = None if call.caller.is_operator else call.settings.quotas.documents
    doc = await documents.upload(
        call.sessions, call.settings.documents, number, DocumentKind(q.kind), q.name, data,
        quota=quota,
    )  # fmt: skip
    return document_out(doc)


async def list_number_documents(call: ApiCall) -> DocumentList:
    async with call.sessions() as session:
        number = await lookup.owned_number(session, call.caller, call.did())
    docs = await documents.of_number(call.sessions, number)
    return DocumentList(items=[document_out(doc) for doc in docs])


async def _visible(call: ApiCall) -> DocumentView:
    return await documents.visible(
        call.sessions, call.id("number_document_id"), call.caller.may_see
    )


async def get_number_document(call: ApiCall) -> DocumentOut:
    return document_out(await _visible(call))


async def download_number_document(call: ApiCall) -> web.Response:
    doc = await _visible(call)
    data = await documents.read(call.settings.documents, doc)
    ext = doc.stored_name.rsplit(".", 1)[-1]
    return web.Response(
        body=data, content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="document-{doc.id}.{ext}"',
                 "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


async def review_number_document(call: ApiCall) -> DocumentOut:
    body = call.body_as(DocumentReview)
    doc = await _visible(call)
    reviewed = await documents.decide(
        call.sessions, doc, approved=body.approved, reason=body.reason
    )
    if reviewed.accepts_number_id is not None:
        await call.numbers.accept_documents(reviewed.accepts_number_id)
    return document_out(reviewed.document)


async def delete_number_document(call: ApiCall) -> None:
    doc = await _visible(call)
    await documents.delete(call.sessions, call.settings.documents.root, doc)


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
