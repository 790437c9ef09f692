"""The life of one forwarded call, as a state machine.

Inbound calls to a DID use it with the routing plan; an outbound call from a
SIP account is the same machine with a plan of one PSTN leg.

``InboundCall`` takes the routing decision and then events (``call_events``),
and answers each with a list of commands. It never performs I/O and never
reads a clock: every event carries its time. Rules kept here:

- a rejected call is hung up with its cause (announcement first if any);
- a greeting is played to the answered caller before any leg is dialled;
- while legs ring, an unanswered caller gets 180 Ringing; an answered one
  (after a greeting) hears a ringback tone;
- simultaneous: every leg is dialled at once, the first to answer is bridged,
  the others are hung up with "answered elsewhere" (26); a leg answering after
  the winner is hung up, never bridged;
- sequential: each leg rings for its own timeout; busy, no answer or failure
  moves on to the next leg;
- nobody answered -> voicemail when the number has it, else the caller gets
  486 if any leg was busy, 480 if any did not answer, 503 if all failed;
- a bridged PSTN leg is cut when the balance it may spend is used up, by the
  call's timer and by Asterisk itself (``LimitLeg``), so the cap holds while
  no engine is connected;
- a call whose engine went away is adopted from what Asterisk still holds of
  it (``adopt``): a bridged call keeps talking and ends with a true CDR, a
  ringing one keeps ringing, a greeting, voicemail greeting or recording goes
  on; what cannot be told apart is ended cleanly, with its CDR;
- a call whose shell failed (``fail``) is ended: 503 for a caller not yet
  answered, so the carrier may retry, and a CDR all the same;
- the call ends exactly once, with one ``Finish`` carrying its CDR.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, auto

from callcontrol.domain import call_events as ev
from callcontrol.domain import contract
from callcontrol.domain.call_events import CallEvent, Command
from callcontrol.domain.rating import chargeable_seconds
from callcontrol.domain.routing import (
    CAUSE_ANSWERED_ELSEWHERE,
    CAUSE_CONGESTION,
    CAUSE_NO_ANSWER,
    CAUSE_NO_USER_RESPONSE,
    CAUSE_NORMAL_CLEARING,
    CAUSE_USER_BUSY,
    Decision,
    ForwardingPlan,
    PlannedLeg,
    Reject,
)
from callcontrol.domain.vocabulary import CallDirection, Disposition, ForwardingMode, LegOutcome

RINGBACK_MEDIA = "tone:ring"
RECORDING_GRACE_S = 5.0


class Phase(Enum):
    NEW = auto()
    ANNOUNCING = auto()  # rejection announcement
    GREETING = auto()
    RINGING = auto()
    BRIDGED = auto()
    VOICEMAIL_GREETING = auto()
    RECORDING = auto()
    DONE = auto()


def outcome_of_cause(cause: int) -> LegOutcome:
    if cause == CAUSE_USER_BUSY:
        return LegOutcome.BUSY
    if cause in (CAUSE_NO_ANSWER, CAUSE_NO_USER_RESPONSE):
        return LegOutcome.NO_ANSWER
    return LegOutcome.FAILED


@dataclass(slots=True)
class _Leg:
    plan: PlannedLeg
    channel_id: str
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: LegOutcome | None = None
    cause: int | None = None

    @property
    def live(self) -> bool:
        """Dialled and neither ended nor given up on."""
        return self.started_at is not None and self.ended_at is None and self.outcome is None


class InboundCall:
    def __init__(
        self,
        *,
        call_id: str,
        did: str,
        caller: str | None,
        decision: Decision,
        started_at: datetime,
        direction: CallDirection = CallDirection.INBOUND,
    ) -> None:
        self.call_id = call_id
        self.direction = direction
        self.did = did
        self.caller = caller
        self.decision = decision
        self.started_at = started_at
        self.phase = Phase.NEW
        self.caller_answered = False
        self.ringback_playing = False
        self.forwarding_started_at: datetime | None = None
        self.bridged_at: datetime | None = None
        self.voicemail_at: datetime | None = None
        self.winner: _Leg | None = None
        self.recording_name = contract.recording_name(call_id)
        self.legs: dict[int, _Leg] = {}
        if isinstance(decision, ForwardingPlan):
            for leg in decision.legs:
                self.legs[leg.position] = _Leg(leg, contract.leg_channel_id(call_id, leg.position))

    # ---- ids ----------------------------------------------------------------
    @property
    def greeting_playback(self) -> str:
        return contract.playback_id(self.call_id, "greeting")

    @property
    def ringback_playback(self) -> str:
        return contract.playback_id(self.call_id, "ringback")

    @property
    def voicemail_playback(self) -> str:
        return contract.playback_id(self.call_id, "vmgreeting")

    @property
    def bridge_id(self) -> str:
        return contract.bridge_id(self.call_id)

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    # ---- entry points -------------------------------------------------------
    def start(self) -> list[Command]:
        at = self.started_at
        decision = self.decision
        if isinstance(decision, Reject):
            if decision.announcement:
                self.phase = Phase.ANNOUNCING
                return [ev.Progress(), ev.Play(self.greeting_playback, decision.announcement)]
            return self._reject(decision, at)
        if decision.greeting_media:
            self.phase = Phase.GREETING
            self.caller_answered = True
            return [ev.Answer(), ev.Play(self.greeting_playback, decision.greeting_media)]
        return self._start_forwarding(at)

    def adopt(self, seen: ev.ObservedCall) -> list[Command]:
        """Take the call over from what Asterisk still holds of it (see module notes)."""
        at, decision = seen.at, self.decision
        self.caller_answered = seen.caller_up
        present = {leg.position: leg for leg in seen.legs if leg.position in self.legs}
        for position, observed in present.items():
            self.legs[position].started_at = observed.created_at
        if present:
            self.forwarding_started_at = min(leg.created_at for leg in present.values())
        hangups = [
            ev.HangupLeg(position, self.legs[position].channel_id, CAUSE_NORMAL_CLEARING)
            for position in present
        ]
        if isinstance(decision, Reject):
            if not seen.caller_present:
                return [*hangups, self._finish(Disposition.REJECTED, at, decision.cause)]
            return [*hangups, *self._reject(decision, at)]
        if seen.bridged_at is not None:
            winner = self.legs.get(seen.bridged_position or 0) or self._gone_winner(present)
            if winner is not None:
                return self._adopt_bridged(winner, seen, present)
        if not seen.caller_present:
            for leg in self.legs.values():
                leg.outcome = LegOutcome.CANCELLED if leg.started_at else LegOutcome.SKIPPED
            return [*hangups, self._finish(Disposition.ABANDONED, at, CAUSE_NORMAL_CLEARING)]
        if present:
            return self._adopt_ringing(seen, present)
        if seen.recording and self._plan().voicemail is not None:
            self.phase, self.voicemail_at = Phase.RECORDING, at
            return []
        if seen.playing == self.greeting_playback:
            self.phase = Phase.GREETING
            return []
        if seen.playing == self.voicemail_playback:
            self.phase = Phase.VOICEMAIL_GREETING
            return []
        if not seen.caller_up:
            return self.start()  # not yet forwarded: begin again
        # Answered, nothing playing, nothing ringing: between two steps we cannot tell.
        return [
            ev.HangupCaller(CAUSE_NORMAL_CLEARING),
            self._finish(Disposition.FAILED, at, CAUSE_NORMAL_CLEARING, "engine_restart"),
        ]

    def _adopt_bridged(
        self, winner: _Leg, seen: ev.ObservedCall, present: dict[int, ev.ObservedLeg]
    ) -> list[Command]:
        at, answered = seen.at, seen.bridged_at
        assert answered is not None
        winner.answered_at, winner.outcome = answered, LegOutcome.ANSWERED
        self.winner, self.bridged_at, self.phase = winner, answered, Phase.BRIDGED
        self.caller_answered = True
        if winner.started_at is None:
            winner.started_at = answered
        commands: list[Command] = []
        for position in present:
            other = self.legs[position]
            if other is not winner:
                other.outcome = LegOutcome.CANCELLED
                commands.append(ev.HangupLeg(position, other.channel_id, CAUSE_ANSWERED_ELSEWHERE))
        cap = winner.plan.max_talk_s
        if seen.caller_present and winner.plan.position in present:
            if cap is None:
                return commands
            remaining = max(cap, 1) - (at - answered).total_seconds()
            if remaining > 0:
                return [*commands, ev.StartTimer("credit", remaining)]
            return [*commands, *self._on_timer(ev.TimerFired("credit", at))]
        # One side hung up while nobody watched: the talk ended at an unknown
        # moment before now; Asterisk's own cap bounds a PSTN leg's share.
        ended = at if cap is None else min(at, answered + timedelta(seconds=max(cap, 1)))
        winner.ended_at = ended
        if winner.plan.position in present:
            commands.append(
                ev.HangupLeg(winner.plan.position, winner.channel_id, CAUSE_NORMAL_CLEARING)
            )
        if seen.caller_present:
            commands.append(ev.HangupCaller(CAUSE_NORMAL_CLEARING))
        return [*commands, self._finish(Disposition.ANSWERED, ended, CAUSE_NORMAL_CLEARING)]

    def _gone_winner(self, present: dict[int, ev.ObservedLeg]) -> _Leg | None:
        """The bridge exists but its leg is gone: the first leg Asterisk no longer has."""
        gone = [
            leg
            for leg in self.legs.values()
            if leg.plan.position not in present and not leg.plan.skipped
        ]
        return gone[0] if gone else None

    def _adopt_ringing(
        self, seen: ev.ObservedCall, present: dict[int, ev.ObservedLeg]
    ) -> list[Command]:
        at = seen.at
        self.phase = Phase.RINGING
        self.ringback_playing = seen.caller_up
        first_present = min(present)
        for leg in self.legs.values():
            if leg.plan.skipped:
                leg.outcome = LegOutcome.SKIPPED
            elif leg.plan.position not in present and (
                self._plan().mode is ForwardingMode.SIMULTANEOUS
                or leg.plan.position < first_present
            ):
                leg.outcome = LegOutcome.FAILED  # tried while nobody watched; how it ended is lost
        commands: list[Command] = []
        answered: list[int] = []
        for position, observed in present.items():
            leg = self.legs[position]
            left = leg.plan.ring_timeout_s - (at - observed.created_at).total_seconds()
            commands.append(ev.StartTimer(_leg_timer(leg), max(left, 0.1)))
            if observed.up:
                answered.append(position)
        for position in answered:
            commands += self._on_leg_answered(ev.LegAnswered(position, at))
        return commands

    def fail(self, at: datetime) -> list[Command]:
        """The shell failed this call: end it safely, with a CDR (see module notes)."""
        if self.phase is Phase.DONE:
            return []
        commands: list[Command] = []
        for leg in self.legs.values():
            if leg.live or (leg is self.winner and leg.ended_at is None):
                if leg.outcome is None:
                    leg.outcome = LegOutcome.CANCELLED
                leg.ended_at = leg.ended_at or at
                commands.append(
                    ev.HangupLeg(leg.plan.position, leg.channel_id, CAUSE_NORMAL_CLEARING)
                )
        if self.phase is Phase.BRIDGED:
            return [
                *commands,
                ev.HangupCaller(CAUSE_NORMAL_CLEARING),
                self._finish(Disposition.ANSWERED, at, CAUSE_NORMAL_CLEARING),
            ]
        cause = CAUSE_NORMAL_CLEARING if self.caller_answered else contract.CAUSE_RETRY_ELSEWHERE
        return [
            *commands,
            ev.HangupCaller(cause),
            self._finish(Disposition.FAILED, at, cause, "engine_error"),
        ]

    def handle(self, event: CallEvent) -> list[Command]:
        if self.phase is Phase.DONE:
            return []
        match event:
            case ev.PlaybackFinished():
                return self._on_playback_finished(event)
            case ev.LegRinging():
                return []
            case ev.LegAnswered():
                return self._on_leg_answered(event)
            case ev.LegEnded():
                return self._on_leg_ended(event)
            case ev.CallerHungUp():
                return self._on_caller_hung_up(event)
            case ev.TimerFired():
                return self._on_timer(event)
            case ev.RecordingFinished():
                return self._on_recording_done(event.name, event.duration_s, event.at)
            case ev.RecordingFailed():
                return self._on_recording_done(event.name, None, event.at)
            case ev.CommandFailed():
                return self._on_command_failed(event)
        return []

    # ---- phases -------------------------------------------------------------
    def _reject(self, decision: Reject, at: datetime) -> list[Command]:
        return [
            ev.HangupCaller(decision.cause),
            self._finish(Disposition.REJECTED, at, decision.cause),
        ]

    def _plan(self) -> ForwardingPlan:
        assert isinstance(self.decision, ForwardingPlan)
        return self.decision

    def _start_forwarding(self, at: datetime) -> list[Command]:
        self.phase = Phase.RINGING
        self.forwarding_started_at = at
        for leg in self.legs.values():
            if leg.plan.skipped:
                leg.outcome = LegOutcome.SKIPPED
        dialable = [leg for leg in self.legs.values() if leg.outcome is None]
        if not dialable:
            return self._nobody_answered(at)
        commands: list[Command] = []
        if self.caller_answered:
            self.ringback_playing = True
            commands.append(ev.Play(self.ringback_playback, RINGBACK_MEDIA))
        else:
            commands.append(ev.Ring())
        to_dial = dialable if self._plan().mode is ForwardingMode.SIMULTANEOUS else dialable[:1]
        for leg in to_dial:
            commands += self._dial(leg, at)
        return commands

    def _dial(self, leg: _Leg, at: datetime) -> list[Command]:
        leg.started_at = at
        return [
            ev.DialLeg(
                leg.plan.position,
                leg.channel_id,
                leg.plan.endpoint,
                self._plan().caller_id,
                leg.plan.ring_timeout_s,
                self._plan().withhold_caller_id,
                self._plan().hops + 1,
            ),
            ev.StartTimer(_leg_timer(leg), float(leg.plan.ring_timeout_s)),
        ]

    def _next_leg(self, at: datetime) -> list[Command]:
        """After a leg gave up: dial the next (sequential) or end the ringing."""
        if any(leg.live for leg in self.legs.values()):
            return []
        waiting = [
            leg for leg in self.legs.values() if leg.outcome is None and leg.started_at is None
        ]
        if waiting:
            return self._dial(waiting[0], at)
        return self._nobody_answered(at)

    def _nobody_answered(self, at: datetime) -> list[Command]:
        commands = self._stop_ringback()
        plan = self._plan()
        if plan.voicemail is not None:
            self.phase = Phase.VOICEMAIL_GREETING
            if not self.caller_answered:
                self.caller_answered = True
                commands.append(ev.Answer())
            commands.append(ev.Play(self.voicemail_playback, plan.voicemail.greeting_media))
            return commands
        outcomes = {leg.outcome for leg in self.legs.values()}
        if LegOutcome.BUSY in outcomes:
            disposition, cause = Disposition.BUSY, CAUSE_USER_BUSY
        elif LegOutcome.NO_ANSWER in outcomes:
            disposition, cause = Disposition.NO_ANSWER, CAUSE_NO_ANSWER
        else:
            disposition, cause = Disposition.FAILED, contract.CAUSE_DESTINATIONS_FAILED
        commands += [ev.HangupCaller(cause), self._finish(disposition, at, cause)]
        return commands

    def _start_recording(self) -> list[Command]:
        voicemail = self._plan().voicemail
        assert voicemail is not None
        self.phase = Phase.RECORDING
        return [
            ev.Record(self.recording_name, voicemail.max_seconds, voicemail.max_silence_seconds)
        ]

    def _stop_ringback(self) -> list[Command]:
        if not self.ringback_playing:
            return []
        self.ringback_playing = False
        return [ev.StopPlayback(self.ringback_playback)]

    # ---- event handlers -----------------------------------------------------
    def _on_playback_finished(self, event: ev.PlaybackFinished) -> list[Command]:
        if self.phase is Phase.ANNOUNCING and event.playback_id == self.greeting_playback:
            assert isinstance(self.decision, Reject)
            return self._reject(self.decision, event.at)
        if self.phase is Phase.GREETING and event.playback_id == self.greeting_playback:
            return self._start_forwarding(event.at)
        if self.phase is Phase.VOICEMAIL_GREETING and event.playback_id == self.voicemail_playback:
            self.voicemail_at = event.at
            return self._start_recording()
        return []

    def _on_leg_answered(self, event: ev.LegAnswered) -> list[Command]:
        leg = self.legs.get(event.position)
        if leg is None or leg.ended_at is not None or leg is self.winner:
            return []
        if self.phase is not Phase.RINGING or leg.outcome is not None:
            # Too late: another leg won, or this one was given up on.
            leg.answered_at = leg.answered_at or event.at
            if leg.outcome is None:
                leg.outcome = LegOutcome.CANCELLED
            return [ev.HangupLeg(leg.plan.position, leg.channel_id, CAUSE_ANSWERED_ELSEWHERE)]
        leg.answered_at = event.at
        leg.outcome = LegOutcome.ANSWERED
        self.winner = leg
        self.phase = Phase.BRIDGED
        self.bridged_at = event.at
        commands: list[Command] = [ev.CancelTimer(_leg_timer(leg))]
        for other in self.legs.values():
            if other is not leg and other.live:
                other.outcome = LegOutcome.CANCELLED
                commands += [
                    ev.CancelTimer(_leg_timer(other)),
                    ev.HangupLeg(other.plan.position, other.channel_id, CAUSE_ANSWERED_ELSEWHERE),
                ]
        commands += self._stop_ringback()
        if not self.caller_answered:
            self.caller_answered = True
            commands.append(ev.Answer())
        commands.append(ev.Bridge(leg.plan.position, leg.channel_id, self.bridge_id))
        if leg.plan.max_talk_s is not None:
            allowed = max(leg.plan.max_talk_s, 1)
            commands += [
                ev.LimitLeg(leg.channel_id, allowed),
                ev.StartTimer("credit", float(allowed)),
            ]
        return commands

    def _on_leg_ended(self, event: ev.LegEnded) -> list[Command]:
        leg = self.legs.get(event.position)
        if leg is None or leg.ended_at is not None:
            return []
        leg.ended_at = event.at
        leg.cause = event.cause
        if leg is self.winner and self.phase is Phase.BRIDGED:
            return [
                ev.CancelTimer("credit"),
                ev.HangupCaller(CAUSE_NORMAL_CLEARING),
                self._finish(Disposition.ANSWERED, event.at, event.cause),
            ]
        if leg.outcome is not None:
            return []
        leg.outcome = outcome_of_cause(event.cause)
        if self.phase is not Phase.RINGING:
            return []
        return [ev.CancelTimer(_leg_timer(leg)), *self._next_leg(event.at)]

    def _on_timer(self, event: ev.TimerFired) -> list[Command]:
        if event.name == "credit" and self.phase is Phase.BRIDGED and self.winner is not None:
            return [
                ev.HangupLeg(
                    self.winner.plan.position, self.winner.channel_id, CAUSE_NORMAL_CLEARING
                ),
                ev.HangupCaller(CAUSE_NORMAL_CLEARING),
                self._finish(Disposition.ANSWERED, event.at, CAUSE_NORMAL_CLEARING),
            ]
        if event.name == "recording-grace" and self.phase is Phase.RECORDING:
            return self._on_recording_done(self.recording_name, None, event.at)
        for leg in self.legs.values():
            if event.name == _leg_timer(leg) and leg.live and self.phase is Phase.RINGING:
                leg.outcome = LegOutcome.NO_ANSWER
                return [
                    ev.HangupLeg(leg.plan.position, leg.channel_id, CAUSE_NO_ANSWER),
                    *self._next_leg(event.at),
                ]
        return []

    def _on_caller_hung_up(self, event: ev.CallerHungUp) -> list[Command]:
        if self.phase is Phase.RECORDING:
            # Asterisk stops the recording and reports it; wait a moment for that.
            return [ev.StartTimer("recording-grace", RECORDING_GRACE_S)]
        commands: list[Command] = []
        for leg in self.legs.values():
            if leg.live or (leg is self.winner and leg.ended_at is None):
                if leg.outcome is None:
                    leg.outcome = LegOutcome.CANCELLED
                commands += [
                    ev.CancelTimer(_leg_timer(leg)),
                    ev.HangupLeg(leg.plan.position, leg.channel_id, CAUSE_NORMAL_CLEARING),
                ]
        if self.phase is Phase.BRIDGED:
            disposition = Disposition.ANSWERED
            commands.append(ev.CancelTimer("credit"))
        elif isinstance(self.decision, Reject):
            disposition = Disposition.REJECTED
        else:
            disposition = Disposition.ABANDONED
        commands.append(self._finish(disposition, event.at, event.cause))
        return commands

    def _on_recording_done(self, name: str, duration_s: int | None, at: datetime) -> list[Command]:
        if self.phase is not Phase.RECORDING or name != self.recording_name:
            return []
        commands: list[Command] = [ev.CancelTimer("recording-grace")]
        if duration_s is None and self.voicemail_at is not None:
            duration_s = max(0, int((at - self.voicemail_at).total_seconds()))
        if duration_s is not None:
            commands.append(ev.SaveVoicemail(self.recording_name, duration_s))
            disposition = Disposition.VOICEMAIL
        else:
            disposition = Disposition.NO_ANSWER
        commands += [ev.HangupCaller(CAUSE_NORMAL_CLEARING), self._finish(disposition, at, None)]
        return commands

    def _on_command_failed(self, event: ev.CommandFailed) -> list[Command]:
        command = event.command
        if isinstance(command, ev.DialLeg):
            moved_on = self._on_leg_ended(ev.LegEnded(command.position, CAUSE_CONGESTION, event.at))
            # An originate that timed out may still have happened: leave no leg ringing.
            cleanup = (
                []
                if event.gone
                else [ev.HangupLeg(command.position, command.channel_id, CAUSE_NORMAL_CLEARING)]
            )
            return [*cleanup, *moved_on]
        if isinstance(command, ev.Play):
            # A missing or unplayable file must not lose the call: go on without it.
            return self._on_playback_finished(ev.PlaybackFinished(command.playback_id, event.at))
        if isinstance(command, ev.Record) and event.gone:
            # The caller hung up during the voicemail greeting: nothing was recorded.
            return [
                ev.CancelTimer("recording-grace"),
                self._finish(Disposition.ABANDONED, event.at, None),
            ]
        if isinstance(command, ev.Record):
            return self._on_recording_done(command.name, None, event.at)
        if isinstance(command, ev.Answer | ev.Ring | ev.Progress) and event.gone:
            return self._on_caller_hung_up(ev.CallerHungUp(CAUSE_NORMAL_CLEARING, event.at))
        if isinstance(command, ev.Bridge):
            return self._on_caller_hung_up(ev.CallerHungUp(CAUSE_NORMAL_CLEARING, event.at))
        return []

    # ---- the record -----------------------------------------------------------
    def _finish(
        self, disposition: Disposition, at: datetime, cause: int | None, reason: str | None = None
    ) -> ev.Finish:
        self.phase = Phase.DONE
        decision = self.decision
        answered_at = self.bridged_at or self.voicemail_at
        ring_from = self.forwarding_started_at
        ring_to = self.bridged_at or self.voicemail_at or at
        legs = tuple(self._leg_record(leg, at) for leg in self.legs.values())
        return ev.Finish(
            ev.CallRecord(
                call_id=self.call_id,
                direction=self.direction,
                did=self.did,
                number_id=decision.number_id,
                account_id=decision.account_id,
                caller=self.caller,
                started_at=self.started_at,
                answered_at=answered_at,
                ended_at=at,
                disposition=disposition,
                cause=cause,
                reject_reason=decision.reason if isinstance(decision, Reject) else reason,
                answered_position=self.winner.plan.position if self.winner else None,
                ring_ms=_ms(ring_from, ring_to) if ring_from else 0,
                talk_ms=_ms(answered_at, at) if answered_at else 0,
                legs=legs,
                caller_answered=self.caller_answered,
            )
        )

    def _leg_record(self, leg: _Leg, at: datetime) -> ev.LegRecord:
        ended = leg.ended_at or (at if leg.started_at else None)
        billed = 0
        if leg is self.winner and leg.answered_at is not None and ended is not None:
            billed = chargeable_seconds(ended - leg.answered_at, cap_s=leg.plan.max_talk_s)
        outcome = leg.outcome or (LegOutcome.CANCELLED if leg.started_at else LegOutcome.SKIPPED)
        return ev.LegRecord(
            position=leg.plan.position,
            type=leg.plan.type,
            target=leg.plan.target,
            channel_id=leg.channel_id if leg.started_at else None,
            started_at=leg.started_at,
            answered_at=leg.answered_at,
            ended_at=ended,
            outcome=outcome,
            cause=leg.cause,
            billed_seconds=billed,
            rate=leg.plan.rate,
        )


def _leg_timer(leg: _Leg) -> str:
    return f"leg{leg.plan.position}"


def _ms(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))
