"""Per-minute rating of PSTN legs: longest prefix, billing increments, talk caps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.rating import (
    FREE_RATE_CAP_S,
    Rate,
    RateTable,
    billed_seconds,
    cost,
    max_talk_seconds,
)

TABLE = RateTable.from_rows(
    [
        ("49", 3, "EUR"),  # German landlines
        ("4915", 12, "EUR"),  # German mobiles
        ("49151", 15, "EUR"),
        ("7", 5, "EUR"),
    ]
)
MOBILE = Rate("4915", 12, "EUR")


def test_the_longest_matching_prefix_wins() -> None:
    assert TABLE.lookup("+4915112345678") == Rate("49151", 15, "EUR")
    assert TABLE.lookup("+4915212345678") == Rate("4915", 12, "EUR")
    assert TABLE.lookup("+4930123456") == Rate("49", 3, "EUR")


def test_a_number_may_be_given_with_or_without_the_plus() -> None:
    assert TABLE.lookup("74951234567") == TABLE.lookup("+74951234567") == Rate("7", 5, "EUR")


def test_a_number_no_prefix_matches_has_no_rate() -> None:
    assert TABLE.lookup("+441234567890") is None


def test_a_number_shorter_than_a_prefix_matches_a_shorter_one() -> None:
    assert TABLE.lookup("+4915") == Rate("4915", 12, "EUR")


FULLWIDTH_49 = "+\uff14\uff19"


@pytest.mark.parametrize("bad", ["", "+", "+49 30 123", "sip:alice@example.com", FULLWIDTH_49])
def test_something_that_is_not_an_e164_number_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match=r"not an E\.164 number"):
        TABLE.lookup(bad)


def test_a_prefix_listed_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="appears twice"):
        RateTable.from_rows([("49", 3, "EUR"), ("49", 4, "EUR")])


@pytest.mark.parametrize(("prefix", "rate"), [("+49", 3), ("4a", 3), ("49", -1)])
def test_a_bad_rate_row_is_refused(prefix: str, rate: int) -> None:
    with pytest.raises(InvalidInput):
        Rate(prefix, rate, "EUR")


def test_per_second_billing_rounds_the_price_up_to_the_next_minor_unit() -> None:
    assert cost(MOBILE, 60) == 12
    assert cost(MOBILE, 1) == 1  # 0.2 -> 1
    assert cost(MOBILE, 61) == 13  # 12.2 -> 13
    assert cost(MOBILE, 0) == 0


def test_a_minimum_and_an_increment_are_applied_before_the_price() -> None:
    assert billed_seconds(5, minimum_s=60, increment_s=60) == 60
    assert billed_seconds(61, minimum_s=60, increment_s=60) == 120
    assert billed_seconds(31, minimum_s=30, increment_s=6) == 36
    assert cost(MOBILE, 61, minimum_s=60, increment_s=60) == 24


def test_an_unanswered_call_costs_nothing_even_with_a_minimum() -> None:
    assert cost(MOBILE, 0, minimum_s=60, increment_s=60) == 0


def test_a_bad_billing_scheme_is_refused() -> None:
    with pytest.raises(InvalidInput):
        cost(MOBILE, 10, increment_s=0)
    with pytest.raises(InvalidInput):
        cost(MOBILE, 10, minimum_s=-1)


def test_the_balance_caps_the_talk_time() -> None:
    assert max_talk_seconds(600, MOBILE) == 3000  # 6.00 at 0.12/min = 50 min
    assert max_talk_seconds(1, MOBILE) == 5


def test_an_empty_or_negative_balance_pays_for_no_talk() -> None:
    assert max_talk_seconds(0, MOBILE) == 0
    assert max_talk_seconds(-100, MOBILE) == 0


def test_a_balance_below_the_minimum_charge_pays_for_no_talk() -> None:
    assert max_talk_seconds(11, MOBILE, minimum_s=60, increment_s=60) == 0
    assert max_talk_seconds(12, MOBILE, minimum_s=60, increment_s=60) == 60


def test_a_free_rate_is_still_capped() -> None:
    assert max_talk_seconds(1, Rate("49", 0, "EUR")) == FREE_RATE_CAP_S


# -- properties -----------------------------------------------------------------------------

rates = st.builds(Rate, st.just("49"), st.integers(0, 10_000), st.just("EUR"))
schemes = st.sampled_from([(0, 1), (60, 1), (60, 60), (30, 6), (1, 1), (10, 6)])


@given(rates, st.integers(0, 100_000), st.integers(0, 100_000), schemes)
def test_a_longer_call_never_costs_less_and_no_call_costs_a_negative_amount(
    rate: Rate, a: int, b: int, scheme: tuple[int, int]
) -> None:
    minimum_s, increment_s = scheme
    short, long_ = sorted((a, b))
    low = cost(rate, short, minimum_s=minimum_s, increment_s=increment_s)
    high = cost(rate, long_, minimum_s=minimum_s, increment_s=increment_s)
    assert 0 <= low <= high


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 100_000))
def test_a_higher_rate_never_costs_less(r1: int, r2: int, seconds: int) -> None:
    low, high = sorted((r1, r2))
    assert cost(Rate("49", low, "EUR"), seconds) <= cost(Rate("49", high, "EUR"), seconds)


@given(st.integers(-1000, 10**7), rates.filter(lambda r: r.rate_per_minute_minor > 0), schemes)
def test_the_talk_cap_never_costs_more_than_the_balance_and_one_second_more_would(
    balance: int, rate: Rate, scheme: tuple[int, int]
) -> None:
    minimum_s, increment_s = scheme
    seconds = max_talk_seconds(balance, rate, minimum_s=minimum_s, increment_s=increment_s)
    assert seconds >= 0
    assert cost(rate, seconds, minimum_s=minimum_s, increment_s=increment_s) <= max(balance, 0)
    if balance > 0:
        over = cost(rate, seconds + 1, minimum_s=minimum_s, increment_s=increment_s)
        assert over > balance


@given(
    st.dictionaries(st.text("0123456789", min_size=1, max_size=6), st.integers(0, 100)),
    st.text("0123456789", min_size=1, max_size=15),
)
def test_the_lookup_agrees_with_a_brute_force_longest_prefix_search(
    rows: dict[str, int], number: str
) -> None:
    table = RateTable.from_rows((prefix, rate, "EUR") for prefix, rate in rows.items())
    matching = [p for p in rows if number.startswith(p)]
    found = table.lookup("+" + number)
    if not matching:
        assert found is None
    else:
        best = max(matching, key=len)
        assert found == Rate(best, rows[best], "EUR")
