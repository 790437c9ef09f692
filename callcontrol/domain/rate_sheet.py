"""Reading a PSTN rate sheet (CSV): ``prefix, rate_per_minute_minor, currency, description``.

Rules kept here: a prefix is the E.164 digits a destination starts with (country
code and beyond, 1..15 digits; a leading ``+`` is dropped); the rate is an
integer of minor units per minute, >= 0; the currency ISO 4217; a prefix given
twice in one sheet is an error on its second line. Errors carry the line (the
header is line 1); the caller stores nothing unless there is none. The longest
matching prefix wins when a call is rated (``domain.rating``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.inventory import RowError
from callcontrol.domain.money import require_iso_4217

MAX_RATE_MINOR = 10**9
_PREFIX = re.compile(r"^[1-9][0-9]{0,14}$")


@dataclass(frozen=True, slots=True)
class RateRow:
    line: int
    prefix: str
    rate_per_minute_minor: int
    currency: str
    description: str


def check_prefix(raw: str) -> str:
    prefix = raw.strip().removeprefix("+")
    if not prefix.isascii() or not _PREFIX.match(prefix):
        raise InvalidInput(f"{raw!r} is not a prefix: 1 to 15 digits of E.164, e.g. 49 or 4915")
    return prefix


def check_rate(value: object) -> int:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("must be an integer of minor units per minute")
    if not 0 <= value <= MAX_RATE_MINOR:
        raise InvalidInput(f"must be 0..{MAX_RATE_MINOR} minor units per minute")
    return value


def _row(line: int, raw: dict[str, str | None]) -> RateRow:
    field = "prefix"
    try:
        prefix = check_prefix(raw.get("prefix") or "")
        field = "rate_per_minute_minor"
        rate = check_rate(raw.get("rate_per_minute_minor") or "")
        field = "currency"
        currency = require_iso_4217((raw.get("currency") or "").strip().upper())
        field = "description"
        description = (raw.get("description") or "").strip()
        if len(description) > 200 or "\x00" in description:
            raise InvalidInput("at most 200 characters")
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc}") from None
    return RateRow(line, prefix, rate, currency, description)


def parse_rate_sheet(text: str) -> tuple[list[RateRow], list[RowError]]:
    """Checked rows and the errors by line; an unreadable file is ``InvalidInput``."""
    try:
        return _parse(text)
    except csv.Error as exc:
        raise InvalidInput(f"not a readable CSV file: {exc}") from None


def _parse(text: str) -> tuple[list[RateRow], list[RowError]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise InvalidInput("the CSV file is empty: expected a header line")
    missing = [
        c for c in ("prefix", "rate_per_minute_minor", "currency") if c not in reader.fieldnames
    ]
    if missing:
        raise InvalidInput(f"the CSV header lacks {', '.join(missing)}")
    good: list[RateRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        if not any((v or "").strip() for k, v in raw.items() if k is not None):
            continue
        if None in raw:
            errors.append(RowError(line, "line", "more cells than the header has columns"))
            continue
        try:
            row = _row(line, raw)
        except InvalidInput as exc:
            field, _, message = str(exc).partition(": ")
            errors.append(RowError(line, field, message))
            continue
        if row.prefix in seen:
            errors.append(
                RowError(line, "prefix", f"{row.prefix} is already on line {seen[row.prefix]}")
            )
            continue
        seen[row.prefix] = line
        good.append(row)
    return good, errors
