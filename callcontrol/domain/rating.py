"""Per-minute rating of PSTN legs (forwarding to mobiles and landlines, outbound).

Rules kept here:

- a rate applies to every E.164 number starting with its prefix (digits of the
  country code and beyond); the longest matching prefix wins. The table is
  indexed once by prefix length, so a lookup is at most one dict probe per
  distinct length (a handful), whatever the size of the table;
- a call is billed ``minimum_s`` seconds at least, then in steps of
  ``increment_s`` seconds (the usual "60/60", "60/1", "30/6", "1/1" schemes;
  the default here is plain per-second billing, ``0/1``). An unanswered call
  (0 seconds) costs nothing;
- the price ``rate_per_minute_minor x billed_seconds / 60`` is rounded UP to
  the next whole minor unit, once per call: the provider never undercharges a
  fraction and every amount stays an int;
- ``max_talk_seconds`` is the longest call the balance pays for under the same
  scheme (its cost never exceeds the balance; one second more would); it caps a
  bridged PSTN leg. A balance <= 0 pays for nothing; a free rate is capped at
  ``free_cap_s`` so no bridge runs forever;
- THE ROUNDING RULE (``chargeable_seconds``, the only place a measured duration
  becomes seconds): the measured talk time is rounded UP to a whole second,
  then limited to the cap the leg was given. The cap is our promise to the
  customer; the few ms Asterisk needs to tear a capped leg down (30.006 s for a
  30 s cap) are the provider's, never the customer's. So a call cut by the cap
  costs at most the balance it was allowed to spend (``charge`` composes the
  two rules; the CDR writer and the cap use nothing else).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.money import validate_currency, validate_minor

FREE_RATE_CAP_S: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class Rate:
    prefix: str  # digits only, no "+"
    rate_per_minute_minor: int
    currency: str

    def __post_init__(self) -> None:
        if not self.prefix.isdigit() or not self.prefix.isascii():
            raise InvalidInput(f"a rate prefix must be digits, got {self.prefix!r}")
        if validate_minor(self.rate_per_minute_minor, "rate per minute") < 0:
            raise InvalidInput(f"a rate must not be negative: {self.rate_per_minute_minor}")
        validate_currency(self.currency)


class RateTable:
    """Rates by prefix, looked up by longest prefix match on an E.164 number."""

    __slots__ = ("_by_length", "_lengths")

    def __init__(self, rates: Iterable[Rate]) -> None:
        by_length: dict[int, dict[str, Rate]] = {}
        for rate in rates:
            same_length = by_length.setdefault(len(rate.prefix), {})
            if rate.prefix in same_length:
                raise InvalidInput(f"prefix {rate.prefix} appears twice in the rate table")
            same_length[rate.prefix] = rate
        self._by_length = by_length
        self._lengths = tuple(sorted(by_length, reverse=True))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, int, str]]) -> RateTable:
        """From ``(prefix digits, rate per minute in minor units, currency)`` rows."""
        return cls(Rate(prefix, rate, currency) for prefix, rate, currency in rows)

    def lookup(self, e164: str) -> Rate | None:
        """The rate for ``e164`` (``+4930...`` or ``4930...``), None when none matches."""
        digits = e164[1:] if e164.startswith("+") else e164
        if not digits.isdigit() or not digits.isascii():
            raise InvalidInput(f"not an E.164 number: {e164!r}")
        for length in self._lengths:
            if length <= len(digits):
                rate = self._by_length[length].get(digits[:length])
                if rate is not None:
                    return rate
        return None

    def __len__(self) -> int:
        return sum(len(rates) for rates in self._by_length.values())


def billed_seconds(talk_seconds: int, *, minimum_s: int = 0, increment_s: int = 1) -> int:
    """Seconds charged for ``talk_seconds`` of talk: 0 if none, else at least the
    minimum, rounded up to a whole number of increments."""
    _check_scheme(minimum_s, increment_s)
    if talk_seconds <= 0:
        return 0
    seconds = max(talk_seconds, minimum_s)
    return -(-seconds // increment_s) * increment_s


def cost(rate: Rate, talk_seconds: int, *, minimum_s: int = 0, increment_s: int = 1) -> int:
    """The price in minor units of a call of ``talk_seconds``, rounded up."""
    billed = billed_seconds(talk_seconds, minimum_s=minimum_s, increment_s=increment_s)
    return -(-rate.rate_per_minute_minor * billed // 60)


def max_talk_seconds(
    balance_minor: int,
    rate: Rate,
    *,
    minimum_s: int = 0,
    increment_s: int = 1,
    free_cap_s: int = FREE_RATE_CAP_S,
) -> int:
    """The longest call (whole seconds) whose ``cost`` does not exceed the balance."""
    _check_scheme(minimum_s, increment_s)
    if balance_minor <= 0:
        return 0
    if rate.rate_per_minute_minor == 0:
        return free_cap_s
    # cost <= balance  <=>  rate x billed / 60 <= balance  <=>  billed <= 60 x balance / rate
    affordable = balance_minor * 60 // rate.rate_per_minute_minor
    seconds = affordable // increment_s * increment_s
    first_step = billed_seconds(1, minimum_s=minimum_s, increment_s=increment_s)
    return seconds if seconds >= first_step else 0


def chargeable_seconds(talk: timedelta, *, cap_s: int | None) -> int:
    """Whole seconds of ``talk`` that may be charged: rounded up, never past ``cap_s``.

    ``cap_s`` is the leg's ``max_talk_seconds`` (None: the leg had no cap, e.g. a
    free destination). Exact integer arithmetic on microseconds, no float.
    """
    micros = talk // timedelta(microseconds=1)
    if micros <= 0:
        return 0
    seconds = -(-micros // 1_000_000)
    return seconds if cap_s is None else min(seconds, max(cap_s, 0))


@dataclass(frozen=True, slots=True)
class Charge:
    talk_seconds: int  # after the rounding rule and the cap
    billed_seconds: int  # after the minimum and the increment
    cost_minor: int


def charge(
    rate: Rate,
    talk: timedelta,
    *,
    cap_s: int | None,
    minimum_s: int = 0,
    increment_s: int = 1,
) -> Charge:
    """What a leg of measured ``talk`` costs: the rounding rule, then ``cost``."""
    seconds = chargeable_seconds(talk, cap_s=cap_s)
    return Charge(
        seconds,
        billed_seconds(seconds, minimum_s=minimum_s, increment_s=increment_s),
        cost(rate, seconds, minimum_s=minimum_s, increment_s=increment_s),
    )


def _check_scheme(minimum_s: int, increment_s: int) -> None:
    if minimum_s < 0 or increment_s < 1:
        raise InvalidInput(
            f"billing needs minimum_s >= 0 and increment_s >= 1, got {minimum_s}/{increment_s}"
        )
