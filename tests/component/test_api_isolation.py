"""A customer never reaches another account's objects: every such request is a 404
(as if the object did not exist), and B's data is unchanged afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from test_api_fixtures import Api, api_fixture, wav  # noqa: F401

from callcontrol.db.models import (
    Account,
    ApiToken,
    ForwardingDestination,
    MediaFile,
    Number,
    NumberDocument,
    SipAccount,
    VoicemailMessage,
)
from callcontrol.db.money_models import AccountContact, BankPayment, CompanyProfile, Document

PDF = b"%PDF-1.4\n" + b"x" * 100


@dataclass
class Victim:
    account_id: int
    did: str
    media_id: int
    message_id: int
    sip_account_id: int
    token_id: int
    document_id: int
    number_document_id: int


async def _victim(api: Api) -> Victim:
    b = await api.customer()
    did = await api.number(b.account_id)
    await api.cdr(b.account_id, did, started_at=datetime.now(UTC))
    message_id, _ = await api.voicemail(b.account_id)
    upload = await api.client.post(
        f"/api/v1/accounts/{b.account_id}/media?kind=greeting", data=wav(),
        headers={**b.headers, "Content-Type": "audio/wav"},
    )  # fmt: skip
    sip = await api.client.post(
        f"/api/v1/accounts/{b.account_id}/sip-accounts", json={}, headers=b.headers
    )
    forwarding = await api.client.put(
        f"/api/v1/numbers/{did}/forwarding",
        json={"destinations": [{"type": "pstn", "target": "+4915112345678"}]}, headers=b.headers,
    )  # fmt: skip
    assert (upload.status, sip.status, forwarding.status) == (201, 201, 200)
    media_id, sip_id = (await upload.json())["id"], (await sip.json())["id"]
    await _present(api, b.headers, did, b.account_id, sip_id)
    document = await api.client.post(
        f"/api/v1/accounts/{b.account_id}/documents",
        json={"kind": "invoice", "period_from": "2026-10-01", "period_to": "2026-10-31"},
        headers=b.headers,
    )  # fmt: skip
    assert document.status == 201
    document_id = (await document.json())["id"]
    async with api.sessions() as session:
        token_id = await session.scalar(
            sa.select(ApiToken.id).where(ApiToken.account_id == b.account_id)
        )
    assert token_id is not None
    async with api.sessions() as session, session.begin():
        await session.execute(
            sa.update(Number).where(Number.e164 == did).values(needs_documents=True)
        )
    doc = await api.client.post(
        f"/api/v1/numbers/{did}/documents?kind=passport", data=PDF,
        headers={**b.headers, "Content-Type": "application/pdf"},
    )  # fmt: skip
    assert doc.status == 201
    number_document_id = (await doc.json())["id"]
    return Victim(
        b.account_id, did, media_id, message_id, sip_id, token_id, document_id, number_document_id
    )


async def _present(
    api: Api, headers: dict[str, str], did: str, account_id: int, sip_id: int
) -> None:
    """CallerID set up on every level, so a request that clears any of it shows."""
    answers = [
        await api.client.put(
            f"/api/v1/numbers/{did}/callerid-service", json={"enabled": True}, headers=api.operator
        ),
        await api.client.put(
            f"/api/v1/accounts/{account_id}/presented-number", json={"did": did}, headers=headers
        ),
        await api.client.put(
            f"/api/v1/sip-accounts/{sip_id}/presented-number", json={"did": did}, headers=headers
        ),
    ]
    assert [a.status for a in answers] == [200, 200, 200]


# (method, path, JSON body): every object type a customer can address.
REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/accounts/{account_id}", None),
    ("PATCH", "/api/v1/accounts/{account_id}", {"email": "thief@example.com"}),
    ("GET", "/api/v1/accounts/{account_id}/transactions", None),
    ("GET", "/api/v1/accounts/{account_id}/transactions.csv", None),
    ("POST", "/api/v1/accounts/{account_id}/top-ups", {"amount_minor": 100}),
    ("POST", "/api/v1/accounts/{account_id}/tokens", None),
    ("GET", "/api/v1/accounts/{account_id}/numbers", None),
    ("POST", "/api/v1/accounts/{account_id}/purchases", {"region": "DE"}),
    ("POST", "/api/v1/accounts/{account_id}/reservations", {"did": "+4930123456"}),
    (
        "POST",
        "/api/v1/accounts/{account_id}/tests",
        {"region": "DE", "destination": {"type": "pstn", "target": "+4915112345678"}},
    ),
    ("GET", "/api/v1/numbers/{did}", None),
    ("PATCH", "/api/v1/numbers/{did}", {"voicemail_enabled": True}),
    ("DELETE", "/api/v1/numbers/{did}", None),
    ("POST", "/api/v1/numbers/{did}/release", None),
    ("GET", "/api/v1/numbers/{did}/forwarding", None),
    ("PUT", "/api/v1/numbers/{did}/forwarding", {"destinations": []}),
    ("GET", "/api/v1/accounts/{account_id}/media", None),
    ("POST", "/api/v1/accounts/{account_id}/media?kind=greeting", wav()),
    ("GET", "/api/v1/media/{media_id}", None),
    ("GET", "/api/v1/media/{media_id}/audio", None),
    ("DELETE", "/api/v1/media/{media_id}", None),
    ("GET", "/api/v1/accounts/{account_id}/voicemail", None),
    ("GET", "/api/v1/voicemail/{message_id}", None),
    ("GET", "/api/v1/voicemail/{message_id}/audio", None),
    ("DELETE", "/api/v1/voicemail/{message_id}", None),
    ("GET", "/api/v1/accounts/{account_id}/sip-accounts", None),
    ("POST", "/api/v1/accounts/{account_id}/sip-accounts", {}),
    ("GET", "/api/v1/sip-accounts/{sip_account_id}", None),
    ("POST", "/api/v1/sip-accounts/{sip_account_id}/password", None),
    ("DELETE", "/api/v1/sip-accounts/{sip_account_id}", None),
    ("PUT", "/api/v1/numbers/{did}/callerid-service", {"enabled": False}),
    ("PUT", "/api/v1/accounts/{account_id}/presented-number", {"did": None}),
    ("PUT", "/api/v1/sip-accounts/{sip_account_id}/presented-number", {"did": None}),
    ("GET", "/api/v1/accounts/{account_id}/calls", None),
    ("GET", "/api/v1/accounts/{account_id}/calls.csv", None),
    ("GET", "/api/v1/accounts/{account_id}/statistics", None),
    ("GET", "/api/v1/accounts/{account_id}/personal-data", None),
    ("POST", "/api/v1/accounts/{account_id}/erasure", None),
    ("GET", "/api/v1/accounts/{account_id}/company", None),
    ("PUT", "/api/v1/accounts/{account_id}/company",
     {"legal_name": "X", "address": "Y", "tax_id": "1", "contract_number": "2"}),
    ("GET", "/api/v1/accounts/{account_id}/bank-payments", None),
    ("POST", "/api/v1/accounts/{account_id}/bank-payments",
     {"reference": "STOLEN-1", "amount_minor": 100, "received_on": "2026-11-02"}),
    ("GET", "/api/v1/accounts/{account_id}/documents", None),
    ("POST", "/api/v1/accounts/{account_id}/documents",
     {"kind": "services", "period_from": "2026-10-01", "period_to": "2026-10-31"}),
    ("GET", "/api/v1/documents/{document_id}", None),
    ("GET", "/api/v1/documents/{document_id}/pdf", None),
    ("GET", "/api/v1/accounts/{account_id}/contact-phone", None),
    ("PUT", "/api/v1/accounts/{account_id}/contact-phone", {"phone": "+4930123456"}),
    ("GET", "/api/v1/accounts/{account_id}/phone-reminders", None),
    ("DELETE", "/api/v1/tokens/{token_id}", None),
    ("PATCH", "/api/v1/inventory/{did}", {"monthly_fee_minor": 1}),
    ("DELETE", "/api/v1/inventory/{did}", None),
    ("POST", "/api/v1/numbers/{did}/activation", {}),
    ("POST", "/api/v1/numbers/{did}/activation-refusal", {"reason": "x"}),
    ("POST", "/api/v1/numbers/{did}/documents-acceptance", None),
    ("POST", "/api/v1/numbers/{did}/refund", None),
    ("POST", "/api/v1/accounts/{account_id}/give-backs", {"did": "+4930123456"}),
    ("PUT", "/api/v1/accounts/{account_id}/discount", {"volume_discount_pct": 50}),
    ("POST", "/api/v1/accounts/{account_id}/bulk-purchases", {"dids": ["+4930123456"]}),
    ("POST", "/api/v1/numbers/{did}/documents?kind=passport", b"%PDF-1.4 stolen"),
    ("GET", "/api/v1/numbers/{did}/documents", None),
    ("GET", "/api/v1/number-documents/{number_document_id}", None),
    ("GET", "/api/v1/number-documents/{number_document_id}/file", None),
    ("POST", "/api/v1/number-documents/{number_document_id}/review", {"approved": True}),
    ("DELETE", "/api/v1/number-documents/{number_document_id}", None),
]  # fmt: skip
# Objects every caller may read (the price list): a customer is refused changes (403).
PUBLIC = {"rate_id"}


async def _fingerprint(api: Api, v: Victim) -> tuple[Any, ...]:
    async with api.sessions() as session:
        account = await session.get(Account, v.account_id)
        assert account is not None
        counts = [
            await session.scalar(sa.select(sa.func.count()).select_from(t))
            for t in (
                MediaFile,
                VoicemailMessage,
                SipAccount,
                ForwardingDestination,
                Document,
                BankPayment,
                CompanyProfile,
                AccountContact,
                NumberDocument,
            )
        ]
        digest = await session.scalar(sa.select(SipAccount.password_digest))
        presented = await session.scalar(
            sa.select(SipAccount.presented_number_id).where(SipAccount.id == v.sip_account_id)
        )
        callerid_service = await session.scalar(
            sa.select(Number.callerid_service).where(Number.e164 == v.did)
        )
    return (
        account.email, account.balance_minor, account.erased_at, *counts, digest,
        account.callerid_number_id, presented, callerid_service,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("method", "template", "body"), REQUESTS, ids=[f"{m} {p}" for m, p, _ in REQUESTS]
)
async def test_a_customer_gets_404_for_another_accounts_object(
    api: Api, method: str, template: str, body: Any
) -> None:
    victim = await _victim(api)
    intruder = await api.customer()
    before = await _fingerprint(api, victim)
    path = template.format(**vars(victim))
    if isinstance(body, bytes):
        headers = {**intruder.headers, "Content-Type": "audio/wav"}
        response = await api.client.request(method, path, data=body, headers=headers)
    else:
        response = await api.client.request(method, path, json=body, headers=intruder.headers)
    answer = await response.json()
    assert response.status == 404, answer
    assert answer["error"] == "not_found" and answer["details"] == []
    assert await _fingerprint(api, victim) == before


async def test_a_customer_gets_403_turning_the_callerid_service_of_its_own_number(
    api: Api,
) -> None:
    """Operator only: on a number it may see, a customer is refused (403, not 404) and
    nothing changes; the same request from the operator goes through."""
    owner = await api.customer()
    did = await api.number(owner.account_id)
    url = f"/api/v1/numbers/{did}/callerid-service"
    refused = await api.client.put(url, json={"enabled": True}, headers=owner.headers)
    unchanged = await api.client.get(f"/api/v1/numbers/{did}", headers=owner.headers)
    done = await api.client.put(url, json={"enabled": True}, headers=api.operator)
    assert refused.status == 403 and (await refused.json())["error"] == "forbidden"
    assert (await unchanged.json())["callerid_service"] is False
    assert done.status == 200 and (await done.json())["callerid_service"] is True


def test_every_route_with_an_object_in_its_path_is_covered_here() -> None:
    from callcontrol.web.api import all_routes

    covered = {(m, p.split("?")[0]) for m, p, _ in REQUESTS}
    scoped = {
        (r.method, r.path)
        for r in all_routes()
        if r.path_params and not PUBLIC & set(r.path_params)
    }
    assert scoped <= covered, scoped - covered
