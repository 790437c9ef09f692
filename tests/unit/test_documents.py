"""The closing documents built from ledger movements: totals that add up, always."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.documents import (
    DocumentKind,
    Movement,
    Party,
    Period,
    Statement,
    document_number,
    service_lines,
)
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.vocabulary import LedgerKind

K = LedgerKind
NOV = Period(date(2026, 11, 1), date(2026, 11, 30))
PARTY = Party(7, "acme", "ACME GmbH", "Hauptstr. 1, Berlin", "DE123456789", "C-2026/7")
ISSUED = datetime(2026, 12, 1, 9, tzinfo=UTC)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def mv(entry_id: int, when: datetime, kind: LedgerKind, amount: int, **kw: object) -> Movement:
    return Movement(entry_id, when, kind, amount, **kw)  # type: ignore[arg-type]


NOVEMBER = [
    mv(1, at(2), K.TOP_UP, 5000, key="bank-transfer:PAY-1"),
    mv(2, at(3), K.MONTHLY_FEE, -500, number="+4930123456"),
    mv(3, at(3), K.MONTHLY_FEE, -700, number="+4940111222"),
    mv(4, at(10), K.CALL_CHARGE, -30, billed_seconds=1800),
    mv(5, at(11), K.CALL_CHARGE, -12, billed_seconds=45),
    mv(6, at(20), K.DISCOUNT, 50, description="6 months ahead"),
    mv(7, datetime(2026, 12, 1, 0, tzinfo=UTC), K.MONTHLY_FEE, -500, number="+4930123456"),
]


def test_the_invoice_lists_fees_per_number_minutes_and_discounts_with_their_total() -> None:
    s = Statement.of(PARTY, NOV, "EUR", 100, NOVEMBER)
    doc = s.render(DocumentKind.INVOICE, "INV-000001", ISSUED)
    lines = [(li["description"], li["quantity"], li["unit"], li["amount_minor"])
             for li in doc["lines"]]  # fmt: skip
    assert lines == [
        ("Monthly fee +4930123456", "1", "month", 500),
        ("Monthly fee +4940111222", "1", "month", 700),
        ("PSTN calls (forwarding and outbound)", "30.75", "min", 42),
        ("Discount (6 months ahead)", "1", "", -50),
    ]
    assert doc["total"]["amount_minor"] == 1192 and doc["total"]["text"] == "11.92 EUR"
    assert doc["paid"]["amount_minor"] == 5000
    assert doc["closing_balance"]["amount_minor"] == 100 + 5000 - 1192
    assert doc["amount_due"]["amount_minor"] == 0
    assert doc["account"]["name"] == "ACME GmbH" and doc["account"]["tax_id"] == "DE123456789"
    assert doc["period"] == {"from": "2026-11-01", "to": "2026-11-30"}


def test_a_movement_on_the_first_instant_after_the_period_belongs_to_the_next() -> None:
    s = Statement.of(PARTY, NOV, "EUR", 0, NOVEMBER)
    assert 7 not in [m.entry_id for m in s.movements]


def test_an_invoice_of_a_period_ending_in_debt_says_what_is_due() -> None:
    s = Statement.of(PARTY, NOV, "EUR", 0, [mv(1, at(5), K.MONTHLY_FEE, -500, number="+491")])
    doc = s.render(DocumentKind.INVOICE, "INV-000002", ISSUED)
    assert doc["amount_due"]["amount_minor"] == 500


def test_the_reconciliation_runs_the_balance_through_every_movement() -> None:
    s = Statement.of(PARTY, NOV, "EUR", 100, NOVEMBER)
    doc = s.render(DocumentKind.RECONCILIATION, "REC-000001", ISSUED)
    assert doc["opening_balance"]["amount_minor"] == 100
    assert [r["balance_minor"] for r in doc["movements"]] == [5100, 4600, 3900, 3870, 3858, 3908]
    assert doc["movements"][0]["description"] == "Bank transfer PAY-1"
    assert doc["debits"]["amount_minor"] == 1242 and doc["credits"]["amount_minor"] == 5050
    assert doc["closing_balance"]["amount_minor"] == 3908 == s.total_of(DocumentKind.RECONCILIATION)


def test_the_statement_of_services_has_no_payments() -> None:
    doc = Statement.of(PARTY, NOV, "EUR", 0, NOVEMBER).render(
        DocumentKind.SERVICES, "ACT-000001", ISSUED
    )
    assert "paid" not in doc and all("transfer" not in li["description"] for li in doc["lines"])
    assert doc["title"] == "Statement of services rendered"


def test_document_numbers_are_per_series_and_start_at_one() -> None:
    assert document_number(DocumentKind.INVOICE, 1) == "INV-000001"
    assert document_number(DocumentKind.RECONCILIATION, 42) == "REC-000042"
    with pytest.raises(InvalidInput):
        document_number(DocumentKind.SERVICES, 0)


def test_a_period_must_be_in_order_and_at_most_a_year() -> None:
    with pytest.raises(InvalidInput, match="before it starts"):
        Period(date(2026, 11, 30), date(2026, 11, 1))
    with pytest.raises(InvalidInput, match="at most"):
        Period(date(2025, 1, 1), date(2026, 1, 2))  # 367 days
    assert Period(date(2024, 1, 1), date(2024, 12, 31))  # a leap year, 366 days


kinds = st.sampled_from(list(LedgerKind))
amounts = st.integers(min_value=-(10**9), max_value=10**9)
offsets = st.integers(min_value=-5 * 86400, max_value=40 * 86400)  # before, inside and after
movements = st.lists(
    st.tuples(kinds, amounts, offsets, st.integers(min_value=0, max_value=10**6)), max_size=40
)


def _movements(raw: list[tuple[LedgerKind, int, int, int]]) -> list[Movement]:
    start = NOV.starts_at
    return [
        mv(i, start + timedelta(seconds=off), kind, amount, billed_seconds=secs,
           number=f"+49{i % 3}")
        for i, (kind, amount, off, secs) in enumerate(raw, 1)
    ]  # fmt: skip


@given(movements, amounts)
def test_the_closing_balance_is_always_the_ledgers_balance_at_the_period_end(
    raw: list[tuple[LedgerKind, int, int, int]], before: int
) -> None:
    """The ledger here is ``before`` (all earlier entries) plus the movements; the
    reconciliation's closing must equal the sum of every entry up to the period's end."""
    ledger = _movements(raw)
    opening = before + sum(m.amount_minor for m in ledger if m.at < NOV.starts_at)
    s = Statement.of(PARTY, NOV, "EUR", opening, ledger)
    ledger_at_end = before + sum(m.amount_minor for m in ledger if m.at < NOV.ends_at)
    doc = s.render(DocumentKind.RECONCILIATION, "REC-000001", ISSUED)
    assert doc["closing_balance"]["amount_minor"] == ledger_at_end
    rows = doc["movements"]
    assert (rows[-1]["balance_minor"] if rows else opening) == ledger_at_end
    assert opening - doc["debits"]["amount_minor"] + doc["credits"]["amount_minor"] == (
        ledger_at_end
    )


@given(movements)
def test_the_invoice_total_is_what_the_services_moved_and_adds_up_by_line(
    raw: list[tuple[LedgerKind, int, int, int]],
) -> None:
    ledger = _movements(raw)
    s = Statement.of(PARTY, NOV, "EUR", 0, ledger)
    inside = [m for m in ledger if NOV.starts_at <= m.at < NOV.ends_at]
    services = -sum(m.amount_minor for m in inside if m.kind is not LedgerKind.TOP_UP)
    doc = s.render(DocumentKind.INVOICE, "INV-000001", ISSUED)
    by_line = sum(li["amount_minor"] for li in doc["lines"])
    assert doc["total"]["amount_minor"] == services == by_line
    assert doc["paid"]["amount_minor"] - services == s.closing_minor
    assert sum(li.amount_minor for li in service_lines(inside)) == services
