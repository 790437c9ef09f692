"""The closing documents of a period, built from the ledger: pure, no I/O.

A company pays by bank transfer under a contract and gets, for any period
(calendar dates, inclusive, in UTC like every stored time):

- an **invoice**: the services charged in the period (fees per number, PSTN
  minutes), the discounts and refunds, the total, the payments received and
  what is still due (the debt at the end of the period);
- a **statement of services rendered**: the same service lines and total,
  without the payments;
- a **reconciliation statement**: the opening balance, every movement of the
  ledger in the period (charges and payments, in order) and the closing
  balance.

Rules kept here:

- every amount is an ``int`` of minor units in the account's one currency;
  nothing is divided, so nothing is rounded (minutes are shown, never priced);
- a line's amount is what the customer owes for it: a charge (a debit in the
  ledger) is positive, a discount or refund (a credit) negative;
- ``total = sum(line amounts) = -(sum of the non-payment movements)``;
- ``closing = opening + sum(movements)``: the closing balance is the ledger's
  balance at the end of the period, by construction and by test;
- payments are ledger top-ups (bank transfers and others); they appear in the
  reconciliation and the invoice's "paid", never as a service line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.money import format_minor, validate_currency, validate_minor
from callcontrol.domain.vocabulary import LedgerKind

MAX_PERIOD_DAYS = 366
BANK_TRANSFER_KEY = "bank-transfer:"


class DocumentKind(StrEnum):
    INVOICE = "invoice"
    SERVICES = "services"  # statement of services rendered
    RECONCILIATION = "reconciliation"

    @property
    def series(self) -> str:
        return {"invoice": "INV", "services": "ACT", "reconciliation": "REC"}[self.value]

    @property
    def heading(self) -> str:
        return {
            "invoice": "Invoice",
            "services": "Statement of services rendered",
            "reconciliation": "Reconciliation statement",
        }[self.value]


def document_number(kind: DocumentKind, seq: int) -> str:
    """``INV-000042``: the series of the kind and its sequence number."""
    if seq < 1:
        raise InvalidInput(f"a document sequence number starts at 1, got {seq}")
    return f"{kind.series}-{seq:06d}"


@dataclass(frozen=True, slots=True)
class Period:
    first: date
    last: date  # inclusive

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise InvalidInput(f"the period ends ({self.last}) before it starts ({self.first})")
        if (self.last - self.first).days >= MAX_PERIOD_DAYS:
            raise InvalidInput(f"a period is at most {MAX_PERIOD_DAYS} days")

    @property
    def starts_at(self) -> datetime:
        return datetime.combine(self.first, time(0), tzinfo=UTC)

    @property
    def ends_at(self) -> datetime:
        """The first instant after the period (exclusive bound)."""
        return datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=UTC)

    def __str__(self) -> str:
        return f"{self.first.isoformat()} - {self.last.isoformat()}"


@dataclass(frozen=True, slots=True)
class Movement:
    """One ledger entry as the documents see it."""

    entry_id: int
    at: datetime
    kind: LedgerKind
    amount_minor: int  # + credit, - debit
    number: str | None = None  # the DID a fee is for
    key: str | None = None  # the ledger's idempotency key
    description: str = ""
    billed_seconds: int = 0  # call charges: the seconds the charge is for

    @property
    def is_payment(self) -> bool:
        return self.kind is LedgerKind.TOP_UP

    @property
    def label(self) -> str:
        if self.key and self.key.startswith(BANK_TRANSFER_KEY):
            return f"Bank transfer {self.key.removeprefix(BANK_TRANSFER_KEY)}"
        text = _KIND_LABELS[self.kind]
        if self.number:
            text += f" {self.number}"
        return text + (f" ({self.description})" if self.description else "")


_KIND_LABELS = {
    LedgerKind.TOP_UP: "Payment",
    LedgerKind.SETUP_FEE: "Setup fee",
    LedgerKind.MONTHLY_FEE: "Monthly fee",
    LedgerKind.CALL_CHARGE: "PSTN call",
    LedgerKind.REFUND: "Refund",
    LedgerKind.DISCOUNT: "Discount",
    LedgerKind.ADJUSTMENT: "Adjustment",
}


@dataclass(frozen=True, slots=True)
class Line:
    description: str
    quantity: str  # shown to people: "2", "12.50"
    unit: str  # "month", "min", ""
    amount_minor: int  # owed for this line: charges +, discounts and refunds -


@dataclass(frozen=True, slots=True)
class Party:
    """Who the document is for: the account, and its company details if any."""

    account_id: int
    name: str
    legal_name: str | None = None
    address: str | None = None
    tax_id: str | None = None
    contract_number: str | None = None

    @property
    def shown_name(self) -> str:
        return self.legal_name or self.name


def service_lines(movements: Iterable[Movement]) -> list[Line]:
    """Fees per number and kind, PSTN minutes in one line, then credits, in that order."""
    fees: dict[tuple[LedgerKind, str], list[int]] = {}
    call_minor = call_seconds = 0
    credits: list[Line] = []
    for m in movements:
        if m.is_payment:
            continue
        if m.kind in (LedgerKind.MONTHLY_FEE, LedgerKind.SETUP_FEE):
            fees.setdefault((m.kind, m.number or "-"), []).append(-m.amount_minor)
        elif m.kind is LedgerKind.CALL_CHARGE:
            call_minor -= m.amount_minor
            call_seconds += m.billed_seconds
        else:
            credits.append(Line(m.label, "1", "", -m.amount_minor))
    lines = [
        Line(f"{_KIND_LABELS[kind]} {number}", str(len(amounts)), _fee_unit(kind), sum(amounts))
        for (kind, number), amounts in sorted(fees.items(), key=lambda item: item[0][1])
    ]
    if call_minor or call_seconds:
        minutes = (Decimal(call_seconds) / 60).quantize(Decimal("0.01"))
        lines.append(Line("PSTN calls (forwarding and outbound)", str(minutes), "min", call_minor))
    return lines + credits


def _fee_unit(kind: LedgerKind) -> str:
    return "month" if kind is LedgerKind.MONTHLY_FEE else "number"


def _in_period(movements: Iterable[Movement], period: Period) -> list[Movement]:
    inside = [m for m in movements if period.starts_at <= m.at < period.ends_at]
    return sorted(inside, key=lambda m: (m.at, m.entry_id))


def _money(amount_minor: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": amount_minor, "currency": currency,
            "text": format_minor(amount_minor, currency)}  # fmt: skip


def _head(kind: DocumentKind, number: str, party: Party, period: Period,
          currency: str, issued_at: datetime) -> dict[str, Any]:  # fmt: skip
    return {
        "kind": kind.value,
        "title": kind.heading,
        "number": number,
        "issued_at": issued_at.isoformat(),
        "period": {"from": period.first.isoformat(), "to": period.last.isoformat()},
        "currency": validate_currency(currency),
        "account": {
            "id": party.account_id,
            "name": party.shown_name,
            "legal_name": party.legal_name,
            "address": party.address,
            "tax_id": party.tax_id,
            "contract_number": party.contract_number,
        },
    }


def _lines_json(lines: Sequence[Line], currency: str) -> list[dict[str, Any]]:
    return [
        {"description": line.description, "quantity": line.quantity, "unit": line.unit,
         **_money(line.amount_minor, currency)}
        for line in lines
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Statement:
    """Everything the three documents need for one account and period."""

    party: Party
    period: Period
    currency: str
    opening_minor: int  # the ledger's balance at the start of the period
    movements: tuple[Movement, ...]  # only those inside the period, in order

    @classmethod
    def of(cls, party: Party, period: Period, currency: str, opening_minor: int,
           movements: Iterable[Movement]) -> Statement:  # fmt: skip
        validate_minor(opening_minor, "opening balance")
        return cls(party, period, currency, opening_minor, tuple(_in_period(movements, period)))

    @property
    def closing_minor(self) -> int:
        return self.opening_minor + sum(m.amount_minor for m in self.movements)

    @property
    def lines(self) -> list[Line]:
        return service_lines(self.movements)

    @property
    def services_total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    @property
    def paid_minor(self) -> int:
        return sum(m.amount_minor for m in self.movements if m.is_payment)

    def total_of(self, kind: DocumentKind) -> int:
        """The one total a document of ``kind`` shows (and is listed with)."""
        if kind is DocumentKind.RECONCILIATION:
            return self.closing_minor
        return self.services_total_minor

    def render(self, kind: DocumentKind, number: str, issued_at: datetime) -> dict[str, Any]:
        """The document as JSON-ready data (what is stored and served, and printed)."""
        cur = self.currency
        doc = _head(kind, number, self.party, self.period, cur, issued_at)
        if kind is DocumentKind.RECONCILIATION:
            balance = self.opening_minor
            rows: list[dict[str, Any]] = []
            for m in self.movements:
                balance += m.amount_minor
                rows.append({"at": m.at.isoformat(), "description": m.label,
                             "debit_minor": max(0, -m.amount_minor),
                             "credit_minor": max(0, m.amount_minor),
                             "balance_minor": balance})  # fmt: skip
            debits = sum(max(0, -m.amount_minor) for m in self.movements)
            credits = sum(max(0, m.amount_minor) for m in self.movements)
            doc["opening_balance"] = _money(self.opening_minor, cur)
            doc["movements"] = rows
            doc["debits"] = _money(debits, cur)
            doc["credits"] = _money(credits, cur)
            doc["closing_balance"] = _money(self.closing_minor, cur)
            doc["total"] = _money(self.closing_minor, cur)
            return doc
        doc["lines"] = _lines_json(self.lines, cur)
        doc["total"] = _money(self.services_total_minor, cur)
        if kind is DocumentKind.INVOICE:
            doc["paid"] = _money(self.paid_minor, cur)
            doc["closing_balance"] = _money(self.closing_minor, cur)
            doc["amount_due"] = _money(max(0, -self.closing_minor), cur)
        return doc
