"""Money: integer minor units, one currency, explicit rounding (no I/O, no mocks)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.errors import CurrencyMismatch, DomainError, InvalidInput
from callcontrol.domain.money import (
    Money,
    apply_discount,
    format_minor,
    minor_unit_exponent,
    percent_of,
)


def test_amounts_in_the_same_currency_add_and_subtract() -> None:
    assert Money(1250, "EUR") + Money(50, "EUR") == Money(1300, "EUR")
    assert Money(1250, "EUR") - Money(1300, "EUR") == Money(-50, "EUR")


def test_amounts_in_different_currencies_are_never_combined() -> None:
    with pytest.raises(CurrencyMismatch, match="EUR and USD"):
        Money(1, "EUR") + Money(1, "USD")
    with pytest.raises(CurrencyMismatch):
        Money(1, "EUR") - Money(1, "USD")
    with pytest.raises(CurrencyMismatch):
        _ = Money(1, "EUR") < Money(1, "USD")


def test_currency_mismatch_is_a_domain_error() -> None:
    assert issubclass(CurrencyMismatch, DomainError)


@pytest.mark.parametrize("amount", [1.5, True, "12", Decimal("1")])
def test_an_amount_that_is_not_a_plain_int_is_refused(amount: object) -> None:
    with pytest.raises(InvalidInput):
        Money(amount, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", ""])
def test_a_currency_that_is_not_an_iso_code_is_refused(currency: str) -> None:
    with pytest.raises(InvalidInput):
        Money(100, currency)


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1250, "EUR", "12.50 EUR"),
        (5, "USD", "0.05 USD"),
        (-5, "USD", "-0.05 USD"),
        (0, "RUB", "0.00 RUB"),
        (1500, "JPY", "1500 JPY"),
        (12345, "KWD", "12.345 KWD"),
        (100, "XYZ", "1.00 XYZ"),
    ],
)
def test_amounts_are_formatted_for_mails_with_the_currency_exponent(
    amount: int, currency: str, text: str
) -> None:
    assert format_minor(amount, currency) == text
    assert str(Money(amount, currency)) == text


def test_unknown_currencies_have_two_decimals() -> None:
    assert minor_unit_exponent("XYZ") == 2


def test_a_percentage_rounds_half_up_to_a_whole_minor_unit() -> None:
    assert percent_of(1010, 5) == 51  # 50.5 -> 51
    assert percent_of(1009, 5) == 50  # 50.45 -> 50
    assert percent_of(-1010, 5) == -51  # half away from zero
    assert percent_of(999, Decimal("12.5")) == 125  # 124.875 -> 125


def test_a_discount_returns_the_net_and_the_discount() -> None:
    assert apply_discount(3000, 15) == (2550, 450)
    assert Money(1010, "EUR").discounted(5) == Money(959, "EUR")


@pytest.mark.parametrize("pct", [-1, 101, 1.5, True])
def test_a_percentage_outside_0_to_100_or_a_float_is_refused(pct: object) -> None:
    with pytest.raises(InvalidInput):
        percent_of(100, pct)  # type: ignore[arg-type]


@given(st.integers(-(10**12), 10**12), st.integers(0, 100))
def test_net_plus_discount_always_equals_the_original_amount(amount: int, pct: int) -> None:
    net, discount = apply_discount(amount, pct)
    assert net + discount == amount
    assert abs(discount) <= abs(amount)


@given(st.integers(-(10**9), 10**9), st.integers(-(10**9), 10**9))
def test_adding_then_subtracting_gives_back_the_amount(a: int, b: int) -> None:
    assert Money(a, "EUR") + Money(b, "EUR") - Money(b, "EUR") == Money(a, "EUR")
