"""Invoices, statements of services rendered and reconciliation statements.

For a period that has ended (``period_to`` before today, UTC) a document is
issued once per account and kind (``services.documents``: numbering, frozen
content) and served as JSON or as a PDF printed from that JSON. The customer
issues and reads its own; the operator any account's; another account's
document is a 404, like one that does not exist.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import Field, model_validator

from callcontrol.db.money_models import Document
from callcontrol.domain.documents import DocumentKind, Period
from callcontrol.domain.errors import InvalidInput
from callcontrol.services.document_pdf import render_pdf
from callcontrol.services.documents import DocumentService
from callcontrol.web.api import lookup
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import NotFound, invalid
from callcontrol.web.api.payments import BodyDay
from callcontrol.web.api.schemas import Input, Output

TAG = "documents"


class DocumentRequest(Input):
    kind: DocumentKind = Field(
        description="invoice, services (statement of services rendered) or reconciliation"
    )
    period_from: BodyDay = Field(description="first day (UTC), inclusive")
    period_to: BodyDay = Field(description="last day (UTC), inclusive; before today")

    @model_validator(mode="after")
    def _ordered(self) -> DocumentRequest:
        if self.period_to < self.period_from:
            raise ValueError("period_to is before period_from")
        return self


class DocumentSummary(Output):
    id: int
    account_id: int
    kind: DocumentKind
    number: str
    period_from: date
    period_to: date
    currency: str
    total_minor: int
    issued_at: datetime


class DocumentOut(DocumentSummary):
    already_issued: bool = Field(default=False, description="true: issued before for this period")
    content: dict[str, Any] = Field(description="the document as issued (also printed as PDF)")


class DocumentList(Output):
    items: list[DocumentSummary]


def _out(row: Document, *, already_issued: bool = False) -> DocumentOut:
    return DocumentOut(
        **DocumentSummary.model_validate(row).model_dump(),
        already_issued=already_issued,
        content=json.loads(row.content),
    )


def _period(body: DocumentRequest) -> Period:
    if body.period_to >= datetime.now(UTC).date():
        raise invalid("body.period_to", "a document is issued for a period that has ended")
    try:
        return Period(body.period_from, body.period_to)
    except InvalidInput as exc:
        raise invalid("body.period_to", str(exc)) from None


async def issue_document(call: ApiCall) -> DocumentOut:
    body = call.body_as(DocumentRequest)
    period = _period(body)
    async with call.sessions() as session:
        account = await lookup.account(session, call.caller, call.id("account_id"))
    issued = await DocumentService(sessions=call.sessions).issue(account.id, body.kind, period)
    return _out(issued.document, already_issued=not issued.created)


async def list_documents(call: ApiCall) -> DocumentList:
    async with call.sessions() as session:
        account = await lookup.account(session, call.caller, call.id("account_id"))
        rows = await session.scalars(
            sa.select(Document)
            .where(Document.account_id == account.id)
            .order_by(Document.issued_at, Document.id)
        )
        return DocumentList(items=[DocumentSummary.model_validate(row) for row in rows])


async def _document(call: ApiCall) -> Document:
    document_id = call.id("document_id")
    async with call.sessions() as session:
        row = await session.get(Document, document_id)
    if row is None or not call.caller.may_see(row.account_id):
        raise NotFound(f"document {document_id} not found")
    return row


async def get_document(call: ApiCall) -> DocumentOut:
    return _out(await _document(call))


async def get_document_pdf(call: ApiCall) -> web.Response:
    row = await _document(call)
    pdf = render_pdf(json.loads(row.content))
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{row.number}.pdf"'},
    )


ROUTES = [
    Route("POST", "/api/v1/accounts/{account_id}/documents", issue_document,
          "Issue (or fetch, if issued before) a document for an ended period", TAG,
          body=DocumentRequest, response=DocumentOut, status=201),
    Route("GET", "/api/v1/accounts/{account_id}/documents", list_documents,
          "The documents issued for the account", TAG, response=DocumentList),
    Route("GET", "/api/v1/documents/{document_id}", get_document, "A document as JSON", TAG,
          response=DocumentOut),
    Route("GET", "/api/v1/documents/{document_id}/pdf", get_document_pdf,
          "A document as PDF, printed from its JSON", TAG, media_type="application/pdf"),
]  # fmt: skip
