"""End users' documents: uploaded by the owner (PDF/JPEG/PNG by content, size-limited),
stored apart from the media folder, never served to another account, reviewed by the
operator (approval lets activation proceed; a rejection's reason is shown), removed by
erasure and by the retention purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from test_api_fixtures import Api, Customer, api_fixture  # noqa: F401

from callcontrol.db.models import Number, NumberDocument
from callcontrol.domain.vocabulary import NumberState
from callcontrol.repositories.personal_data import purge_expired

PDF = b"%PDF-1.4\n" + b"x" * 200
PNG = b"\x89PNG\r\n\x1a\n" + b"y" * 100


async def _pending_with_documents(api: Api) -> tuple[Customer, str]:
    customer = await api.customer()
    did = await api.number(customer.account_id, state=NumberState.PENDING)
    async with api.sessions() as session, session.begin():
        await session.execute(
            sa.update(Number).where(Number.e164 == did).values(needs_documents=True)
        )
    return customer, did


async def _upload(api: Api, headers: dict[str, str], did: str, data: bytes, kind: str = "passport"):  # type: ignore[no-untyped-def]
    response = await api.client.post(
        f"/api/v1/numbers/{did}/documents?kind={kind}&name=scan",
        data=data, headers={**headers, "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    return response.status, await response.json()


def _documents_root(api: Api) -> Path:
    return api.media_root.parent / "documents"


async def test_the_owner_uploads_and_the_operator_approves_then_activation_proceeds(
    api: Api,
) -> None:
    customer, did = await _pending_with_documents(api)
    status, doc = await _upload(api, customer.headers, did, PDF)
    assert status == 201 and (doc["content_type"], doc["state"]) == ("application/pdf", "submitted")
    assert list(_documents_root(api).rglob("*.pdf")) and not list(api.media_root.rglob("*.pdf"))
    blocked = await api.client.post(
        f"/api/v1/numbers/{did}/activation", json={}, headers=api.operator
    )
    assert blocked.status == 409
    file = await api.client.get(f"/api/v1/number-documents/{doc['id']}/file", headers=api.operator)
    assert await file.read() == PDF and "attachment" in file.headers["Content-Disposition"]
    review = await api.client.post(
        f"/api/v1/number-documents/{doc['id']}/review",
        json={"approved": True},
        headers=api.operator,
    )
    assert review.status == 200 and (await review.json())["state"] == "approved"
    done = await api.client.post(f"/api/v1/numbers/{did}/activation", json={}, headers=api.operator)
    assert done.status == 200 and (await done.json())["state"] == "active"


async def test_a_rejection_needs_a_reason_the_customer_sees(api: Api) -> None:
    customer, did = await _pending_with_documents(api)
    _, doc = await _upload(api, customer.headers, did, PNG, kind="proof_of_address")
    url = f"/api/v1/number-documents/{doc['id']}/review"
    silent = await api.client.post(url, json={"approved": False}, headers=api.operator)
    assert silent.status == 422
    by_customer = await api.client.post(url, json={"approved": True}, headers=customer.headers)
    assert by_customer.status == 403
    rejected = await api.client.post(
        url, json={"approved": False, "reason": "the scan is unreadable"}, headers=api.operator
    )
    assert rejected.status == 200
    listed = await (
        await api.client.get(f"/api/v1/numbers/{did}/documents", headers=customer.headers)
    ).json()
    assert [(d["state"], d["reason"]) for d in listed["items"]] == [
        ("rejected", "the scan is unreadable")
    ]


async def test_only_pdf_jpeg_png_within_the_size_limit_for_a_number_that_needs_them(
    api: Api,
) -> None:
    customer, did = await _pending_with_documents(api)
    status, body = await _upload(api, customer.headers, did, b"MZ\x90\x00 an executable")
    assert status == 422 and "PDF, JPEG or PNG" in body["message"]
    status, _ = await _upload(api, customer.headers, did, b"%PDF-" + b"z" * (64 * 1024))
    assert status == 413
    plain = await api.number(customer.account_id)
    status, body = await _upload(api, customer.headers, plain, PDF)
    assert status == 422 and "needs no documents" in body["message"]


async def test_another_account_never_sees_a_document(api: Api) -> None:
    customer, did = await _pending_with_documents(api)
    _, doc = await _upload(api, customer.headers, did, PDF)
    intruder = await api.customer()
    for method, path in (
        ("GET", f"/api/v1/number-documents/{doc['id']}"),
        ("GET", f"/api/v1/number-documents/{doc['id']}/file"),
        ("DELETE", f"/api/v1/number-documents/{doc['id']}"),
        ("GET", f"/api/v1/numbers/{did}/documents"),
    ):
        response = await api.client.request(method, path, headers=intruder.headers)
        assert response.status == 404, (method, path)
    mine = await api.client.get(f"/api/v1/number-documents/{doc['id']}", headers=customer.headers)
    assert mine.status == 200


async def test_erasure_and_the_retention_purge_remove_documents(api: Api) -> None:
    customer, did = await _pending_with_documents(api)
    _, kept = await _upload(api, customer.headers, did, PDF)
    _, old = await _upload(api, customer.headers, did, PNG)
    async with api.sessions() as session, session.begin():
        await session.execute(
            sa.update(NumberDocument).where(NumberDocument.id == old["id"])
            .values(reviewed_at=datetime.now(UTC) - timedelta(days=400), state="approved")
        )  # fmt: skip
    result = await purge_expired(
        api.sessions, datetime.now(UTC), 180, media_root=api.media_root,
        documents_root=_documents_root(api),
    )  # fmt: skip
    assert result.documents_deleted == 1 and len(list(_documents_root(api).rglob("*.*"))) == 1
    erased = await api.client.post(
        f"/api/v1/accounts/{customer.account_id}/erasure", headers=api.operator
    )
    assert erased.status == 200
    async with api.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(NumberDocument)) == 0
    assert not list(_documents_root(api).rglob("*.*")) and kept["id"]
