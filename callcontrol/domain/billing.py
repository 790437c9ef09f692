"""Monthly rent, suspension, disconnection, reminders, discounts and refunds.

Pure decisions over dates and integer minor units; the daily billing job and the
ledger (with a UNIQUE idempotency key) live at the edge. Rules kept here:

- **Charge day.** The monthly fee falls on the activation day-of-month; in a
  month without that day, on the month's last day (activated 31 Jan -> 28/29 Feb,
  31 Mar, 30 Apr ...). It is always derived from the *activation* day, never
  from the previous charge, so a short month does not drag later charges
  earlier, and late payment never moves it.
- **First charge.** The activation day itself is a charge date: the first month
  is charged at activation (``lifecycle`` emits ``ChargeFirstMonth`` with the
  same key scheme). The daily run charges the dates strictly after activation.
- **Periods.** A period runs from a charge date to the day before the next one,
  both inclusive; its key is ``monthly:<number_id>:<period start ISO>``.
- **Who is charged.** Active and suspended numbers: a suspended number still
  belongs to the customer, and "paying the debt renews from the activation
  day", so the months spent suspended are owed. A number the customer deleted
  (``deleted_on``) is charged for every period starting on or before the
  deletion day; deleted at least one day before a charge day, it is not charged
  for that day. Other states (disconnected for non-payment, pending, in the
  pool) are not charged. A zero fee produces no charge.
- **Catch-up.** The run produces every charge date in ``(since, today]``, so a
  run after downtime charges each missed period, each with its own key;
  re-running (or running with ``since=None``) repeats keys the ledger refuses.
- **Suspension.** Active with balance < 0 -> suspended; suspended with balance
  > 0 -> active. A balance of exactly 0 changes nothing: it is neither negative
  (so no suspension) nor positive (so no reactivation) -- the rules' own words.
- **Disconnection.** After ``grace_days`` whole days suspended.
- **Reminders.** Once per charge date, when the balance will not cover the
  fees due that day and the day is at most ``days_ahead`` away.
- **Discounts.** Prepaying 3, 6 or 12 months (default 5/10/15 %); buying 5 or
  more numbers at once (negotiated %). Discounts are rounded half up, once.
- **Refunds.** Within 2 working days (48 h of Monday-Friday time, weekends not
  counted, public holidays not known here) of the order.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from types import MappingProxyType
from typing import Final

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.money import apply_discount, validate_currency, validate_minor
from callcontrol.domain.vocabulary import LedgerKind, NumberState

PREPAY_DISCOUNTS_PCT: Final[Mapping[int, int]] = MappingProxyType({3: 5, 6: 10, 12: 15})
BULK_PURCHASE_MIN_NUMBERS: Final = 5
REFUND_WINDOW_WORKING_DAYS: Final = 2
_CHARGED_STATES: Final = frozenset({NumberState.ACTIVE, NumberState.SUSPENDED})


# -- charge dates ---------------------------------------------------------------------------


def charge_day(activated_on: date, year: int, month: int) -> date:
    """The charge date in ``year``-``month``: the activation day, or the month's last day."""
    last_day = calendar.monthrange(year, month)[1]
    return date(year, month, min(activated_on.day, last_day))


def _month_after(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _month_before(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def next_charge_date(activated_on: date, after: date) -> date:
    """The first charge date strictly after ``after`` (the activation day counts)."""
    if after < activated_on:
        return activated_on
    this_month = charge_day(activated_on, after.year, after.month)
    if this_month > after:
        return this_month
    return charge_day(activated_on, *_month_after(after.year, after.month))


def last_charge_date(activated_on: date, on: date) -> date:
    """The latest charge date on or before ``on`` (``on`` must not precede activation)."""
    if on < activated_on:
        raise InvalidInput(f"{on} is before the activation day {activated_on}")
    this_month = charge_day(activated_on, on.year, on.month)
    if this_month <= on:
        return this_month
    return charge_day(activated_on, *_month_before(on.year, on.month))


def iter_charge_dates(activated_on: date, start: date, end: date) -> Iterator[date]:
    """Charge dates ``d`` with ``start <= d <= end``, ascending."""
    current = next_charge_date(activated_on, start - timedelta(days=1))
    while current <= end:
        yield current
        current = charge_day(activated_on, *_month_after(current.year, current.month))


def charge_dates_between(activated_on: date, start: date, end: date) -> list[date]:
    """Charge dates in ``[start, end]`` (both inclusive), ascending."""
    return list(iter_charge_dates(activated_on, start, end))


def period_for(activated_on: date, on: date) -> tuple[date, date]:
    """The monthly period containing ``on``: ``(first day, last day)``, both inclusive."""
    start = last_charge_date(activated_on, on)
    return start, next_charge_date(activated_on, start) - timedelta(days=1)


def monthly_charge_key(number_id: int, period_start: date) -> str:
    """The ledger idempotency key of one month's rent: ``monthly:<id>:<start ISO>``."""
    return f"monthly:{number_id}:{period_start.isoformat()}"


# -- the daily run --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BillableNumber:
    """What the daily run needs to know about one rented number."""

    number_id: int
    account_id: int
    activated_on: date
    monthly_fee_minor: int
    currency: str
    state: NumberState
    deleted_on: date | None = None  # the day the customer deleted the number

    def __post_init__(self) -> None:
        if validate_minor(self.monthly_fee_minor, "monthly fee") < 0:
            raise InvalidInput(f"monthly fee must not be negative: {self.monthly_fee_minor}")
        validate_currency(self.currency)


@dataclass(frozen=True, slots=True)
class MonthlyCharge:
    """One month's rent to write to the ledger (the key makes the write idempotent)."""

    number_id: int
    account_id: int
    amount_minor: int
    currency: str
    period_start: date
    period_end: date
    idempotency_key: str
    kind: LedgerKind = LedgerKind.MONTHLY_FEE


def due_monthly_charges(
    numbers: Iterable[BillableNumber], today: date, *, since: date | None = None
) -> list[MonthlyCharge]:
    """Every monthly charge due in ``(since, today]`` (all since activation if ``since``
    is None), one per period, for the numbers that are charged.

    ``since`` is the last day a previous run completed; pass it to avoid re-emitting
    old keys. Re-emitted keys are harmless when the ledger enforces them unique.
    """
    charges: list[MonthlyCharge] = []
    for number in numbers:
        charges.extend(_charges_for(number, today, since))
    return charges


def _charges_for(
    number: BillableNumber, today: date, since: date | None
) -> Iterator[MonthlyCharge]:
    if number.monthly_fee_minor == 0:
        return
    if number.state not in _CHARGED_STATES and number.deleted_on is None:
        return
    # The activation day is charged by the activation itself, never by the run.
    first = number.activated_on + timedelta(days=1)
    if since is not None:
        first = max(first, since + timedelta(days=1))
    last = today if number.deleted_on is None else min(today, number.deleted_on)
    for start in iter_charge_dates(number.activated_on, first, last):
        yield MonthlyCharge(
            number_id=number.number_id,
            account_id=number.account_id,
            amount_minor=number.monthly_fee_minor,
            currency=number.currency,
            period_start=start,
            period_end=next_charge_date(number.activated_on, start) - timedelta(days=1),
            idempotency_key=monthly_charge_key(number.number_id, start),
        )


# -- suspension, disconnection, reminders ---------------------------------------------------


def after_balance_change(state: NumberState, balance_minor: int) -> NumberState:
    """The state a number should be in once its owner's balance is ``balance_minor``.

    Active and negative -> suspended; suspended and positive (> 0) -> active;
    anything else (including a balance of exactly 0) keeps its state.
    """
    if state is NumberState.ACTIVE and balance_minor < 0:
        return NumberState.SUSPENDED
    if state is NumberState.SUSPENDED and balance_minor > 0:
        return NumberState.ACTIVE
    return state


def should_disconnect(suspended_since: date, today: date, grace_days: int) -> bool:
    """True once a number has been suspended for ``grace_days`` whole days."""
    if grace_days < 0:
        raise InvalidInput(f"grace_days must not be negative: {grace_days}")
    return (today - suspended_since).days >= grace_days


def reminder_due(
    balance_minor: int,
    upcoming_fees_minor: int,
    next_charge: date,
    today: date,
    days_ahead: int,
    last_reminder_for: date | None,
) -> bool:
    """Whether to remind: the balance won't cover the fees due on ``next_charge``
    (it would go below zero), that day is 0..``days_ahead`` days away, and no
    reminder was sent yet for that charge date."""
    if days_ahead < 0:
        raise InvalidInput(f"days_ahead must not be negative: {days_ahead}")
    if balance_minor >= upcoming_fees_minor:
        return False
    if not 0 <= (next_charge - today).days <= days_ahead:
        return False
    return last_reminder_for != next_charge


# -- discounts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrepayPrice:
    months: int
    discount_pct: int
    gross_minor: int  # months x monthly fee
    discount_minor: int
    total_minor: int  # what the customer pays


def prepay_price(
    monthly_fee_minor: int, months: int, discounts: Mapping[int, int] = PREPAY_DISCOUNTS_PCT
) -> PrepayPrice:
    """The price of paying ``months`` ahead; only the periods in ``discounts`` exist."""
    if validate_minor(monthly_fee_minor, "monthly fee") < 0:
        raise InvalidInput(f"monthly fee must not be negative: {monthly_fee_minor}")
    if months not in discounts:
        offered = ", ".join(str(m) for m in sorted(discounts))
        raise InvalidInput(f"prepayment is offered for {offered} months, not {months}")
    pct = discounts[months]
    gross = monthly_fee_minor * months
    total, discount = apply_discount(gross, pct)
    return PrepayPrice(months, pct, gross, discount, total)


def bulk_purchase_discount(count: int, negotiated_pct: int) -> int:
    """The discount percentage for buying ``count`` numbers at once: the negotiated
    one from 5 numbers on, 0 below."""
    if count < 0:
        raise InvalidInput(f"count must not be negative: {count}")
    if not 0 <= negotiated_pct <= 100:
        raise InvalidInput(f"negotiated_pct must be between 0 and 100: {negotiated_pct}")
    return negotiated_pct if count >= BULK_PURCHASE_MIN_NUMBERS else 0


# -- refunds --------------------------------------------------------------------------------


def refund_allowed(ordered_at: datetime, now: datetime, tz: tzinfo | None = None) -> bool:
    """Whether an order may still be cancelled and refunded: at most 2 working days
    (48 hours of Monday-Friday wall-clock time, in ``tz`` or else ``ordered_at``'s
    zone) have passed since ``ordered_at``. Both datetimes must be tz-aware."""
    for name, value in (("ordered_at", ordered_at), ("now", now)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"{name} must be timezone-aware: {value!r}")
    if now < ordered_at:
        raise InvalidInput(f"now ({now}) is before the order ({ordered_at})")
    zone = tz if tz is not None else ordered_at.tzinfo
    start = ordered_at.astimezone(zone).replace(tzinfo=None)
    deadline = _add_working_time(start, timedelta(days=REFUND_WINDOW_WORKING_DAYS))
    return now.astimezone(zone).replace(tzinfo=None) <= deadline


def _add_working_time(start: datetime, amount: timedelta) -> datetime:
    """``start`` plus ``amount`` of Monday-Friday time (naive wall-clock datetimes)."""
    cursor, remaining = start, amount
    while True:
        if cursor.weekday() >= 5:  # Saturday, Sunday: the clock waits for Monday
            cursor = datetime.combine(cursor.date() + timedelta(days=7 - cursor.weekday()), time())
            continue
        midnight = datetime.combine(cursor.date() + timedelta(days=1), time())
        if cursor + remaining <= midnight:
            return cursor + remaining
        remaining -= midnight - cursor
        cursor = midnight
