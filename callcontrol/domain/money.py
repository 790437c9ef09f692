"""Amounts of money: integer minor units, one currency each.

Rules kept here:

- an amount is an ``int`` of minor units (cents, kopecks ...); a float never
  enters, and ``bool`` is refused although Python counts it as an ``int``;
- a currency is an ISO 4217 alphabetic code (three upper-case letters);
- amounts in different currencies are never added or subtracted
  (``CurrencyMismatch``);
- the only division is a percentage, rounded once, explicitly, ROUND_HALF_UP
  (half a minor unit goes away from zero) through ``Decimal``;
- formatting for mails uses the ISO 4217 minor-unit exponent of the currency
  (``JPY`` 0, ``KWD`` 3, most others 2; unknown codes default to 2):
  ``Money(1250, "EUR")`` -> ``"12.50 EUR"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from callcontrol.domain.errors import CurrencyMismatch, InvalidInput

DEFAULT_EXPONENT: Final = 2

# ISO 4217 exponents that differ from the default 2 (the currencies with 2 need no entry).
_EXPONENTS: Final[dict[str, int]] = {
    # no minor unit
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0,
    # thousandths
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # ten-thousandths (unit of account)
    "CLF": 4, "UYW": 4,
}  # fmt: skip

_CURRENCY_CODE: Final = re.compile(r"[A-Z]{3}")

# The ISO 4217 codes of money in circulation (list one, 2025), without the
# precious metals, bond-market units, SDR and the testing codes (XAU, XTS, XXX ...):
# what an account, a number or a rate may be priced in.
ISO_4217: Final = frozenset(
    """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP
DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD
MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD
SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS
VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
""".split()
)


def require_iso_4217(currency: str) -> str:
    """``currency`` if it is an ISO 4217 code of money in circulation, else ``InvalidInput``."""
    if currency not in ISO_4217:
        raise InvalidInput(f"{currency!r} is not an ISO 4217 currency code (e.g. EUR, USD)")
    return currency


def validate_currency(currency: str) -> str:
    """Return ``currency`` if it is an ISO 4217 style code, else raise ``InvalidInput``."""
    if not isinstance(currency, str) or _CURRENCY_CODE.fullmatch(currency) is None:
        raise InvalidInput(f"currency must be three upper-case letters, got {currency!r}")
    return currency


def validate_minor(amount_minor: object, what: str = "amount") -> int:
    """Return ``amount_minor`` if it is a plain ``int`` (not bool, not float)."""
    if type(amount_minor) is not int:
        raise InvalidInput(f"{what} must be an int of minor units, got {amount_minor!r}")
    return amount_minor


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point for ``currency`` (ISO 4217; default 2)."""
    return _EXPONENTS.get(validate_currency(currency), DEFAULT_EXPONENT)


def format_minor(amount_minor: int, currency: str) -> str:
    """``1250, "EUR"`` -> ``"12.50 EUR"``; ``-5, "USD"`` -> ``"-0.05 USD"``."""
    exponent = minor_unit_exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(validate_minor(amount_minor)), 10**exponent)
    digits = f"{whole}.{fraction:0{exponent}d}" if exponent else str(whole)
    return f"{sign}{digits} {currency}"


def percent_of(amount_minor: int, percent: int | Decimal) -> int:
    """``percent`` % of ``amount_minor``, rounded ROUND_HALF_UP to a whole minor unit."""
    validate_minor(amount_minor)
    pct = _validate_percent(percent)
    exact = Decimal(amount_minor) * pct / Decimal(100)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def apply_discount(amount_minor: int, percent: int | Decimal) -> tuple[int, int]:
    """``(amount after discount, discount)``; the discount is rounded half up, once."""
    discount = percent_of(amount_minor, percent)
    return amount_minor - discount, discount


def _validate_percent(percent: int | Decimal) -> Decimal:
    if isinstance(percent, bool) or not isinstance(percent, int | Decimal):
        raise InvalidInput(f"percent must be an int or Decimal, got {percent!r}")
    pct = Decimal(percent)
    if not pct.is_finite() or not Decimal(0) <= pct <= Decimal(100):
        raise InvalidInput(f"percent must be between 0 and 100, got {percent}")
    return pct


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency; arithmetic only with the same currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        validate_minor(self.amount_minor)
        validate_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def __add__(self, other: Money) -> Money:
        return Money(self.amount_minor + self._same_currency(other), self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.amount_minor - self._same_currency(other), self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        return self.amount_minor < self._same_currency(other)

    def __le__(self, other: Money) -> bool:
        return self.amount_minor <= self._same_currency(other)

    @property
    def is_negative(self) -> bool:
        return self.amount_minor < 0

    @property
    def is_positive(self) -> bool:
        return self.amount_minor > 0

    def discounted(self, percent: int | Decimal) -> Money:
        """This amount less ``percent`` %, the discount rounded half up."""
        return Money(apply_discount(self.amount_minor, percent)[0], self.currency)

    def format(self) -> str:
        """For mails and statements: ``"12.50 EUR"``."""
        return format_minor(self.amount_minor, self.currency)

    def __str__(self) -> str:
        return self.format()

    def _same_currency(self, other: Money) -> int:
        if not isinstance(other, Money):
            raise InvalidInput(f"expected Money, got {other!r}")
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)
        return other.amount_minor
