"""Phone reminders against the real database, with a scripted caller; the ARI caller
against recorded Asterisk events.

The worker's caller here answers as scripted (busy, no answer, answered ...) and
records what it was asked to play; the clock is moved by hand.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.ari.events import parse_event
from callcontrol.ari.models import Channel, Playback
from callcontrol.db.models import Account
from callcontrol.db.money_models import (
    AccountContact,
    PhoneReminder,
    PhoneReminderAttempt,
    ReminderPrompt,
)
from callcontrol.notify.reminder_calls import AriReminderCaller, CallResult
from callcontrol.services.billing_run import LowBalanceNotice
from callcontrol.services.phone_reminders import PhoneReminderQueue, PhoneReminderWorker
from callcontrol.settings import PhoneReminderSettings

Sessions = async_sessionmaker[AsyncSession]
SAMPLES = Path(__file__).parent.parent / "data" / "ari" / "samples" / "events"
DUE = date(2026, 12, 20)
DAY = datetime(2026, 12, 1, 10, tzinfo=UTC)  # 11:00 in Berlin
SETTINGS = PhoneReminderSettings(enabled=True, caller_id="+4930999000", max_attempts=3,
                                 retry_after_s=1800)  # fmt: skip


@dataclass
class Clock:
    now: datetime = DAY

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ScriptedCaller:
    results: list[CallResult]
    calls: list[tuple[str, str, list[str]]] = field(default_factory=list)
    delay_s: float = 0.0

    async def call(self, *, phone: str, channel_id: str, media: Sequence[str]) -> CallResult:
        self.calls.append((phone, channel_id, list(media)))
        await asyncio.sleep(self.delay_s)
        return self.results.pop(0) if self.results else CallResult(True, 16, True)


BUSY, NO_ANSWER, ANSWERED = CallResult(False, 17), CallResult(False, 19), CallResult(True, 16, True)


async def account(sessions: Sessions, phone: str | None = "+4930123456") -> int:
    async with sessions() as session, session.begin():
        row = Account(name="Acme", email="a@example.com", currency="EUR")
        session.add(row)
        await session.flush()
        if phone:
            session.add(AccountContact(account_id=row.id, phone=phone, updated_at=DAY))
        return row.id


async def prompt(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        session.add(ReminderPrompt(original_name="r.wav", stored_name="prompts/reminder-1.wav",
                                   size_bytes=1000, duration_ms=500, created_at=DAY))  # fmt: skip


def notice(account_id: int, due_on: date = DUE) -> LowBalanceNotice:
    return LowBalanceNotice(account_id, due_on, 100, 1250, "EUR", ("+4930777000",))


def worker(sessions: Sessions, caller: ScriptedCaller, clock: Clock,
           settings: PhoneReminderSettings = SETTINGS) -> PhoneReminderWorker:  # fmt: skip
    return PhoneReminderWorker(sessions=sessions, caller=caller, settings=settings,
                               prompt_root=Path("/srv/media"), clock=clock)  # fmt: skip


async def attempts(sessions: Sessions) -> list[tuple[int, str | None, int | None]]:
    async with sessions() as session:
        rows = await session.execute(
            sa.select(PhoneReminderAttempt.attempt, PhoneReminderAttempt.outcome,
                      PhoneReminderAttempt.cause).order_by(PhoneReminderAttempt.id)
        )  # fmt: skip
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def reminder(sessions: Sessions) -> PhoneReminder:
    async with sessions() as session:
        row = await session.scalar(sa.select(PhoneReminder))
        assert row is not None
        return row


async def test_a_notice_is_queued_once_per_fee_and_only_with_a_contact_phone(
    db_session: Sessions,
) -> None:
    queue = PhoneReminderQueue(sessions=db_session, clock=Clock())
    with_phone, without = await account(db_session), await account(db_session, phone=None)
    for _ in range(3):
        await queue.notify_low_balance(notice(with_phone))
    await queue.notify_low_balance(notice(without))
    await queue.notify_low_balance(notice(with_phone, due_on=DUE + timedelta(days=31)))
    async with db_session() as session:
        rows = (await session.execute(
            sa.select(PhoneReminder.account_id, PhoneReminder.due_on, PhoneReminder.amount_minor)
        )).all()  # fmt: skip
    assert sorted(rows) == [(with_phone, DUE, 1250), (with_phone, DUE + timedelta(days=31), 1250)]


async def test_busy_then_no_answer_then_answered_is_three_recorded_attempts_and_done(
    db_session: Sessions,
) -> None:
    clock, caller = Clock(), ScriptedCaller([BUSY, NO_ANSWER, ANSWERED])
    await prompt(db_session)
    await PhoneReminderQueue(sessions=db_session, clock=clock).notify_low_balance(
        notice(await account(db_session))
    )
    w = worker(db_session, caller, clock)
    assert await w.run_due() == 1
    assert await w.run_due() == 0, "not again before the retry delay"
    clock.now += timedelta(seconds=1800)
    assert await w.run_due() == 1
    clock.now += timedelta(seconds=1800)
    assert await w.run_due() == 1
    clock.now += timedelta(days=1)
    assert await w.run_due() == 0, "answered: never called again for this fee"
    assert await attempts(db_session) == [(1, "busy", 17), (2, "no_answer", 19),
                                          (3, "answered", 16)]  # fmt: skip
    assert (await reminder(db_session)).state == "done"
    phone, _, media = caller.calls[0]
    assert phone == "+4930123456"
    assert media == ["sound:/srv/media/prompts/reminder-1", "digits:4930777000", "number:12",
                     "number:50", "sound:digits/mon-11", "sound:digits/h-20"]  # fmt: skip


async def test_after_the_last_attempt_the_reminder_is_given_up(db_session: Sessions) -> None:
    clock, caller = Clock(), ScriptedCaller([BUSY] * 10)
    await prompt(db_session)
    await PhoneReminderQueue(sessions=db_session, clock=clock).notify_low_balance(
        notice(await account(db_session))
    )
    w = worker(db_session, caller, clock)
    for _ in range(6):
        await w.run_due()
        clock.now += timedelta(hours=1)
    assert len(caller.calls) == 3
    assert (await reminder(db_session)).state == "gave_up"


async def test_no_call_at_night_in_the_phones_country_but_the_next_morning(
    db_session: Sessions,
) -> None:
    night = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)  # 02:30 in Berlin
    clock, caller = Clock(night), ScriptedCaller([])
    await prompt(db_session)
    await PhoneReminderQueue(sessions=db_session, clock=clock).notify_low_balance(
        notice(await account(db_session))
    )
    w = worker(db_session, caller, clock)
    assert await w.run_due() == 0 and caller.calls == []
    morning = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
    assert (await reminder(db_session)).next_attempt_at == morning
    clock.now = morning - timedelta(minutes=1)
    assert await w.run_due() == 0
    clock.now = morning
    assert await w.run_due() == 1


async def test_without_a_prompt_nobody_is_called_and_no_attempt_is_spent(
    db_session: Sessions,
) -> None:
    clock, caller = Clock(), ScriptedCaller([])
    await PhoneReminderQueue(sessions=db_session, clock=clock).notify_low_balance(
        notice(await account(db_session))
    )
    assert await worker(db_session, caller, clock).run_due() == 0
    assert caller.calls == [] and (await reminder(db_session)).attempts == 0


async def test_two_workers_at_once_place_one_call(db_session: Sessions) -> None:
    clock, caller = Clock(), ScriptedCaller([], delay_s=0.05)
    await prompt(db_session)
    await PhoneReminderQueue(sessions=db_session, clock=clock).notify_low_balance(
        notice(await account(db_session))
    )
    placed = await asyncio.gather(*(worker(db_session, caller, clock).run_due() for _ in range(4)))
    assert sum(placed) == 1 and len(caller.calls) == 1
    assert await attempts(db_session) == [(1, "answered", 16)]


async def test_an_attempt_a_crash_left_running_is_closed_as_failed_and_retried(
    db_session: Sessions,
) -> None:
    clock = Clock()
    await prompt(db_session)
    await PhoneReminderQueue(sessions=db_session, clock=clock).notify_low_balance(
        notice(await account(db_session))
    )

    class Crash(ScriptedCaller):
        async def call(self, *, phone: str, channel_id: str, media: Sequence[str]) -> CallResult:
            raise asyncio.CancelledError  # the process dies mid-call

    await worker(db_session, Crash([]), clock).run_due()  # its call task dies, unrecorded
    assert await attempts(db_session) == [(1, None, None)]
    clock.now += timedelta(minutes=10)
    caller = ScriptedCaller([ANSWERED])
    w = worker(db_session, caller, clock)
    assert await w.run_due() == 0  # closes the stale attempt, schedules the retry
    assert (await attempts(db_session))[0] == (1, "failed", None)
    clock.now += timedelta(seconds=1800)
    assert await w.run_due() == 1
    assert await attempts(db_session) == [(1, "failed", None), (2, "answered", 16)]


# --- the ARI caller, fed recorded events ----------------------------------------------


def event(name: str, **changes: Any) -> Any:
    raw = json.loads((SAMPLES / f"{name}.json").read_text())
    for path, value in changes.items():
        target = raw
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[part]
        target[leaf] = value
    return parse_event(json.dumps(raw))


class FakeAri:
    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []

    async def originate(
        self,
        endpoint: str,
        channel_id: str,
        *,
        app_args: str | None = None,
        caller_id: str | None = None,
        timeout_s: int | None = None,
    ) -> Channel:
        self.requests.append(("originate", (endpoint, channel_id, caller_id, timeout_s)))
        return event("StasisStart", channel__id=channel_id).channel  # type: ignore[no-any-return]

    async def play(self, channel_id: str, media: str | Sequence[str], playback_id: str) -> Playback:
        self.requests.append(("play", (channel_id, list(media), playback_id)))
        return event("PlaybackStarted").playback  # type: ignore[no-any-return]

    async def hangup(self, channel_id: str) -> bool:
        self.requests.append(("hangup", channel_id))
        return True


def caller_with(ari: FakeAri) -> AriReminderCaller:
    return AriReminderCaller(ari=ari, pstn_endpoint="callcontrol-pstn", caller_id="+4930999000",
                             ring_timeout_s=5, max_call_s=5)  # fmt: skip


async def test_an_answered_reminder_call_plays_the_notice_then_hangs_up() -> None:
    ari = FakeAri()
    caller = caller_with(ari)
    call = asyncio.create_task(caller.call(phone="+4930123456", channel_id="rem-1",
                                           media=["sound:/p", "digits:49"]))  # fmt: skip
    await asyncio.sleep(0)
    caller.on_event(event("StasisStart", channel__id="rem-1"))
    await asyncio.sleep(0.01)
    caller.on_event(
        event(
            "PlaybackFinished",
            playback__id="rem-1-notice",
            playback__target_uri="channel:rem-1",
            playback__state="done",
        )
    )
    await asyncio.sleep(0.01)
    caller.on_event(event("StasisStart", channel__id="someone-else"))  # not ours: ignored
    caller.on_event(event("ChannelDestroyed", channel__id="rem-1", cause=16))
    result = await asyncio.wait_for(call, 2)
    assert result == CallResult(True, 16, True)
    assert ari.requests == [
        ("originate", ("PJSIP/+4930123456@callcontrol-pstn", "rem-1", "+4930999000", 5)),
        ("play", ("rem-1", ["sound:/p", "digits:49"], "rem-1-notice")),
        ("hangup", "rem-1"),
    ]


async def test_a_busy_reminder_call_reports_the_cause_and_plays_nothing() -> None:
    ari = FakeAri()
    caller = caller_with(ari)
    call = asyncio.create_task(caller.call(phone="+4930123456", channel_id="rem-2", media=["x"]))
    await asyncio.sleep(0.01)
    caller.on_event(event("ChannelDestroyed", channel__id="rem-2", cause=17))
    assert await asyncio.wait_for(call, 2) == CallResult(False, 17, False)
    assert [r[0] for r in ari.requests] == ["originate"]
