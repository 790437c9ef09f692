"""Typed ARI events and the one parser that builds them.

Every WebSocket message from Asterisk goes through `parse_event` exactly once;
nothing past this module reads ARI JSON. The rules it keeps:

- Events are frozen pydantic models, discriminated on `type`; fields follow
  Asterisk 22's `events.json` (checked by `tests/unit/test_ari_events.py`).
- A well-formed event of a type we do not model becomes `UnknownEvent` (the
  engine ignores it); malformed JSON or a known event with missing/invalid
  fields raises `AriProtocolError`. The parser never raises anything else.
- It is the hot path (about nine events per call): one `validate_json` call on
  the success path, no intermediate dicts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, TypeAdapter, ValidationError

from callcontrol.ari.errors import AriProtocolError
from callcontrol.ari.models import AriModel, Bridge, Channel, LiveRecording, Playback

__all__ = [
    "AnyEvent",
    "ApplicationReplaced",
    "AriEvent",
    "BridgeDestroyed",
    "ChannelDestroyed",
    "ChannelDtmfReceived",
    "ChannelEnteredBridge",
    "ChannelHangupRequest",
    "ChannelLeftBridge",
    "ChannelStateChange",
    "ChannelVarset",
    "Dial",
    "PlaybackFinished",
    "PlaybackStarted",
    "RecordingFailed",
    "RecordingFinished",
    "RecordingStarted",
    "StasisEnd",
    "StasisStart",
    "UnknownEvent",
    "parse_event",
]


class _Event(AriModel):
    """Fields of schema `Message` and `Event`, shared by every event."""

    application: str
    timestamp: AwareDatetime
    asterisk_id: str | None = None


class StasisStart(_Event):
    """A channel entered our application; `args` are the dialplan's Stasis() arguments."""

    type: Literal["StasisStart"]
    channel: Channel
    args: tuple[str, ...]
    replace_channel: Channel | None = None


class StasisEnd(_Event):
    """A channel left our application (hung up, or continued in the dialplan)."""

    type: Literal["StasisEnd"]
    channel: Channel


class ChannelStateChange(_Event):
    """The channel's `state` changed (e.g. Ringing, Up)."""

    type: Literal["ChannelStateChange"]
    channel: Channel


class ChannelDestroyed(_Event):
    """The channel is gone; `cause` is the Q.850 cause."""

    type: Literal["ChannelDestroyed"]
    channel: Channel
    cause: int
    cause_txt: str
    tech_cause: int | None = None


class ChannelHangupRequest(_Event):
    """Someone asked the channel to hang up (typically the far end's BYE/CANCEL)."""

    type: Literal["ChannelHangupRequest"]
    channel: Channel
    cause: int | None = None
    soft: bool | None = None
    tech_cause: int | None = None


class ChannelDtmfReceived(_Event):
    """A DTMF digit (0-9, A-D, # or *) ended on the channel."""

    type: Literal["ChannelDtmfReceived"]
    channel: Channel
    digit: str
    duration_ms: int


class Dial(_Event):
    """Progress of a dial attempt: `dialstatus` is "" at start, then e.g.
    RINGING, PROGRESS, ANSWER, BUSY, NOANSWER, CANCEL, CHANUNAVAIL, CONGESTION."""

    type: Literal["Dial"]
    peer: Channel
    dialstatus: str
    caller: Channel | None = None
    forward: str | None = None
    forwarded: Channel | None = None
    dialstring: str | None = None


class PlaybackStarted(_Event):
    type: Literal["PlaybackStarted"]
    playback: Playback


class PlaybackFinished(_Event):
    """A playback ended: `playback.state` is "done" or "failed"."""

    type: Literal["PlaybackFinished"]
    playback: Playback


class RecordingStarted(_Event):
    type: Literal["RecordingStarted"]
    recording: LiveRecording


class RecordingFinished(_Event):
    type: Literal["RecordingFinished"]
    recording: LiveRecording


class RecordingFailed(_Event):
    type: Literal["RecordingFailed"]
    recording: LiveRecording


class ChannelEnteredBridge(_Event):
    type: Literal["ChannelEnteredBridge"]
    bridge: Bridge
    channel: Channel | None = None


class ChannelLeftBridge(_Event):
    type: Literal["ChannelLeftBridge"]
    bridge: Bridge
    channel: Channel


class BridgeDestroyed(_Event):
    type: Literal["BridgeDestroyed"]
    bridge: Bridge


class ApplicationReplaced(_Event):
    """Another WebSocket registered our application name; this one gets no more events."""

    type: Literal["ApplicationReplaced"]


class ChannelVarset(_Event):
    """A variable changed. Frequent (about five per call) and ignored by the engine;
    modelled so it is recognised cheaply. No `channel` means a global variable."""

    type: Literal["ChannelVarset"]
    variable: str
    value: str
    channel: Channel | None = None


class UnknownEvent(AriModel):
    """A well-formed message of a type we do not model, kept raw for logging."""

    type: str
    raw: dict[str, Any]


AnyEvent = (
    StasisStart
    | StasisEnd
    | ChannelStateChange
    | ChannelDestroyed
    | ChannelHangupRequest
    | ChannelDtmfReceived
    | Dial
    | PlaybackStarted
    | PlaybackFinished
    | RecordingStarted
    | RecordingFinished
    | RecordingFailed
    | ChannelEnteredBridge
    | ChannelLeftBridge
    | BridgeDestroyed
    | ApplicationReplaced
    | ChannelVarset
)
"""Every modelled event type."""

AriEvent = AnyEvent | UnknownEvent
"""What `parse_event` returns."""

_KNOWN_EVENT: TypeAdapter[AnyEvent] = TypeAdapter(Annotated[AnyEvent, Field(discriminator="type")])


def parse_event(raw: bytes | str) -> AriEvent:
    """Parse one WebSocket message from Asterisk into a typed event.

    Raises `AriProtocolError` for malformed JSON, a message without a string
    `type`, or a modelled event whose fields are missing or invalid.
    """
    try:
        return _KNOWN_EVENT.validate_json(raw)
    except ValidationError as exc:
        return _unknown_or_raise(raw, exc)


def _unknown_or_raise(raw: bytes | str, exc: ValidationError) -> UnknownEvent:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    if first["type"] == "union_tag_invalid" and not first["loc"]:
        data = json.loads(raw)  # validate_json got as far as the tag: the JSON is valid
        if isinstance(data, dict) and isinstance(data.get("type"), str):
            return UnknownEvent(type=data["type"], raw=data)
    if first["type"] == "json_invalid":
        detail = "malformed JSON"
    else:
        detail = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<message>'}: {error['msg'][:120]}"
            for error in errors[:5]
        )
    raise AriProtocolError(f"unreadable ARI event: {detail}", raw) from None
