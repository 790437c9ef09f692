"""The credit cap and the charge agree: one rounding rule, never past the balance.

The issue this guards (17): a call capped at 30 s for a balance of 1 at 2/min
was measured at 30.006 s, rounded up to 31 s and charged 2 - balance -1.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from callcontrol.domain.rating import (
    Rate,
    billed_seconds,
    charge,
    chargeable_seconds,
    cost,
    max_talk_seconds,
)

balances = st.integers(min_value=1, max_value=10**7)
rates = st.integers(min_value=1, max_value=10**5).map(lambda r: Rate("49", r, "EUR"))
schemes = st.sampled_from([(0, 1), (60, 60), (60, 1), (30, 6), (1, 1), (0, 6), (0, 30)])
jitter = st.integers(min_value=0, max_value=2_000_000).map(lambda us: timedelta(microseconds=us))


@given(balances, rates, schemes, jitter)
@example(1, Rate("49", 2, "EUR"), (0, 1), timedelta(milliseconds=6))  # the issue's call
def test_a_call_cut_by_the_cap_never_costs_more_than_the_balance(
    balance: int, rate: Rate, scheme: tuple[int, int], late: timedelta
) -> None:
    minimum_s, increment_s = scheme
    cap = max_talk_seconds(balance, rate, minimum_s=minimum_s, increment_s=increment_s)
    talk = timedelta(seconds=cap) + late  # Asterisk tears the leg down a little late
    rated = charge(rate, talk, cap_s=cap, minimum_s=minimum_s, increment_s=increment_s)
    assert rated.cost_minor <= balance
    assert rated.talk_seconds <= cap


@given(balances, rates, schemes, st.integers(min_value=0, max_value=10**7))
def test_a_call_shorter_than_the_cap_never_costs_more_than_the_balance(
    balance: int, rate: Rate, scheme: tuple[int, int], talk_ms: int
) -> None:
    minimum_s, increment_s = scheme
    cap = max_talk_seconds(balance, rate, minimum_s=minimum_s, increment_s=increment_s)
    talk = min(timedelta(milliseconds=talk_ms), timedelta(seconds=cap))
    rated = charge(rate, talk, cap_s=cap, minimum_s=minimum_s, increment_s=increment_s)
    assert rated.cost_minor <= balance


@given(balances, rates, schemes)
def test_the_cap_is_the_longest_call_the_balance_pays_for(
    balance: int, rate: Rate, scheme: tuple[int, int]
) -> None:
    """Not a cap of zero that trivially passes: one increment more would cost too much."""
    minimum_s, increment_s = scheme
    cap = max_talk_seconds(balance, rate, minimum_s=minimum_s, increment_s=increment_s)
    over = cost(rate, cap + increment_s, minimum_s=minimum_s, increment_s=increment_s)
    assert over > balance


@given(rates, st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_an_uncapped_call_is_rounded_up_to_the_next_second(
    rate: Rate, seconds: int, micros: int
) -> None:
    talk = timedelta(seconds=seconds, microseconds=micros)
    expected = seconds + (1 if micros % 1_000_000 else 0) + micros // 1_000_000
    assert chargeable_seconds(talk, cap_s=None) == expected
    assert charge(rate, talk, cap_s=None).cost_minor == cost(rate, expected)


def test_the_issue_17_call_is_charged_the_one_unit_it_was_allowed() -> None:
    rate = Rate("33", 2, "EUR")
    cap = max_talk_seconds(1, rate)
    assert cap == 30
    rated = charge(rate, timedelta(seconds=30, milliseconds=6), cap_s=cap)
    assert (rated.talk_seconds, rated.billed_seconds, rated.cost_minor) == (30, 30, 1)


def test_a_fraction_of_a_second_under_the_cap_still_rounds_up() -> None:
    assert chargeable_seconds(timedelta(seconds=12, microseconds=1), cap_s=30) == 13
    assert chargeable_seconds(timedelta(microseconds=1), cap_s=30) == 1


def test_no_talk_is_free_and_a_negative_clock_step_is_not_a_refund() -> None:
    assert chargeable_seconds(timedelta(0), cap_s=30) == 0
    assert chargeable_seconds(timedelta(milliseconds=-5), cap_s=None) == 0
    assert billed_seconds(0, minimum_s=60, increment_s=60) == 0


def test_timezone_aware_timestamps_measure_the_same_talk() -> None:
    answered = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    ended = answered + timedelta(seconds=30, milliseconds=6)
    assert chargeable_seconds(ended - answered, cap_s=30) == 30
