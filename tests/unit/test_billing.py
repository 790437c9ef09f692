"""Billing: charge dates, the daily run, suspension, reminders, discounts, refunds.

Pure functions over dates and ints: no I/O, no mocks.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcontrol.domain.billing import (
    BillableNumber,
    MonthlyCharge,
    after_balance_change,
    bulk_purchase_discount,
    charge_dates_between,
    charge_day,
    due_monthly_charges,
    next_charge_date,
    period_for,
    prepay_price,
    refund_allowed,
    reminder_due,
    should_disconnect,
)
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.vocabulary import LedgerKind, NumberState

d = date


def rented(
    activated_on: date,
    *,
    state: NumberState = NumberState.ACTIVE,
    deleted_on: date | None = None,
    fee: int = 500,
    number_id: int = 7,
) -> BillableNumber:
    return BillableNumber(number_id, 3, activated_on, fee, "EUR", state, deleted_on)


def starts(charges: list[MonthlyCharge]) -> list[date]:
    return [c.period_start for c in charges]


# -- charge day -----------------------------------------------------------------------------


def test_the_fee_falls_on_the_activation_day_of_each_month() -> None:
    assert charge_day(d(2026, 1, 20), 2026, 3) == d(2026, 3, 20)


@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [
        (2026, 2, d(2026, 2, 28)),
        (2028, 2, d(2028, 2, 29)),  # leap year
        (2026, 3, d(2026, 3, 31)),  # back to the 31st, not dragged to the 28th
        (2026, 4, d(2026, 4, 30)),
        (2026, 12, d(2026, 12, 31)),
    ],
)
def test_a_day_the_month_lacks_falls_on_the_months_last_day(
    year: int, month: int, expected: date
) -> None:
    assert charge_day(d(2026, 1, 31), year, month) == expected


def test_activated_on_29_february_is_charged_on_28_february_in_common_years() -> None:
    assert charge_day(d(2028, 2, 29), 2029, 2) == d(2029, 2, 28)
    assert charge_day(d(2028, 2, 29), 2029, 3) == d(2029, 3, 29)


def test_the_next_charge_after_december_is_in_january_of_the_next_year() -> None:
    assert next_charge_date(d(2025, 3, 15), d(2026, 12, 15)) == d(2027, 1, 15)
    assert next_charge_date(d(2025, 3, 15), d(2026, 12, 20)) == d(2027, 1, 15)


def test_the_next_charge_is_strictly_after_the_given_day() -> None:
    assert next_charge_date(d(2026, 1, 20), d(2026, 2, 19)) == d(2026, 2, 20)
    assert next_charge_date(d(2026, 1, 20), d(2026, 2, 20)) == d(2026, 3, 20)


def test_the_activation_day_is_the_first_charge_date() -> None:
    assert next_charge_date(d(2026, 1, 20), d(2026, 1, 19)) == d(2026, 1, 20)
    assert next_charge_date(d(2026, 1, 20), d(2025, 6, 1)) == d(2026, 1, 20)


def test_charge_dates_between_includes_both_ends_and_not_before_activation() -> None:
    assert charge_dates_between(d(2026, 1, 31), d(2025, 1, 1), d(2026, 4, 30)) == [
        d(2026, 1, 31),
        d(2026, 2, 28),
        d(2026, 3, 31),
        d(2026, 4, 30),
    ]


def test_a_period_runs_from_a_charge_day_to_the_day_before_the_next() -> None:
    assert period_for(d(2026, 1, 31), d(2026, 2, 10)) == (d(2026, 1, 31), d(2026, 2, 27))
    assert period_for(d(2026, 1, 31), d(2026, 2, 28)) == (d(2026, 2, 28), d(2026, 3, 30))
    assert period_for(d(2026, 1, 20), d(2026, 12, 25)) == (d(2026, 12, 20), d(2027, 1, 19))


def test_there_is_no_period_before_activation() -> None:
    with pytest.raises(InvalidInput, match="before the activation day"):
        period_for(d(2026, 1, 20), d(2026, 1, 19))


# -- the daily run --------------------------------------------------------------------------


def test_the_run_charges_a_number_on_its_charge_day_with_a_period_key() -> None:
    [charge] = due_monthly_charges([rented(d(2026, 1, 20))], d(2026, 2, 20), since=d(2026, 2, 19))
    assert charge == MonthlyCharge(
        number_id=7,
        account_id=3,
        amount_minor=500,
        currency="EUR",
        period_start=d(2026, 2, 20),
        period_end=d(2026, 3, 19),
        idempotency_key="monthly:7:2026-02-20",
        kind=LedgerKind.MONTHLY_FEE,
    )


def test_the_run_does_not_charge_the_activation_day_which_activation_paid() -> None:
    assert due_monthly_charges([rented(d(2026, 1, 20))], d(2026, 1, 20)) == []


def test_nothing_is_charged_between_charge_days() -> None:
    assert due_monthly_charges([rented(d(2026, 1, 20))], d(2026, 2, 21), since=d(2026, 2, 20)) == []


def test_a_number_activated_on_the_31st_is_charged_on_the_last_day_of_february() -> None:
    charges = due_monthly_charges([rented(d(2026, 1, 31))], d(2026, 2, 28), since=d(2026, 2, 27))
    assert starts(charges) == [d(2026, 2, 28)]


def test_a_suspended_number_is_still_charged() -> None:
    number = rented(d(2026, 1, 20), state=NumberState.SUSPENDED)
    assert starts(due_monthly_charges([number], d(2026, 2, 20))) == [d(2026, 2, 20)]


@pytest.mark.parametrize(
    "state",
    [NumberState.AVAILABLE, NumberState.PENDING, NumberState.DISCONNECTED, NumberState.TESTING],
)
def test_numbers_not_in_service_are_not_charged(state: NumberState) -> None:
    assert due_monthly_charges([rented(d(2026, 1, 20), state=state)], d(2026, 2, 20)) == []


def test_a_number_deleted_one_day_before_its_charge_day_is_not_charged() -> None:
    number = rented(d(2026, 1, 20), state=NumberState.DISCONNECTED, deleted_on=d(2026, 2, 19))
    assert due_monthly_charges([number], d(2026, 2, 20)) == []


def test_a_number_deleted_on_its_charge_day_is_charged() -> None:
    number = rented(d(2026, 1, 20), state=NumberState.DISCONNECTED, deleted_on=d(2026, 2, 20))
    assert starts(due_monthly_charges([number], d(2026, 2, 20))) == [d(2026, 2, 20)]


def test_a_deleted_number_is_never_charged_after_its_deletion() -> None:
    number = rented(d(2026, 1, 20), state=NumberState.DISCONNECTED, deleted_on=d(2026, 2, 25))
    assert starts(due_monthly_charges([number], d(2026, 6, 1))) == [d(2026, 2, 20)]


def test_a_free_number_produces_no_charge() -> None:
    assert due_monthly_charges([rented(d(2026, 1, 20), fee=0)], d(2026, 2, 20)) == []


def test_a_run_after_downtime_charges_every_missed_period_with_its_own_key() -> None:
    charges = due_monthly_charges([rented(d(2026, 1, 31))], d(2026, 5, 2), since=d(2026, 2, 1))
    assert [c.idempotency_key for c in charges] == [
        "monthly:7:2026-02-28",
        "monthly:7:2026-03-31",
        "monthly:7:2026-04-30",
    ]


def test_running_twice_on_the_same_day_repeats_the_same_keys() -> None:
    numbers = [rented(d(2026, 1, 20)), rented(d(2025, 11, 5), number_id=8)]
    first = due_monthly_charges(numbers, d(2026, 2, 20), since=d(2026, 2, 1))
    again = due_monthly_charges(numbers, d(2026, 2, 20), since=d(2026, 2, 1))
    assert first == again
    assert [c.idempotency_key for c in first] == ["monthly:7:2026-02-20", "monthly:8:2026-02-05"]


def test_a_run_with_since_equal_to_today_charges_nothing() -> None:
    assert due_monthly_charges([rented(d(2026, 1, 20))], d(2026, 2, 20), since=d(2026, 2, 20)) == []


def test_a_negative_fee_is_refused() -> None:
    with pytest.raises(InvalidInput):
        rented(d(2026, 1, 20), fee=-1)


# -- suspension, disconnection --------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "balance", "expected"),
    [
        (NumberState.ACTIVE, -1, NumberState.SUSPENDED),
        (NumberState.ACTIVE, 0, NumberState.ACTIVE),
        (NumberState.ACTIVE, 1, NumberState.ACTIVE),
        (NumberState.SUSPENDED, -1, NumberState.SUSPENDED),
        (NumberState.SUSPENDED, 0, NumberState.SUSPENDED),
        (NumberState.SUSPENDED, 1, NumberState.ACTIVE),
        (NumberState.PENDING, -100, NumberState.PENDING),
        (NumberState.DISCONNECTED, 100, NumberState.DISCONNECTED),
    ],
)
def test_a_negative_balance_suspends_and_only_a_positive_one_reactivates(
    state: NumberState, balance: int, expected: NumberState
) -> None:
    assert after_balance_change(state, balance) is expected


def test_a_suspended_number_is_disconnected_after_the_grace_days() -> None:
    since = d(2026, 3, 1)
    assert not should_disconnect(since, d(2026, 3, 14), grace_days=14)
    assert should_disconnect(since, d(2026, 3, 15), grace_days=14)
    assert should_disconnect(since, d(2026, 3, 1), grace_days=0)


def test_negative_grace_days_are_refused() -> None:
    with pytest.raises(InvalidInput):
        should_disconnect(d(2026, 3, 1), d(2026, 3, 1), grace_days=-1)


# -- reminders ------------------------------------------------------------------------------

CHARGE = d(2026, 3, 20)


def test_a_reminder_is_due_when_the_balance_will_not_cover_the_next_fee() -> None:
    assert reminder_due(499, 500, CHARGE, d(2026, 3, 17), days_ahead=3, last_reminder_for=None)


def test_no_reminder_when_the_balance_covers_the_fee_exactly() -> None:
    assert not reminder_due(500, 500, CHARGE, d(2026, 3, 17), 3, None)


def test_no_reminder_earlier_than_days_ahead() -> None:
    assert not reminder_due(0, 500, CHARGE, d(2026, 3, 16), 3, None)


def test_a_reminder_is_still_due_on_the_charge_day_itself() -> None:
    assert reminder_due(0, 500, CHARGE, CHARGE, 3, None)


def test_no_reminder_for_a_charge_day_already_past() -> None:
    assert not reminder_due(0, 500, CHARGE, d(2026, 3, 21), 3, None)


def test_a_reminder_is_never_sent_twice_for_the_same_charge_date() -> None:
    assert not reminder_due(0, 500, CHARGE, d(2026, 3, 18), 3, last_reminder_for=CHARGE)


def test_last_months_reminder_does_not_silence_this_months() -> None:
    assert reminder_due(0, 500, CHARGE, d(2026, 3, 18), 3, last_reminder_for=d(2026, 2, 20))


# -- discounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("months", "pct", "gross", "discount", "total"),
    [(3, 5, 3000, 150, 2850), (6, 10, 6000, 600, 5400), (12, 15, 12000, 1800, 10200)],
)
def test_prepaying_3_6_or_12_months_earns_the_discount(
    months: int, pct: int, gross: int, discount: int, total: int
) -> None:
    price = prepay_price(1000, months)
    assert (price.discount_pct, price.gross_minor, price.discount_minor, price.total_minor) == (
        pct,
        gross,
        discount,
        total,
    )


def test_a_prepay_discount_is_rounded_half_up() -> None:
    assert prepay_price(999, 3).discount_minor == 150  # 5 % of 2997 = 149.85


@pytest.mark.parametrize("months", [1, 2, 4, 24, 0])
def test_other_prepay_periods_are_refused(months: int) -> None:
    with pytest.raises(InvalidInput, match="3, 6, 12 months"):
        prepay_price(1000, months)


def test_negotiated_prepay_discounts_replace_the_defaults() -> None:
    assert prepay_price(1000, 12, {12: 20}).total_minor == 9600


def test_the_bulk_discount_starts_at_5_numbers_bought_at_once() -> None:
    assert bulk_purchase_discount(4, 12) == 0
    assert bulk_purchase_discount(5, 12) == 12
    assert bulk_purchase_discount(50, 12) == 12


# -- refunds --------------------------------------------------------------------------------

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_an_order_can_be_refunded_within_two_working_days() -> None:
    assert refund_allowed(MONDAY_10, MONDAY_10 + timedelta(days=2))
    assert not refund_allowed(MONDAY_10, MONDAY_10 + timedelta(days=2, seconds=1))


def test_the_weekend_does_not_count_towards_the_refund_window() -> None:
    friday_10 = datetime(2026, 3, 6, 10, 0, tzinfo=UTC)
    tuesday_10 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    assert refund_allowed(friday_10, tuesday_10)
    assert not refund_allowed(friday_10, tuesday_10 + timedelta(minutes=1))


def test_an_order_on_saturday_starts_its_window_on_monday() -> None:
    saturday = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    assert refund_allowed(saturday, datetime(2026, 3, 11, 0, 0, tzinfo=UTC))
    assert not refund_allowed(saturday, datetime(2026, 3, 11, 0, 1, tzinfo=UTC))


def test_working_days_are_counted_in_the_orders_time_zone() -> None:
    moscow = timezone(timedelta(hours=3))
    # Friday 23:30 UTC is already Saturday 02:30 in Moscow: the window starts Monday.
    ordered = datetime(2026, 3, 6, 23, 30, tzinfo=UTC).astimezone(moscow)
    assert refund_allowed(ordered, datetime(2026, 3, 11, 0, 0, tzinfo=moscow))
    tuesday_22_utc = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)  # Wednesday 01:00 in Moscow
    assert not refund_allowed(ordered, tuesday_22_utc)
    # Counted in UTC the order was on Friday: 30 min + Monday + 47.5 h -> Tuesday 23:30.
    assert refund_allowed(ordered, tuesday_22_utc, tz=UTC)


def test_naive_datetimes_are_refused_for_refunds() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        refund_allowed(datetime(2026, 3, 2, 10, 0), MONDAY_10)
    with pytest.raises(InvalidInput, match="timezone-aware"):
        refund_allowed(MONDAY_10, datetime(2026, 3, 2, 11, 0))


# -- properties -----------------------------------------------------------------------------

activation_days = st.dates(min_value=d(1990, 1, 1), max_value=d(2090, 12, 31))


@given(activation_days, st.integers(1990, 2100), st.integers(1, 12))
def test_a_charge_day_is_always_in_its_month_and_is_the_activation_day_when_it_exists(
    activated_on: date, year: int, month: int
) -> None:
    day = charge_day(activated_on, year, month)
    assert (day.year, day.month) == (year, month)
    following = d(year + 1, 1, 1) if month == 12 else d(year, month + 1, 1)
    assert day < following  # never after the month's end
    if activated_on.day <= (following - timedelta(days=1)).day:
        assert day.day == activated_on.day
    else:
        assert day == following - timedelta(days=1)


@given(activation_days, st.integers(1, 30))
def test_charge_dates_strictly_increase_and_fall_12_times_a_year(
    activated_on: date, years_later: int
) -> None:
    year = activated_on.year + years_later
    dates = charge_dates_between(activated_on, d(year, 1, 1), d(year, 12, 31))
    assert len(dates) == 12
    assert [x.month for x in dates] == list(range(1, 13))
    assert all(a < b for a, b in pairwise(dates))


@given(activation_days, st.integers(0, 4000))
def test_a_period_contains_its_day_and_the_next_period_starts_the_day_after(
    activated_on: date, offset: int
) -> None:
    on = activated_on + timedelta(days=offset)
    start, end = period_for(activated_on, on)
    assert start <= on <= end
    assert next_charge_date(activated_on, on) == end + timedelta(days=1)
    assert 27 <= (end - start).days <= 30


@settings(max_examples=200)
@given(
    activated_on=st.dates(min_value=d(2024, 1, 1), max_value=d(2026, 12, 31)),
    deleted_after=st.none() | st.integers(0, 900),
    runs=st.lists(st.tuples(st.integers(0, 120), st.booleans()), min_size=1, max_size=25),
)
def test_no_period_is_charged_twice_and_none_is_missed_whatever_the_run_dates(
    activated_on: date, deleted_after: int | None, runs: list[tuple[int, bool]]
) -> None:
    """Runs on increasing days, some crashing before recording completion; the
    ledger refuses duplicate keys. In the end every due period is in the ledger once."""
    deleted_on = None if deleted_after is None else activated_on + timedelta(days=deleted_after)
    number = rented(activated_on, deleted_on=deleted_on)
    ledger: dict[str, MonthlyCharge] = {}
    since: date | None = None
    today = activated_on
    for gap, crashed in runs:
        today += timedelta(days=gap)
        charges = due_monthly_charges([number], today, since=since)
        keys = [c.idempotency_key for c in charges]
        assert len(keys) == len(set(keys))
        for charge in charges:
            assert ledger.setdefault(charge.idempotency_key, charge) == charge
        if not crashed:
            since = today
    last = today if deleted_on is None else min(today, deleted_on)
    expected = charge_dates_between(activated_on, activated_on + timedelta(days=1), last)
    assert sorted(c.period_start for c in ledger.values()) == expected
