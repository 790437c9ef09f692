"""Company accounts, bank transfers and closing documents through the HTTP API.

Money is seeded through the real ledger and then dated into November 2026 (the
ledger stamps "now"; documents are issued only for ended periods). PDFs are
read back with poppler's ``pdftotext`` (Debian ``poppler-utils``, installed by
``scripts/setup.sh``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_api_fixtures import Api, Customer, api_fixture  # noqa: F401

from callcontrol.db import ledger
from callcontrol.db.models import Cdr, CdrLeg, LedgerEntry, Number
from callcontrol.domain.documents import DocumentKind, Period
from callcontrol.domain.vocabulary import (
    CallDirection,
    DestinationType,
    Disposition,
    LedgerKind,
    LegOutcome,
    NumberState,
)
from callcontrol.services.documents import DocumentService
from callcontrol.services.errors import NotFound

NOV = {"period_from": "2026-11-01", "period_to": "2026-11-30"}
COMPANY = {
    "legal_name": "Nordlicht Telefonie GmbH",
    "address": "Hauptstrasse 1, 10115 Berlin",
    "tax_id": "DE811907980",
    "contract_number": "VN-2026/117",
}


RUSSIAN_NAME = '\u041e\u041e\u041e "\u0421\u0435\u0432\u0435\u0440"'  # OOO "Sever", in Cyrillic


def nov(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


async def post(
    api: Api, account_id: int, kind: LedgerKind, amount: int, when: datetime, **kw: Any
) -> int:
    async with api.sessions() as session, session.begin():
        done = await ledger.post(
            session, account_id=account_id, kind=kind, amount_minor=amount, currency="EUR", **kw
        )
        await session.execute(
            sa.update(LedgerEntry).where(LedgerEntry.id == done.entry_id).values(created_at=when)
        )
        return done.entry_id


async def number_id(api: Api, did: str) -> int:
    async with api.sessions() as session:
        found = await session.scalar(sa.select(Number.id).where(Number.e164 == did))
        assert found is not None
        return found


async def call_charge(api: Api, account_id: int, did: str, seconds: int, cost: int) -> None:
    cdr_id = str(uuid.uuid4())
    async with api.sessions() as session, session.begin():
        session.add(Cdr(
            id=cdr_id, direction=CallDirection.INBOUND, did=did, account_id=account_id,
            started_at=nov(10), ended_at=nov(10), talk_ms=seconds * 1000, cost_minor=cost,
            currency="EUR", disposition=Disposition.ANSWERED,
        ))  # fmt: skip
        await session.flush()
        session.add(CdrLeg(
            cdr_id=cdr_id, position=1, destination_type=DestinationType.PSTN,
            target="+4915112345678", started_at=nov(10), outcome=LegOutcome.ANSWERED,
            billed_seconds=seconds, cost_minor=cost,
        ))  # fmt: skip
    await post(api, account_id, LedgerKind.CALL_CHARGE, -cost, nov(10), cdr_id=cdr_id,
               idempotency_key=f"call:{cdr_id}:1")  # fmt: skip


async def november_account(api: Api) -> tuple[Customer, str]:
    """A company that paid 50.00 EUR, was charged a 5.00 fee and 90 s of PSTN (0.03)."""
    owner = await api.customer(balance_minor=0)
    did = await api.number(owner.account_id)
    put = await api.client.put(
        f"/api/v1/accounts/{owner.account_id}/company", json=COMPANY, headers=api.operator
    )
    assert put.status == 200, await put.text()
    await post(api, owner.account_id, LedgerKind.TOP_UP, 5000, nov(2),
               idempotency_key=f"bank-transfer:PAY-{owner.account_id}")  # fmt: skip
    await post(api, owner.account_id, LedgerKind.MONTHLY_FEE, -500, nov(3),
               number_id=await number_id(api, did))  # fmt: skip
    await call_charge(api, owner.account_id, did, 90, 3)
    return owner, did


async def issue(api: Api, owner: Customer, kind: str, headers: dict[str, str] | None = None,
                period: dict[str, str] = NOV) -> Any:  # fmt: skip
    return await api.client.post(
        f"/api/v1/accounts/{owner.account_id}/documents", json={"kind": kind, **period},
        headers=headers or owner.headers,
    )  # fmt: skip


# --- company details -------------------------------------------------------------------


async def test_the_operator_makes_an_account_a_company_and_the_customer_reads_it(api: Api) -> None:
    owner = await api.customer()
    missing = await api.client.get(f"/api/v1/accounts/{owner.account_id}/company",
                                   headers=owner.headers)  # fmt: skip
    assert missing.status == 404
    put = await api.client.put(
        f"/api/v1/accounts/{owner.account_id}/company", json=COMPANY, headers=api.operator
    )
    assert put.status == 200
    got = await api.client.get(f"/api/v1/accounts/{owner.account_id}/company",
                               headers=owner.headers)  # fmt: skip
    assert got.status == 200
    assert {k: v for k, v in (await got.json()).items() if k in COMPANY} == COMPANY


async def test_a_customer_may_not_change_its_company_details_nor_see_anothers(api: Api) -> None:
    owner, other = await api.customer(), await api.customer()
    own = await api.client.put(
        f"/api/v1/accounts/{owner.account_id}/company", json=COMPANY, headers=owner.headers
    )
    assert own.status == 403
    theirs = await api.client.get(f"/api/v1/accounts/{owner.account_id}/company",
                                  headers=other.headers)  # fmt: skip
    assert theirs.status == 404


async def test_blank_company_fields_are_named_in_a_422(api: Api) -> None:
    owner = await api.customer()
    bad = await api.client.put(
        f"/api/v1/accounts/{owner.account_id}/company",
        json={**COMPANY, "tax_id": "  ", "legal_name": 5}, headers=api.operator,
    )  # fmt: skip
    assert bad.status == 422
    fields = {d["field"] for d in (await bad.json())["details"]}
    assert {"body.tax_id", "body.legal_name"} <= fields


# --- bank transfers --------------------------------------------------------------------


def payment(reference: str = "BANK-2026-0001", amount: int = 12_000) -> dict[str, Any]:
    return {"reference": reference, "amount_minor": amount, "received_on": "2026-11-28"}


async def _entries(api: Api, account_id: int) -> list[tuple[LedgerKind, int, str | None]]:
    async with api.sessions() as session:
        rows = await session.execute(
            sa.select(LedgerEntry.kind, LedgerEntry.amount_minor, LedgerEntry.idempotency_key)
            .where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id)
        )  # fmt: skip
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_a_bank_transfer_is_credited_once_however_often_it_is_recorded(api: Api) -> None:
    owner = await api.customer(balance_minor=0)
    url = f"/api/v1/accounts/{owner.account_id}/bank-payments"
    first = await api.client.post(url, json=payment(), headers=api.operator)
    assert first.status == 201, await first.text()
    body = await first.json()
    assert (body["balance_minor"], body["already_recorded"], body["currency"]) == (
        12_000, False, "EUR",
    )  # fmt: skip
    again = await (await api.client.post(url, json=payment(), headers=api.operator)).json()
    assert again["already_recorded"] and again["balance_minor"] == 12_000
    assert again["id"] == body["id"]
    assert await _entries(api, owner.account_id) == [
        (LedgerKind.TOP_UP, 12_000, "bank-transfer:BANK-2026-0001")
    ]
    listed = await (await api.client.get(url, headers=owner.headers)).json()
    assert [p["reference"] for p in listed["items"]] == ["BANK-2026-0001"]


async def test_concurrent_recordings_of_one_transfer_credit_it_once(api: Api) -> None:
    owner = await api.customer(balance_minor=0)
    url = f"/api/v1/accounts/{owner.account_id}/bank-payments"
    answers = await asyncio.gather(*(
        api.client.post(url, json=payment("CONCURRENT-1", 700), headers=api.operator)
        for _ in range(8)
    ))  # fmt: skip
    bodies = [await a.json() for a in answers]
    assert {a.status for a in answers} == {201}, bodies
    assert sorted(b["already_recorded"] for b in bodies) == [False] + [True] * 7
    assert len(await _entries(api, owner.account_id)) == 1
    async with api.sessions() as session:
        assert await ledger.balance_from_ledger(session, owner.account_id) == 700


async def test_a_reference_reused_with_another_amount_or_account_is_a_conflict(api: Api) -> None:
    owner, other = await api.customer(balance_minor=0), await api.customer(balance_minor=0)
    url = f"/api/v1/accounts/{owner.account_id}/bank-payments"
    assert (await api.client.post(url, json=payment("REF-9"), headers=api.operator)).status == 201
    other_amount = await api.client.post(url, json=payment("REF-9", 1), headers=api.operator)
    assert other_amount.status == 409
    assert "REF-9" in (await other_amount.json())["message"]
    other_account = await api.client.post(
        f"/api/v1/accounts/{other.account_id}/bank-payments", json=payment("REF-9"),
        headers=api.operator,
    )  # fmt: skip
    assert other_account.status == 409
    assert await _entries(api, other.account_id) == []


async def test_a_bank_transfer_that_clears_the_debt_reactivates_the_number(api: Api) -> None:
    owner = await api.customer(balance_minor=0)
    did = await api.number(owner.account_id, state=NumberState.SUSPENDED)
    await post(api, owner.account_id, LedgerKind.MONTHLY_FEE, -500, nov(3))
    url = f"/api/v1/accounts/{owner.account_id}/bank-payments"
    assert (await api.client.post(url, json=payment("CLEAR-1", 600), headers=api.operator)).ok
    async with api.sessions() as session:
        state = await session.scalar(sa.select(Number.state).where(Number.e164 == did))
    assert state is NumberState.ACTIVE


async def test_only_the_operator_records_transfers_and_bad_amounts_are_named(api: Api) -> None:
    owner = await api.customer(balance_minor=0)
    url = f"/api/v1/accounts/{owner.account_id}/bank-payments"
    assert (await api.client.post(url, json=payment(), headers=owner.headers)).status == 403
    for bad in (
        {**payment(), "amount_minor": 1.5},
        {**payment(), "amount_minor": 0},
        {**payment(), "reference": "bad ref"},
        {**payment(), "received_on": "28.11.2026"},
    ):
        answer = await api.client.post(url, json=bad, headers=api.operator)
        assert answer.status == 422, bad
        assert (await answer.json())["error"] == "invalid_input"
    assert await _entries(api, owner.account_id) == []


# --- documents -------------------------------------------------------------------------


async def test_the_invoice_shows_fees_per_number_minutes_and_the_total(api: Api) -> None:
    owner, did = await november_account(api)
    answer = await issue(api, owner, "invoice")
    assert answer.status == 201, await answer.text()
    doc = await answer.json()
    assert doc["number"].startswith("INV-") and doc["total_minor"] == 503
    content = doc["content"]
    assert [(li["description"], li["quantity"], li["amount_minor"]) for li in content["lines"]] == [
        (f"Monthly fee {did}", "1", 500),
        ("PSTN calls (forwarding and outbound)", "1.50", 3),
    ]
    assert content["account"]["legal_name"] == COMPANY["legal_name"]
    assert content["paid"]["amount_minor"] == 5000
    assert content["closing_balance"]["amount_minor"] == 4497


async def test_the_reconciliation_closes_at_the_ledgers_balance(api: Api) -> None:
    owner, _ = await november_account(api)
    # A December movement is not in November's statement.
    december = datetime(2026, 12, 1, tzinfo=UTC)
    await post(api, owner.account_id, LedgerKind.MONTHLY_FEE, -500, december)
    doc = (await (await issue(api, owner, "reconciliation")).json())["content"]
    async with api.sessions() as session:
        at_end = await session.scalar(
            sa.select(sa.func.sum(LedgerEntry.amount_minor)).where(
                LedgerEntry.account_id == owner.account_id,
                LedgerEntry.created_at < datetime(2026, 12, 1, tzinfo=UTC),
            )
        )
    assert doc["opening_balance"]["amount_minor"] == 0
    first = doc["movements"][0]["description"]
    assert first == f"Bank transfer PAY-{owner.account_id}"
    assert doc["closing_balance"]["amount_minor"] == at_end == 4497


async def test_consecutive_reconciliations_chain_and_end_at_the_ledger(api: Api) -> None:
    """Every month's opening is the previous month's closing; the last one is the ledger."""
    owner = await api.customer(balance_minor=0)
    for month, amount in ((8, 1000), (9, -300), (9, -45), (10, 2500), (11, -999)):
        await post(api, owner.account_id, LedgerKind.ADJUSTMENT, amount,
                   datetime(2026, month, 15, tzinfo=UTC))  # fmt: skip
    closings, openings = [], []
    for month, last in ((8, 31), (9, 30), (10, 31), (11, 30)):
        period = {"period_from": f"2026-{month:02d}-01", "period_to": f"2026-{month:02d}-{last}"}
        doc = (await (await issue(api, owner, "reconciliation", period=period)).json())["content"]
        openings.append(doc["opening_balance"]["amount_minor"])
        closings.append(doc["closing_balance"]["amount_minor"])
    assert openings[1:] == closings[:-1]
    async with api.sessions() as session:
        assert closings[-1] == await ledger.balance_from_ledger(session, owner.account_id) == 2156


async def test_asking_again_returns_the_same_document_and_burns_no_number(api: Api) -> None:
    owner, _ = await november_account(api)
    first = await (await issue(api, owner, "services")).json()
    again = await (await issue(api, owner, "services", headers=api.operator)).json()
    assert again["number"] == first["number"] and again["already_issued"]
    october = {"period_from": "2026-10-01", "period_to": "2026-10-31"}
    nxt = await (await issue(api, owner, "services", period=october)).json()
    assert int(nxt["number"].split("-")[1]) == int(first["number"].split("-")[1]) + 1


async def test_numbers_never_repeat_nor_skip_under_concurrent_issues(api: Api) -> None:
    owners = [await api.customer(balance_minor=0) for _ in range(4)]
    months = [("2026-08-01", "2026-08-31"), ("2026-09-01", "2026-09-30"),
              ("2026-10-01", "2026-10-31")]  # fmt: skip
    requests = [
        issue(api, o, "invoice", period={"period_from": a, "period_to": b})
        for o in owners
        for a, b in months
    ] * 2  # every document asked twice at once
    answers = await asyncio.gather(*requests)
    assert {a.status for a in answers} == {201}
    numbers = {(await a.json())["number"] for a in answers}
    assert sorted(numbers) == [f"INV-{n:06d}" for n in range(1, 13)]


async def test_a_failed_issue_gives_no_number_away(api: Api) -> None:
    owner = await api.customer(balance_minor=0)
    service = DocumentService(sessions=api.sessions)
    period = Period(date(2026, 10, 1), date(2026, 10, 31))
    first = await service.issue(owner.account_id, DocumentKind.INVOICE, period)
    with pytest.raises(NotFound):
        await service.issue(999_999, DocumentKind.INVOICE, period)
    second = await service.issue(owner.account_id, DocumentKind.INVOICE,
                                 Period(date(2026, 11, 1), date(2026, 11, 30)))  # fmt: skip
    assert (first.document.seq, second.document.seq) == (1, 2)


async def test_a_document_for_a_period_not_yet_ended_or_a_bad_kind_is_refused(api: Api) -> None:
    owner = await api.customer()
    today = datetime.now(UTC).date().isoformat()
    open_period = await issue(
        api, owner, "invoice", period={"period_from": "2026-11-01", "period_to": today}
    )
    assert open_period.status == 422
    assert (await open_period.json())["details"][0]["field"] == "body.period_to"
    for body in (
        {"kind": "receipt", **NOV},
        {"kind": "invoice", "period_from": "2026-11-30", "period_to": "2026-11-01"},
    ):
        answer = await api.client.post(f"/api/v1/accounts/{owner.account_id}/documents",
                                       json=body, headers=owner.headers)  # fmt: skip
        assert answer.status == 422, body


async def test_no_account_sees_another_accounts_documents(api: Api) -> None:
    owner, _ = await november_account(api)
    other = await api.customer()
    doc = await (await issue(api, owner, "invoice")).json()
    for path in (f"/api/v1/documents/{doc['id']}", f"/api/v1/documents/{doc['id']}/pdf",
                 f"/api/v1/accounts/{owner.account_id}/documents"):  # fmt: skip
        assert (await api.client.get(path, headers=other.headers)).status == 404, path
        assert (await api.client.get(path, headers=api.operator)).status == 200, path
        assert (await api.client.get(path, headers=owner.headers)).status == 200, path
    assert (await issue(api, owner, "services", headers=other.headers)).status == 404
    listed = await (await api.client.get(f"/api/v1/accounts/{other.account_id}/documents",
                                         headers=other.headers)).json()  # fmt: skip
    assert listed["items"] == []


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    assert shutil.which("pdftotext"), "pdftotext missing: scripts/setup.sh installs poppler-utils"
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          check=True, timeout=30)  # fmt: skip
    return done.stdout.decode()


async def test_the_pdf_invoice_names_the_account_the_period_and_the_total(
    api: Api, tmp_path: Path
) -> None:
    owner, did = await november_account(api)
    doc = await (await issue(api, owner, "invoice")).json()
    answer = await api.client.get(f"/api/v1/documents/{doc['id']}/pdf", headers=owner.headers)
    assert answer.status == 200 and answer.content_type == "application/pdf"
    pdf = await answer.read()
    assert pdf.startswith(b"%PDF")
    text = _pdf_text(pdf, tmp_path)
    assert COMPANY["legal_name"] in text and COMPANY["tax_id"] in text
    assert "2026-11-01 - 2026-11-30" in text
    assert "Total: 5.03 EUR" in text and doc["number"] in text and did in text


async def test_the_pdf_reconciliation_prints_a_cyrillic_company_name(
    api: Api, tmp_path: Path
) -> None:
    owner, _ = await november_account(api)
    russian = {**COMPANY, "legal_name": RUSSIAN_NAME}
    await api.client.put(f"/api/v1/accounts/{owner.account_id}/company", json=russian,
                         headers=api.operator)  # fmt: skip
    doc = await (await issue(api, owner, "reconciliation")).json()
    pdf = await (await api.client.get(f"/api/v1/documents/{doc['id']}/pdf",
                                      headers=api.operator)).read()  # fmt: skip
    text = _pdf_text(pdf, tmp_path)
    assert RUSSIAN_NAME in text and "Closing balance" in text and "44.97 EUR" in text
