"""What the call state machines hear and what they ask for.

Events are facts about one call, already translated from ARI by the shell and
stamped with the time they happened. Commands are requests the executor turns
into ARI calls; when one fails, the executor feeds ``CommandFailed`` back, so
every outcome is decided by the state machine. Legs are named by their
position (1 or 2); channel, playback and recording ids are derived from the
call id, so the core never waits for Asterisk to name anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from callcontrol.domain.rating import Rate
from callcontrol.domain.vocabulary import (
    CallDirection,
    DestinationType,
    Disposition,
    LegOutcome,
)

# ---- events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    playback_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LegRinging:
    position: int
    at: datetime


@dataclass(frozen=True, slots=True)
class LegAnswered:
    position: int
    at: datetime


@dataclass(frozen=True, slots=True)
class LegEnded:
    position: int
    cause: int
    at: datetime


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    cause: int
    at: datetime


@dataclass(frozen=True, slots=True)
class TimerFired:
    name: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    name: str
    duration_s: int
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordingFailed:
    name: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CommandFailed:
    command: Command
    gone: bool  # the channel no longer exists (ARI 404)
    at: datetime


@dataclass(frozen=True, slots=True)
class ObservedLeg:
    """A leg channel Asterisk still has for a call the engine did not follow."""

    position: int
    up: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ObservedCall:
    """What Asterisk still holds of a call whose engine went away (a restart, a
    takeover, a lost event stream), gathered by the shell when it adopts it."""

    caller_present: bool
    caller_up: bool
    legs: tuple[ObservedLeg, ...]
    bridged_position: int | None
    """The leg in the call's bridge, if the bridge exists and holds one."""
    bridged_at: datetime | None
    """The bridge's creation: the moment the call was answered."""
    playing: str | None
    """The id of a playback of ours still running on the caller, if any."""
    recording: bool
    """The caller's voicemail recording is still going on."""
    at: datetime


CallEvent = (
    PlaybackFinished
    | LegRinging
    | LegAnswered
    | LegEnded
    | CallerHungUp
    | TimerFired
    | RecordingFinished
    | RecordingFailed
    | CommandFailed
)

# ---- commands ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ring:
    """180 Ringing to the caller (before answer)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """183 Session Progress: early media to the caller."""


@dataclass(frozen=True, slots=True)
class Answer:
    pass


@dataclass(frozen=True, slots=True)
class Play:
    playback_id: str
    media: str


@dataclass(frozen=True, slots=True)
class StopPlayback:
    playback_id: str


@dataclass(frozen=True, slots=True)
class DialLeg:
    position: int
    channel_id: str
    endpoint: str
    caller_id: str | None
    timeout_s: int
    withhold_caller_id: bool = False
    hops: int = 1
    """The ``X-CallControl-Hops`` value the leg's INVITE carries."""


@dataclass(frozen=True, slots=True)
class HangupLeg:
    position: int
    channel_id: str
    cause: int


@dataclass(frozen=True, slots=True)
class HangupCaller:
    cause: int


@dataclass(frozen=True, slots=True)
class Bridge:
    """Bridge the caller with the leg that answered."""

    position: int
    channel_id: str
    bridge_id: str


@dataclass(frozen=True, slots=True)
class LimitLeg:
    """Have Asterisk itself end the leg after ``seconds`` (``TIMEOUT(absolute)``).

    The credit cap of a bridged PSTN leg: it holds while no engine is connected."""

    channel_id: str
    seconds: int


@dataclass(frozen=True, slots=True)
class StartTimer:
    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    max_seconds: int
    max_silence_seconds: int


@dataclass(frozen=True, slots=True)
class SaveVoicemail:
    recording_name: str
    duration_s: int


@dataclass(frozen=True, slots=True)
class LegRecord:
    position: int
    type: DestinationType
    target: str
    channel_id: str | None
    started_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    outcome: LegOutcome
    cause: int | None
    billed_seconds: int = 0
    rate: Rate | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything a CDR needs, decided by the core; the shell only stores it."""

    call_id: str
    direction: CallDirection
    did: str
    number_id: int | None
    account_id: int | None
    caller: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    disposition: Disposition
    cause: int | None
    reject_reason: str | None
    answered_position: int | None
    ring_ms: int
    talk_ms: int
    legs: tuple[LegRecord, ...]
    # The caller got a 200 OK from us (for a greeting), so no SIP final response
    # tells how the call ended; the Q.850 cause still does.
    caller_answered: bool = False


@dataclass(frozen=True, slots=True)
class Finish:
    record: CallRecord


Command = (
    Ring
    | Progress
    | Answer
    | Play
    | StopPlayback
    | DialLeg
    | HangupLeg
    | HangupCaller
    | Bridge
    | LimitLeg
    | StartTimer
    | CancelTimer
    | Record
    | SaveVoicemail
    | Finish
)
