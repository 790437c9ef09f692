"""A document a person reads and prints: the issued JSON laid out as a PDF.

ReportLab (BSD, maintained since 2000, pure Python wheels with no system
library to install) draws the page; WeasyPrint would need Pango and Cairo on
every machine for an HTML step we do not need. The PDF is printed from the
stored content only, so it shows exactly what was issued. Text uses DejaVu Sans
when the system has it (Cyrillic and other company names print correctly, and
``pdftotext`` reads it back); otherwise ReportLab's built-in Helvetica.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Final

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from callcontrol.domain.money import format_minor

FONT_CANDIDATES: Final = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
)
_FONT = "DocSans"


def _font() -> str:
    if _FONT in pdfmetrics.getRegisteredFontNames():
        return _FONT
    for path in FONT_CANDIDATES:
        if path.is_file():
            pdfmetrics.registerFont(TTFont(_FONT, str(path)))
            return _FONT
    return "Helvetica"


def _escape(text: object) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _party(doc: dict[str, Any], body: ParagraphStyle) -> list[Flowable]:
    account = doc["account"]
    rows = [f"Customer: {_escape(account['name'])} (account {account['id']})"]
    for label, key in (("Address", "address"), ("Tax id", "tax_id"),
                       ("Contract", "contract_number")):  # fmt: skip
        if account.get(key):
            rows.append(f"{label}: {_escape(account[key])}")
    return [Paragraph(row, body) for row in rows]


def _table(rows: list[list[str]], font: str) -> Table:
    table = Table(rows, repeatRows=1, hAlign="LEFT")
    style: list[Any] = [
        ("FONT", (0, 0), (-1, -1), font, 9),
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
    table.setStyle(TableStyle(style))
    return table


def _service_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = [["Service", "Quantity", "Unit", "Amount"]]
    rows += [[line["description"], line["quantity"], line["unit"], line["text"]]
             for line in doc["lines"]]  # fmt: skip
    return rows


def _movement_rows(doc: dict[str, Any], currency: str) -> list[list[str]]:
    rows = [["Date", "Movement", "Debit", "Credit", "Balance"]]
    rows.append(["", "Opening balance", "", "", doc["opening_balance"]["text"]])
    for m in doc["movements"]:
        rows.append([
            m["at"][:10], m["description"],
            format_minor(m["debit_minor"], currency) if m["debit_minor"] else "",
            format_minor(m["credit_minor"], currency) if m["credit_minor"] else "",
            format_minor(m["balance_minor"], currency),
        ])  # fmt: skip
    rows.append(["", "Turnover", doc["debits"]["text"], doc["credits"]["text"], ""])
    rows.append(["", "Closing balance", "", "", doc["closing_balance"]["text"]])
    return rows


def render_pdf(doc: dict[str, Any]) -> bytes:
    """The PDF of an issued document (``Statement.render``'s JSON)."""
    font = _font()
    title = ParagraphStyle("title", fontName=font, fontSize=15, leading=19)
    body = ParagraphStyle("body", fontName=font, fontSize=10, leading=13)
    period = doc["period"]
    story: list[Flowable] = [
        Paragraph(f"{_escape(doc['title'])} No. {_escape(doc['number'])}", title),
        Spacer(1, 3 * mm),
        Paragraph(f"Period: {period['from']} - {period['to']}", body),
        Paragraph(f"Issued: {_escape(doc['issued_at'][:10])}", body),
        *_party(doc, body),
        Spacer(1, 5 * mm),
    ]
    if doc["kind"] == "reconciliation":
        story.append(_table(_movement_rows(doc, doc["currency"]), font))
    else:
        story.append(_table(_service_rows(doc), font))
        story.append(Spacer(1, 4 * mm))
        story.append(Paragraph(f"Total: {doc['total']['text']}", body))
        if doc["kind"] == "invoice":
            story.append(Paragraph(f"Paid in the period: {doc['paid']['text']}", body))
            story.append(Paragraph(f"Amount due: {doc['amount_due']['text']}", body))
    out = io.BytesIO()
    SimpleDocTemplate(
        out, pagesize=A4, title=f"{doc['title']} {doc['number']}",
        leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm, bottomMargin=18 * mm,
    ).build(story)  # fmt: skip
    return out.getvalue()
