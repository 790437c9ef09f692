"""ARI events -> the core's call events, for a channel the call owns.

The caller's channel and each leg's channel produce different facts: a leg
going Up is an answer, the caller's channel leaving Stasis is a hang-up. Events
the core has no use for return ``None``.
"""

from __future__ import annotations

from callcontrol.ari import events as ari
from callcontrol.domain import call_events as ev
from callcontrol.domain.routing import CAUSE_NORMAL_CLEARING


def caller_event(event: ari.AriEvent) -> ev.CallEvent | None:
    match event:
        case ari.ChannelHangupRequest():
            return ev.CallerHungUp(event.cause or CAUSE_NORMAL_CLEARING, event.timestamp)
        case ari.ChannelDestroyed():
            return ev.CallerHungUp(event.cause or CAUSE_NORMAL_CLEARING, event.timestamp)
        case ari.StasisEnd():
            return ev.CallerHungUp(CAUSE_NORMAL_CLEARING, event.timestamp)
        case ari.PlaybackFinished():
            return ev.PlaybackFinished(event.playback.id, event.timestamp)
        case ari.RecordingFinished():
            duration = event.recording.duration
            return ev.RecordingFinished(event.recording.name, int(duration or 0), event.timestamp)
        case ari.RecordingFailed():
            return ev.RecordingFailed(event.recording.name, event.timestamp)
    return None


def leg_event(position: int, event: ari.AriEvent) -> ev.CallEvent | None:
    match event:
        case ari.ChannelStateChange():
            state = event.channel.state
            if state == "Up":
                return ev.LegAnswered(position, event.timestamp)
            if state == "Ringing":
                return ev.LegRinging(position, event.timestamp)
        case ari.ChannelDestroyed():
            return ev.LegEnded(position, event.cause, event.timestamp)
    return None


def channel_of(event: ari.AriEvent) -> str | None:
    """The channel an event is about (playbacks and recordings: their target)."""
    match event:
        case (
            ari.StasisStart()
            | ari.StasisEnd()
            | ari.ChannelStateChange()
            | ari.ChannelDestroyed()
            | ari.ChannelHangupRequest()
        ):
            return event.channel.id
        case ari.PlaybackFinished():
            return _target_channel(event.playback.target_uri)
        case ari.RecordingFinished() | ari.RecordingFailed():
            return _target_channel(event.recording.target_uri)
    return None


def _target_channel(target_uri: str) -> str | None:
    kind, _, ident = target_uri.partition(":")
    return ident if kind == "channel" else None


# The event types the engine uses; Asterisk is told to send nothing else (each
# event is JSON Asterisk must build and we must parse). ChannelHangupRequest is
# left out: StasisEnd and ChannelDestroyed follow it for every hang-up and say
# the same (caller_event still understands it, for peers that send it).
WANTED_EVENTS = (
    "StasisStart",
    "StasisEnd",
    "ChannelStateChange",
    "ChannelDestroyed",
    "PlaybackFinished",
    "RecordingFinished",
    "RecordingFailed",
    "ApplicationReplaced",
)
