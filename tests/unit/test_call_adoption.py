"""A call taken over from what Asterisk still holds (``InboundCall.adopt``), the
Asterisk-side credit cap, and a call whose shell failed (``fail``): pure, no mocks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from callcontrol.domain import call_events as ev
from callcontrol.domain.inbound_call import InboundCall, Phase
from callcontrol.domain.rating import Rate
from callcontrol.domain.routing import (
    DestinationFacts,
    NumberSnapshot,
    RoutingPolicy,
    decide_inbound,
)
from callcontrol.domain.vocabulary import (
    DestinationType,
    Disposition,
    ForwardingMode,
    LegOutcome,
    NumberKind,
    NumberState,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
A = DestinationFacts(1, DestinationType.SIP_URI, "sip:a@127.0.0.3:5080", 10)
B = DestinationFacts(2, DestinationType.IP, "sip:100@127.0.0.4:5080", 15)
# 60 minor units per minute and a balance of 100: 100 s of talk.
P = DestinationFacts(1, DestinationType.PSTN, "+4915112345678", 15, rate=Rate("49", 60, "EUR"))
SNAP = NumberSnapshot(
    number_id=7,
    account_id=3,
    e164="+4930123456",
    kind=NumberKind.VOICE,
    state=NumberState.ACTIVE,
    balance_minor=100,
    currency="EUR",
    mode=ForwardingMode.SEQUENTIAL,
    destinations=(A, B),
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def call(**changes: object) -> InboundCall:
    snapshot = replace(SNAP, **changes)  # type: ignore[arg-type]
    decision = decide_inbound(snapshot, caller_id="+441111", now=T0, policy=RoutingPolicy())
    return InboundCall(
        call_id="171.5", did=SNAP.e164, caller="+441111", decision=decision, started_at=T0
    )


def seen(
    *,
    caller: bool = True,
    up: bool = True,
    legs: tuple[ev.ObservedLeg, ...] = (),
    bridged: int | None = None,
    bridged_at: datetime | None = None,
    playing: str | None = None,
    recording: bool = False,
    now: float = 30,
) -> ev.ObservedCall:
    return ev.ObservedCall(
        caller_present=caller,
        caller_up=up,
        legs=legs,
        bridged_position=bridged,
        bridged_at=bridged_at,
        playing=playing,
        recording=recording,
        at=at(now),
    )


def finish_of(commands: list[ev.Command]) -> ev.CallRecord:
    finishes = [c for c in commands if isinstance(c, ev.Finish)]
    assert len(finishes) == 1, commands
    return finishes[0].record


def test_a_bridged_call_is_adopted_without_a_command_and_its_cdr_counts_from_the_answer() -> None:
    c = call()
    commands = c.adopt(
        seen(legs=(ev.ObservedLeg(1, True, at(2)),), bridged=1, bridged_at=at(5), now=30)
    )
    assert commands == [] and c.phase is Phase.BRIDGED
    ended = c.handle(ev.LegEnded(1, 16, at(65)))
    assert ev.HangupCaller(16) in ended
    record = finish_of(ended)
    assert record.disposition is Disposition.ANSWERED and record.answered_position == 1
    assert record.answered_at == at(5) and record.talk_ms == 60_000
    assert record.legs[0].outcome is LegOutcome.ANSWERED


def test_an_adopted_pstn_call_keeps_only_what_is_left_of_its_credit() -> None:
    c = call(destinations=(P,))
    commands = c.adopt(
        seen(legs=(ev.ObservedLeg(1, True, at(0)),), bridged=1, bridged_at=at(10), now=40)
    )
    # 100 s allowed from the answer at +10 s, 30 s of it used: 70 s left.
    assert commands == [ev.StartTimer("credit", 70.0)]
    cut = c.handle(ev.TimerFired("credit", at(110)))
    record = finish_of(cut)
    assert record.legs[0].billed_seconds == 100 and ev.HangupCaller(16) in cut


def test_an_adopted_pstn_call_past_its_credit_is_cut_at_once() -> None:
    c = call(destinations=(P,))
    commands = c.adopt(
        seen(legs=(ev.ObservedLeg(1, True, at(0)),), bridged=1, bridged_at=at(1), now=200)
    )
    assert any(isinstance(x, ev.HangupLeg) for x in commands)
    assert finish_of(commands).disposition is Disposition.ANSWERED


def test_a_bridged_call_whose_leg_vanished_meanwhile_ends_and_bills_no_more_than_the_cap() -> None:
    c = call(destinations=(P,))
    commands = c.adopt(seen(legs=(), bridged=None, bridged_at=at(10), now=500))
    assert ev.HangupCaller(16) in commands
    record = finish_of(commands)
    assert record.disposition is Disposition.ANSWERED
    assert record.legs[0].billed_seconds == 100  # Asterisk's TIMEOUT(absolute) cut it there


def test_a_call_whose_caller_vanished_while_bridged_is_recorded_answered_and_its_leg_hung_up() -> (
    None
):
    c = call()
    commands = c.adopt(
        seen(caller=False, legs=(ev.ObservedLeg(1, True, at(1)),), bridged=1, bridged_at=at(3))
    )
    assert ev.HangupLeg(1, "171_5-leg1", 16) in commands
    assert not any(isinstance(x, ev.HangupCaller) for x in commands)
    assert finish_of(commands).disposition is Disposition.ANSWERED


def test_a_ringing_call_keeps_ringing_for_what_is_left_of_its_ring_time() -> None:
    c = call()
    commands = c.adopt(seen(up=False, legs=(ev.ObservedLeg(1, False, at(24)),), now=30))
    assert commands == [ev.StartTimer("leg1", 4.0)] and c.phase is Phase.RINGING
    # Leg 1 gives up: leg 2 is dialled as if nothing had happened.
    after = c.handle(ev.TimerFired("leg1", at(34)))
    assert any(isinstance(x, ev.DialLeg) and x.position == 2 for x in after)


def test_a_leg_that_answered_while_nobody_watched_is_bridged_on_adoption() -> None:
    c = call()
    commands = c.adopt(seen(up=False, legs=(ev.ObservedLeg(1, True, at(25)),), now=30))
    assert any(isinstance(x, ev.Bridge) for x in commands) and ev.Answer() in commands


def test_a_call_not_yet_forwarded_starts_again() -> None:
    c = call()
    commands = c.adopt(seen(up=False, legs=()))
    assert any(isinstance(x, ev.DialLeg) for x in commands) and ev.Ring() in commands


def test_a_voicemail_recording_goes_on_and_is_saved_when_it_finishes() -> None:
    c = call(voicemail_enabled=True)
    assert c.adopt(seen(recording=True)) == []
    done = c.handle(ev.RecordingFinished(c.recording_name, 12, at(40)))
    assert ev.SaveVoicemail(c.recording_name, 12) in done
    assert finish_of(done).disposition is Disposition.VOICEMAIL


def test_an_answered_call_in_an_unknown_step_is_ended_with_a_true_cdr() -> None:
    c = call()
    commands = c.adopt(seen(up=True))
    record = finish_of(commands)
    assert ev.HangupCaller(16) in commands
    assert record.disposition is Disposition.FAILED and record.reject_reason == "engine_restart"
    assert record.number_id == 7 and record.account_id == 3


def test_a_caller_who_hung_up_while_nobody_watched_is_abandoned() -> None:
    c = call()
    commands = c.adopt(seen(caller=False, up=False, legs=(ev.ObservedLeg(1, False, at(1)),)))
    assert ev.HangupLeg(1, "171_5-leg1", 16) in commands
    assert finish_of(commands).disposition is Disposition.ABANDONED


def test_a_bridged_pstn_leg_is_capped_by_asterisk_too() -> None:
    c = call(destinations=(P,))
    c.start()
    answered = c.handle(ev.LegAnswered(1, at(3)))
    assert ev.LimitLeg("171_5-leg1", 100) in answered
    assert ev.StartTimer("credit", 100.0) in answered


def test_a_failed_shell_ends_an_unanswered_call_with_503_and_a_cdr() -> None:
    c = call()
    c.start()
    commands = c.fail(at(2))
    assert ev.HangupCaller(34) in commands and ev.HangupLeg(1, "171_5-leg1", 16) in commands
    record = finish_of(commands)
    assert record.disposition is Disposition.FAILED and record.reject_reason == "engine_error"
    assert c.fail(at(3)) == []


def test_a_failed_shell_ends_a_bridged_call_as_answered() -> None:
    c = call()
    c.start()
    c.handle(ev.LegAnswered(1, at(3)))
    record = finish_of(c.fail(at(13)))
    assert record.disposition is Disposition.ANSWERED and record.talk_ms == 10_000


def test_a_caller_gone_when_the_recording_would_start_is_abandoned_not_voicemail() -> None:
    c = call(voicemail_enabled=True, destinations=())
    c.start()
    record_cmd = [x for x in c.handle(ev.PlaybackFinished(c.voicemail_playback, at(5)))]
    record = next(x for x in record_cmd if isinstance(x, ev.Record))
    done = c.handle(ev.CommandFailed(record, True, at(5.01)))
    assert not any(isinstance(x, ev.SaveVoicemail) for x in done)
    assert finish_of(done).disposition is Disposition.ABANDONED
