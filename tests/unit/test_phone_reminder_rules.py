"""Phone reminders, the pure rules: contact phones, call hours, retries, the notice."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.phone_reminders import (
    AttemptOutcome,
    CallHours,
    ReminderState,
    RetryPolicy,
    after_attempt,
    may_call,
    next_call_time,
    notice_media,
    outcome_of,
    parse_contact_phone,
)

BERLIN = parse_contact_phone("+4930123456")
HOURS = CallHours(9, 20)


def berlin(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, tzinfo=ZoneInfo("Europe/Berlin"))


def test_a_contact_phone_is_e164_valid_and_knows_its_country_and_zone() -> None:
    assert (BERLIN.e164, BERLIN.region, BERLIN.time_zones) == (
        "+4930123456", "DE", ("Europe/Berlin",),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "why"),
    [("030123456", "E.164"), ("+49 30 123456", "E.164"), ("+4930", "not a valid"),
     ("+999123456789", "not a phone number"), ("tel:+4930123456", "E.164"), ("", "E.164")],
)  # fmt: skip
def test_a_contact_phone_that_is_not_a_valid_e164_number_is_refused(raw: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        parse_contact_phone(raw)


def test_no_call_before_nine_or_from_eight_pm_local_time() -> None:
    assert not may_call(BERLIN, berlin(8, 59), HOURS)
    assert may_call(BERLIN, berlin(9), HOURS)
    assert may_call(BERLIN, berlin(19, 59), HOURS)
    assert not may_call(BERLIN, berlin(20), HOURS)


def test_the_same_instant_is_day_in_new_york_and_night_in_berlin() -> None:
    new_york = parse_contact_phone("+12125551234")
    instant = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 00:00 Berlin, 18:00 New York
    assert may_call(new_york, instant, HOURS) and not may_call(BERLIN, instant, HOURS)


def test_a_number_of_a_country_of_many_zones_waits_until_it_is_day_in_all() -> None:
    russia = parse_contact_phone("+79161234567")  # a mobile: every Russian zone
    assert len(russia.time_zones) > 1
    noon_moscow = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # 12:00 Moscow, 21:00 Kamchatka
    assert not may_call(russia, noon_moscow, HOURS)


def test_a_night_call_is_moved_to_nine_in_the_morning_local_time() -> None:
    at = next_call_time(BERLIN, berlin(2, 30), HOURS)
    assert at == berlin(9) and at.astimezone(UTC).hour == 8


instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
phones = st.sampled_from(["+4930123456", "+12125551234", "+61291234567", "+819012345678"])
windows = st.tuples(st.integers(0, 22), st.integers(2, 24)).filter(lambda w: w[1] - w[0] >= 2)


@given(instants, phones, windows)
def test_the_next_call_time_is_allowed_and_no_earlier_whole_hour_was(
    now: datetime, raw: str, window: tuple[int, int]
) -> None:
    phone, hours = parse_contact_phone(raw), CallHours(*window)
    at = next_call_time(phone, now, hours)
    assert at >= now and may_call(phone, at, hours)
    probe = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    while probe < at:
        assert not may_call(phone, probe, hours)
        probe += timedelta(hours=1)


def test_causes_say_busy_no_answer_or_failed() -> None:
    assert outcome_of(True, 16) is AttemptOutcome.ANSWERED
    assert outcome_of(False, 17) is AttemptOutcome.BUSY
    assert outcome_of(False, 19) is AttemptOutcome.NO_ANSWER
    assert outcome_of(False, 18) is AttemptOutcome.NO_ANSWER
    assert outcome_of(False, 34) is AttemptOutcome.FAILED
    assert outcome_of(False, None) is AttemptOutcome.FAILED


NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)
POLICY = RetryPolicy(3, timedelta(minutes=30))


def test_answered_is_done_busy_is_tried_again_later_and_the_last_try_gives_up() -> None:
    assert after_attempt(AttemptOutcome.ANSWERED, 1, NOW, POLICY).state is ReminderState.DONE
    busy = after_attempt(AttemptOutcome.BUSY, 1, NOW, POLICY)
    assert busy.state is ReminderState.PENDING and busy.next_attempt_at == NOW + POLICY.retry_after
    assert after_attempt(AttemptOutcome.NO_ANSWER, 3, NOW, POLICY).state is ReminderState.GAVE_UP


@given(st.lists(st.sampled_from(list(AttemptOutcome)), min_size=1, max_size=20),
       st.integers(1, 10))  # fmt: skip
def test_a_reminder_is_never_called_more_than_the_bounded_attempts(
    outcomes: list[AttemptOutcome], max_attempts: int
) -> None:
    policy = RetryPolicy(max_attempts, timedelta(minutes=5))
    made, state = 0, ReminderState.PENDING
    for outcome in outcomes:
        if state is not ReminderState.PENDING:
            break
        made += 1
        state = after_attempt(outcome, made, NOW, policy).state
    assert made <= max_attempts
    if AttemptOutcome.ANSWERED in outcomes[:made]:
        assert state is ReminderState.DONE and outcomes[made - 1] is AttemptOutcome.ANSWERED


def test_the_notice_is_the_prompt_then_number_amount_and_date_in_asterisk_sounds() -> None:
    media = notice_media("/srv/media/prompts/reminder-1", "+4930123456", 1250, "EUR",
                         date(2026, 12, 20))  # fmt: skip
    assert media == [
        "sound:/srv/media/prompts/reminder-1",
        "digits:4930123456",
        "number:12",
        "number:50",
        "sound:digits/mon-11",
        "sound:digits/h-20",
    ]
    whole = notice_media("/p", "+4930123456", 500, "EUR", date(2027, 1, 1))
    assert whole[2:] == ["number:5", "sound:digits/mon-0", "sound:digits/h-1"]
    assert notice_media("/p", "+81312345678", 700, "JPY", date(2027, 1, 31))[2] == "number:700"
    with pytest.raises(InvalidInput):
        notice_media("/p,evil", "+4930123456", 1, "EUR", date(2027, 1, 1))
