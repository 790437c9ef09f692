"""The inbound call state machine: feed events, read commands (no I/O, no mocks)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from callcontrol.domain import call_events as ev
from callcontrol.domain import contract
from callcontrol.domain.inbound_call import InboundCall
from callcontrol.domain.rating import Rate, cost
from callcontrol.domain.routing import (
    DestinationFacts,
    ForwardingPlan,
    NumberSnapshot,
    Reject,
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

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


A = DestinationFacts(1, DestinationType.SIP_URI, "sip:a@127.0.0.3:5080", 10)
B = DestinationFacts(2, DestinationType.IP, "sip:100@127.0.0.4:5080", 15)
P = DestinationFacts(2, DestinationType.PSTN, "+4915112345678", 15, rate=Rate("49", 60, "EUR"))

SNAP = NumberSnapshot(
    number_id=1,
    account_id=1,
    e164="+4930123456",
    kind=NumberKind.VOICE,
    state=NumberState.ACTIVE,
    balance_minor=100,
    currency="EUR",
    mode=ForwardingMode.SEQUENTIAL,
    destinations=(A, B),
)


def call(snapshot: NumberSnapshot | None = SNAP, **changes: object) -> InboundCall:
    if snapshot is not None and changes:
        snapshot = replace(snapshot, **changes)  # type: ignore[arg-type]
    decision = decide_inbound(snapshot, caller_id="+441111", now=T0, policy=RoutingPolicy())
    return InboundCall(
        call_id="171.5", did="+4930123456", caller="+441111", decision=decision, started_at=T0
    )


def kinds(commands: list[ev.Command]) -> list[str]:
    return [type(c).__name__ for c in commands]


def finish_of(commands: list[ev.Command]) -> ev.CallRecord:
    finishes = [c for c in commands if isinstance(c, ev.Finish)]
    assert len(finishes) == 1, commands
    return finishes[0].record


def test_unknown_number_is_hung_up_with_cause_1_and_leaves_a_rejected_cdr() -> None:
    c = call(None)
    commands = c.start()
    assert commands[0] == ev.HangupCaller(1)
    record = finish_of(commands)
    assert record.disposition is Disposition.REJECTED and record.reject_reason == "unknown_number"
    assert c.done and c.handle(ev.CallerHungUp(16, at(1))) == []


def test_rejection_with_an_announcement_plays_it_in_early_media_then_hangs_up() -> None:
    c = InboundCall(
        call_id="x",
        did="+1",
        caller=None,
        decision=Reject(
            21, "suspended", announcement="sound:ss-noservice", number_id=7, account_id=3
        ),
        started_at=T0,
    )
    assert kinds(c.start()) == ["Progress", "Play"]
    commands = c.handle(ev.PlaybackFinished(c.greeting_playback, at(3)))
    assert commands[0] == ev.HangupCaller(21)
    record = finish_of(commands)
    assert record.cause == 21
    # Refused, but still the customer's number: its statistics count the call.
    assert (record.number_id, record.account_id) == (7, 3)


def test_sequential_first_busy_then_second_answers_and_is_bridged() -> None:
    c = call()
    start = c.start()
    assert kinds(start) == ["Ring", "DialLeg", "StartTimer"]
    dial = start[1]
    assert isinstance(dial, ev.DialLeg) and dial.position == 1 and dial.caller_id == "+441111"
    after_busy = c.handle(ev.LegEnded(1, 17, at(2)))
    assert kinds(after_busy) == ["CancelTimer", "DialLeg", "StartTimer"]
    assert isinstance(after_busy[1], ev.DialLeg) and after_busy[1].position == 2
    answered = c.handle(ev.LegAnswered(2, at(5)))
    assert kinds(answered) == ["CancelTimer", "Answer", "Bridge"]
    end = c.handle(ev.LegEnded(2, 16, at(65)))
    assert end[1] == ev.HangupCaller(16)
    record = finish_of(end)
    assert record.disposition is Disposition.ANSWERED and record.answered_position == 2
    assert [leg.outcome for leg in record.legs] == [LegOutcome.BUSY, LegOutcome.ANSWERED]
    assert record.ring_ms == 5000 and record.talk_ms == 60000
    assert record.legs[1].billed_seconds == 60


def test_sequential_no_answer_timeout_moves_on_to_the_next_leg() -> None:
    c = call()
    c.start()
    commands = c.handle(ev.TimerFired("leg1", at(10)))
    assert commands[0] == ev.HangupLeg(1, "171_5-leg1", 19)
    assert isinstance(commands[1], ev.DialLeg) and commands[1].position == 2
    # The cancelled first leg's own end does not dial anything more.
    assert c.handle(ev.LegEnded(1, 16, at(10.1))) == []


def test_simultaneous_first_answer_wins_others_get_answered_elsewhere() -> None:
    c = call(mode=ForwardingMode.SIMULTANEOUS)
    assert kinds(c.start()) == ["Ring", "DialLeg", "StartTimer", "DialLeg", "StartTimer"]
    won = c.handle(ev.LegAnswered(2, at(3)))
    assert ev.HangupLeg(1, "171_5-leg1", 26) in won
    assert ev.Bridge(2, "171_5-leg2", "171_5-bridge") in won
    # A leg answering a moment after the winner is hung up, never bridged.
    late = c.handle(ev.LegAnswered(1, at(3.1)))
    assert late == [ev.HangupLeg(1, "171_5-leg1", 26)]
    record = finish_of(c.handle(ev.CallerHungUp(16, at(20))))
    assert record.legs[0].outcome is LegOutcome.CANCELLED
    assert record.disposition is Disposition.ANSWERED


def test_all_legs_busy_without_voicemail_gives_the_caller_486() -> None:
    c = call(mode=ForwardingMode.SIMULTANEOUS)
    c.start()
    assert c.handle(ev.LegEnded(1, 17, at(1))) == [ev.CancelTimer("leg1")]
    commands = c.handle(ev.LegEnded(2, 19, at(2)))
    assert ev.HangupCaller(17) in commands
    assert finish_of(commands).disposition is Disposition.BUSY


def test_no_answer_gives_480_and_all_failed_gives_503() -> None:
    c = call()
    c.start()
    c.handle(ev.TimerFired("leg1", at(10)))
    commands = c.handle(ev.TimerFired("leg2", at(25)))
    assert ev.HangupCaller(19) in commands
    failed = call()
    failed.start()
    failed.handle(ev.CommandFailed(ev.DialLeg(1, "x", "PJSIP/x", None, 1), False, at(0)))
    commands = failed.handle(ev.LegEnded(2, 34, at(1)))
    # 503 too, but cause 42: routed, every destination failed (an edge must not
    # retry it on another node; 34 is "this node cannot take the call now").
    assert ev.HangupCaller(42) in commands
    assert contract.SIP_CODE_OF_CAUSE[42] == 503
    assert finish_of(commands).disposition is Disposition.FAILED
    assert finish_of(commands).cause == 42


def test_greeting_is_played_to_the_answered_caller_before_dialling_with_ringback() -> None:
    c = call(greeting_media="sound:/srv/callcontrol/media/g1")
    assert c.start() == [ev.Answer(), ev.Play("171_5-greeting", "sound:/srv/callcontrol/media/g1")]
    commands = c.handle(ev.PlaybackFinished("171_5-greeting", at(4)))
    assert kinds(commands) == ["Play", "DialLeg", "StartTimer"]
    assert commands[0] == ev.Play("171_5-ringback", "tone:ring")
    won = c.handle(ev.LegAnswered(1, at(6)))
    assert ev.StopPlayback("171_5-ringback") in won and ev.Answer() not in won


def test_a_caller_answered_for_the_greeting_is_recorded_as_such_when_all_legs_are_busy() -> None:
    """No SIP final response tells such a caller how it ended: the CDR must know."""
    c = call(greeting_media="sound:/srv/callcontrol/media/g1", mode=ForwardingMode.SIMULTANEOUS)
    c.start()
    c.handle(ev.PlaybackFinished("171_5-greeting", at(4)))
    c.handle(ev.LegEnded(1, 17, at(5)))
    record = finish_of(c.handle(ev.LegEnded(2, 17, at(6))))
    assert record.caller_answered and record.answered_at is None
    assert record.disposition is Disposition.BUSY and record.cause == 17
    unanswered = call(mode=ForwardingMode.SIMULTANEOUS)
    unanswered.start()
    unanswered.handle(ev.LegEnded(1, 17, at(1)))
    assert not finish_of(unanswered.handle(ev.LegEnded(2, 17, at(2)))).caller_answered


def test_a_greeting_that_cannot_be_played_does_not_lose_the_call() -> None:
    c = call(greeting_media="sound:/missing")
    play = c.start()[1]
    commands = c.handle(ev.CommandFailed(play, False, at(0.1)))
    assert "DialLeg" in kinds(commands)


def test_nobody_answers_then_voicemail_is_recorded_and_saved() -> None:
    c = call(voicemail_enabled=True)
    c.start()
    c.handle(ev.LegEnded(1, 17, at(1)))
    to_vm = c.handle(ev.LegEnded(2, 17, at(2)))
    assert kinds(to_vm) == ["CancelTimer", "Answer", "Play"]
    record_cmd = c.handle(ev.PlaybackFinished("171_5-vmgreeting", at(5)))
    assert record_cmd == [ev.Record("vm-171_5", 120, 5)]
    # The caller hangs up: Asterisk then reports the finished recording.
    assert c.handle(ev.CallerHungUp(16, at(15))) == [ev.StartTimer("recording-grace", 5.0)]
    done = c.handle(ev.RecordingFinished("vm-171_5", 10, at(15.2)))
    assert ev.SaveVoicemail("vm-171_5", 10) in done
    record = finish_of(done)
    assert record.disposition is Disposition.VOICEMAIL and record.answered_at == at(5)


def test_caller_hanging_up_while_legs_ring_cancels_them_and_is_abandoned() -> None:
    c = call(mode=ForwardingMode.SIMULTANEOUS)
    c.start()
    commands = c.handle(ev.CallerHungUp(16, at(3)))
    assert ev.HangupLeg(1, "171_5-leg1", 16) in commands
    assert ev.HangupLeg(2, "171_5-leg2", 16) in commands
    record = finish_of(commands)
    assert record.disposition is Disposition.ABANDONED
    assert {leg.outcome for leg in record.legs} == {LegOutcome.CANCELLED}


def test_bridged_pstn_leg_is_cut_when_the_credit_is_spent() -> None:
    c = call(destinations=(P,), balance_minor=30)  # 30 at 60/min pays for 30 s
    c.start()
    won = c.handle(ev.LegAnswered(2, at(2)))
    assert ev.StartTimer("credit", 30.0) in won
    cut = c.handle(ev.TimerFired("credit", at(32)))
    assert ev.HangupCaller(16) in cut
    record = finish_of(cut)
    assert record.legs[0].billed_seconds == 30 and record.legs[0].rate == Rate("49", 60, "EUR")


def test_a_credit_timer_that_fires_late_does_not_charge_past_the_balance() -> None:
    """Issue 17: 1 unit at 2/min pays 30 s; the timer fires 6 ms late; 1 unit charged."""
    pstn = replace(P, rate=Rate("49", 2, "EUR"))
    c = call(destinations=(pstn,), balance_minor=1)
    c.start()
    won = c.handle(ev.LegAnswered(2, at(2)))
    assert ev.StartTimer("credit", 30.0) in won
    leg = finish_of(c.handle(ev.TimerFired("credit", at(32.006)))).legs[0]
    assert leg.billed_seconds == 30
    assert leg.rate is not None and cost(leg.rate, leg.billed_seconds) == 1


def test_a_capped_leg_that_ends_itself_just_past_the_cap_is_charged_the_cap() -> None:
    c = call(destinations=(P,), balance_minor=30)
    c.start()
    c.handle(ev.LegAnswered(2, at(2)))
    leg = finish_of(c.handle(ev.LegEnded(2, 16, at(32.4)))).legs[0]
    assert leg.billed_seconds == 30


def test_a_pstn_leg_the_balance_pays_not_one_second_of_is_skipped() -> None:
    c = call(destinations=(A, replace(P, rate=Rate("49", 120, "EUR"))), balance_minor=1)
    plan = c.decision
    assert isinstance(plan, ForwardingPlan)
    assert plan.legs[1].skipped


def test_pstn_leg_with_no_credit_is_skipped_and_the_sip_leg_still_rings() -> None:
    c = call(destinations=(A, P), balance_minor=0)
    plan = c.decision
    assert isinstance(plan, ForwardingPlan)
    c.start()
    record = finish_of(c.handle(ev.LegEnded(1, 19, at(1))))
    assert [leg.outcome for leg in record.legs] == [LegOutcome.NO_ANSWER, LegOutcome.SKIPPED]


def test_events_after_the_end_are_ignored() -> None:
    c = call()
    c.start()
    c.handle(ev.CallerHungUp(16, at(1)))
    assert c.handle(ev.LegAnswered(1, at(2))) == []
    assert c.handle(ev.TimerFired("leg1", at(10))) == []


def test_a_repeated_answer_event_of_the_winner_changes_nothing() -> None:
    c = call()
    c.start()
    c.handle(ev.LegAnswered(1, at(1)))
    assert c.handle(ev.LegAnswered(1, at(1.01))) == []
