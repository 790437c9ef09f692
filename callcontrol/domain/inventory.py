"""Reading a number inventory file (CSV or JSON rows) into checked rows.

Rules kept here:
- Columns: ``e164, country, city, kind, monthly_fee_minor, setup_fee_minor,
  currency, reservable, needs_documents, expected_activation``. ``e164`` (any
  international form: ``+4930...``, ``0049 30 ...``), ``country`` (ISO 3166
  alpha-2), ``kind`` (``voice`` / ``sms-once``), both fees (integer minor
  units, >= 0) and ``currency`` (ISO 4217) are required; ``city`` and
  ``expected_activation`` may be empty; ``reservable`` defaults to true,
  ``needs_documents`` to false (``true/false/yes/no/1/0``).
- The number must belong to the named country when ``phonenumbers`` can place it.
- A number given twice in one file is an error on its second line.
- Every bad row is reported with its line (CSV: the line of the file, the
  header being line 1; JSON: the item's position from 1) and the reason; the
  caller stores nothing unless there is no error at all (all or nothing).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from callcontrol.domain.callerid import parse_did
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.money import require_iso_4217
from callcontrol.domain.vocabulary import NumberKind

COLUMNS = (
    "e164", "country", "city", "kind", "monthly_fee_minor", "setup_fee_minor", "currency",
    "reservable", "needs_documents", "expected_activation",
)  # fmt: skip
REQUIRED = ("e164", "country", "kind", "monthly_fee_minor", "setup_fee_minor", "currency")
MAX_ROWS = 10_000
MAX_FEE_MINOR = 10**12
_REGION = re.compile(r"^[A-Z]{2}$")
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0", ""}


@dataclass(frozen=True, slots=True)
class InventoryRow:
    line: int
    e164: str
    country_code: int
    region: str
    city: str | None
    kind: NumberKind
    monthly_fee_minor: int
    setup_fee_minor: int
    currency: str
    reservable: bool
    needs_documents: bool
    expected_activation: str | None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str
    message: str


Cell = str | int | bool | None


def _text(value: Cell, field: str, limit: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"{field} must be text")
    text = str(value).strip()
    if len(text) > limit or "\x00" in text:
        raise InvalidInput(f"{field} is longer than {limit} characters or holds NUL")
    return text


def _minor(value: Cell, field: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must be an integer of minor units")
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,13}", value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or not 0 <= value <= MAX_FEE_MINOR:
        raise InvalidInput(f"{field} must be an integer of minor units, 0..{MAX_FEE_MINOR}")
    return value


def _flag(value: Cell, field: str, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value, field, 5).lower()
    if text == "":
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInput(f"{field} must be true or false, not {text!r}")


def parse_row(line: int, raw: Mapping[str, Cell]) -> InventoryRow:
    """One checked row; ``InvalidInput`` whose message starts with the field name."""
    unknown = sorted(set(raw) - set(COLUMNS))
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown column (columns: {', '.join(COLUMNS)})")
    for name in REQUIRED:
        if _text(raw.get(name), name, 40) == "" and not isinstance(raw.get(name), int):
            raise InvalidInput(f"{name}: required")
    field = "e164"
    try:
        number = parse_did(_text(raw.get("e164"), "e164", 40))
        field = "country"
        region = _text(raw.get("country"), "country", 2).upper()
        if not _REGION.match(region):
            raise InvalidInput("must be an ISO 3166 alpha-2 code such as DE")
        if len(number.region) == 2 and number.region not in ("ZZ", region):
            raise InvalidInput(f"{number.e164} is a number of {number.region}, not {region}")
        field = "kind"
        kind_text = _text(raw.get("kind"), "kind", 10)
        try:
            kind = NumberKind(kind_text)
        except ValueError:
            raise InvalidInput(f"must be voice or sms-once, not {kind_text!r}") from None
        field = "monthly_fee_minor"
        monthly = _minor(raw.get("monthly_fee_minor"), field)
        field = "setup_fee_minor"
        setup = _minor(raw.get("setup_fee_minor"), field)
        field = "currency"
        currency = require_iso_4217(_text(raw.get("currency"), field, 3).upper())
        field = "reservable"
        reservable = _flag(raw.get("reservable"), field, True)
        field = "needs_documents"
        needs_documents = _flag(raw.get("needs_documents"), field, False)
        field = "city"
        city = _text(raw.get("city"), field, 100) or None
        field = "expected_activation"
        expected = _text(raw.get("expected_activation"), field, 50) or None
    except InvalidInput as exc:
        message = str(exc)
        text = message if message.startswith(f"{field}:") else f"{field}: {message}"
        raise InvalidInput(text) from None
    return InventoryRow(
        line, number.e164, number.country_code, region, city, kind, monthly, setup, currency,
        reservable, needs_documents, expected,
    )  # fmt: skip


def parse_rows(
    rows: Iterable[tuple[int, Mapping[str, Cell]]],
) -> tuple[list[InventoryRow], list[RowError]]:
    """Every row checked; a DID repeated in the input is an error where it repeats."""
    good: list[InventoryRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, raw in rows:
        try:
            row = parse_row(line, raw)
        except InvalidInput as exc:
            field, _, message = str(exc).partition(": ")
            errors.append(RowError(line, field, message or field))
            continue
        if row.e164 in seen:
            errors.append(RowError(line, "e164", f"{row.e164} is already on line {seen[row.e164]}"))
            continue
        seen[row.e164] = line
        good.append(row)
    if len(good) + len(errors) > MAX_ROWS:
        errors.insert(0, RowError(1, "file", f"at most {MAX_ROWS} rows per import"))
    return good, errors


def csv_rows(text: str) -> list[tuple[int, dict[str, Cell]]]:
    """The rows of a CSV file with a header line, each with its line number; a file
    the CSV reader cannot read is ``InvalidInput`` naming the line."""
    try:
        return _csv_rows(text)
    except csv.Error as exc:
        raise InvalidInput(f"not a readable CSV file: {exc}") from None


def _csv_rows(text: str) -> list[tuple[int, dict[str, Cell]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise InvalidInput("the CSV file is empty: expected a header line")
    missing = [c for c in REQUIRED if c not in reader.fieldnames]
    if missing:
        raise InvalidInput(f"the CSV header lacks {', '.join(missing)}")
    rows: list[tuple[int, dict[str, Cell]]] = []
    for raw in reader:
        if None in raw:
            rows.append((reader.line_num, {"e164": raw.get("e164"), "extra cells": "x"}))
            continue
        if not any((v or "").strip() for v in raw.values()):
            continue  # a blank line
        rows.append((reader.line_num, dict(raw)))
    return rows
