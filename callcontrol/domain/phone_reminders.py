"""Low-balance reminders by phone: who is called, when, what is said, how often.

Pure: no clock (every decision takes ``now``), no I/O. Rules kept here:

- the contact phone is an E.164 number that ``phonenumbers`` holds valid; its
  country decides the time zone(s) the customer lives in;
- no call at night: a call is placed only when the local hour is inside
  ``[call_from_hour, call_until_hour)`` in **every** time zone of the number
  (a number of a country spanning several zones must be day in all of them);
  otherwise the attempt waits for the next local morning;
- one reminder per account and charge date (the fee), never two; it is tried
  at most ``max_attempts`` times: busy, not answered or failed -> tried again
  ``retry_after_s`` later; answered -> done; out of attempts -> given up;
- what is said: the operator's prompt, then the number (digit by digit), the
  amount (whole units, then the minor units if any) and the charge date
  (month and ordinal day), all with Asterisk's own sound files, so no network
  service speaks for us.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as pn_timezone

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.money import minor_unit_exponent

CAUSE_USER_BUSY = 17
CAUSE_NO_USER_RESPONSE = 18
CAUSE_NO_ANSWER = 19


class AttemptOutcome(StrEnum):
    ANSWERED = "answered"  # the notice was played
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"


class ReminderState(StrEnum):
    PENDING = "pending"
    DONE = "done"  # answered: the customer heard it
    GAVE_UP = "gave_up"  # every attempt failed


@dataclass(frozen=True, slots=True)
class ContactPhone:
    e164: str
    region: str  # ISO 3166 alpha-2
    time_zones: tuple[str, ...]


def parse_contact_phone(raw: str) -> ContactPhone:
    """A valid E.164 number (``+`` and digits), else ``InvalidInput`` saying why."""
    text = raw.strip()
    if not text.startswith("+") or not text[1:].isdigit() or not text.isascii():
        raise InvalidInput(f"a contact phone is written in E.164, e.g. +4930123456, not {raw!r}")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(f"not a phone number: {raw!r} ({exc})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput(f"{raw!r} is not a valid phone number of any country")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(parsed) or "ZZ"
    zones = tuple(z for z in pn_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown")
    return ContactPhone(e164, region, zones or ("UTC",))


@dataclass(frozen=True, slots=True)
class CallHours:
    from_hour: int = 9
    until_hour: int = 20  # exclusive; 24 = until midnight

    def allows(self, local: datetime) -> bool:
        return self.from_hour <= local.hour < self.until_hour


def may_call(phone: ContactPhone, now: datetime, hours: CallHours) -> bool:
    """Day in every time zone of the phone's country (``now`` is aware)."""
    return all(hours.allows(now.astimezone(ZoneInfo(zone))) for zone in phone.time_zones)


def next_call_time(phone: ContactPhone, now: datetime, hours: CallHours) -> datetime:
    """The first whole hour from ``now`` at which ``may_call`` holds (``now`` if it does)."""
    if may_call(phone, now, hours):
        return now
    probe = now.replace(minute=0, second=0, microsecond=0)
    for _ in range(48):
        probe += timedelta(hours=1)
        if may_call(phone, probe, hours):
            return probe
    raise InvalidInput(f"no hour of the day is allowed for {phone.e164} with {hours}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    retry_after: timedelta = timedelta(minutes=30)


def outcome_of(answered: bool, cause: int | None) -> AttemptOutcome:
    if answered:
        return AttemptOutcome.ANSWERED
    if cause == CAUSE_USER_BUSY:
        return AttemptOutcome.BUSY
    if cause in (CAUSE_NO_ANSWER, CAUSE_NO_USER_RESPONSE):
        return AttemptOutcome.NO_ANSWER
    return AttemptOutcome.FAILED


@dataclass(frozen=True, slots=True)
class AfterAttempt:
    state: ReminderState
    next_attempt_at: datetime | None


def after_attempt(
    outcome: AttemptOutcome, attempts_made: int, now: datetime, policy: RetryPolicy
) -> AfterAttempt:
    """What becomes of the reminder once attempt number ``attempts_made`` ended."""
    if outcome is AttemptOutcome.ANSWERED:
        return AfterAttempt(ReminderState.DONE, None)
    if attempts_made >= policy.max_attempts:
        return AfterAttempt(ReminderState.GAVE_UP, None)
    return AfterAttempt(ReminderState.PENDING, now + policy.retry_after)


def notice_media(
    prompt_sound: str, number_e164: str, amount_minor: int, currency: str, due_on: date
) -> list[str]:
    """ARI media URIs of the notice, played in one request in this order.

    ``prompt_sound`` is the prompt's path as Asterisk sees it, without ``.wav``.
    """
    if "," in prompt_sound:
        raise InvalidInput("a prompt path must not contain a comma (ARI separates media by it)")
    exponent = minor_unit_exponent(currency)
    whole, minor = divmod(max(0, amount_minor), 10**exponent)
    media = [f"sound:{prompt_sound}", f"digits:{number_e164.lstrip('+')}", f"number:{whole}"]
    if minor:
        media.append(f"number:{minor}")
    media += [f"sound:digits/mon-{due_on.month - 1}", f"sound:digits/h-{due_on.day}"]
    return media
