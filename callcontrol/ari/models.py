"""ARI resource models (Channel, Bridge, Playback, LiveRecording, ...).

Frozen pydantic models of the JSON Asterisk 22 sends, built once at the edge
(in the event parser or the REST client) and never mutated. The rules:

- Only fields the engine reads are typed; `extra="ignore"` drops the rest, so
  a newer Asterisk adding fields changes nothing.
- A field is required here only if Asterisk's own schema
  (`/usr/share/asterisk/rest-api/*.json`) marks it required; fields the schema
  marks optional default to None. `tests/unit/test_ari_events.py` checks this
  against the copy of the schema in `tests/data/ari/`.
- Enumerations that Asterisk may extend (channel state, playback state) are
  plain `str`: an unknown value must not make a whole event unreadable.
- Lists are tuples, so a model is immutable all the way down.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict


class AriModel(BaseModel):
    """Base of every ARI model: immutable, ignores fields it does not type."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class CallerId(AriModel):
    """Schema `CallerID`: a name and a number, both possibly empty strings."""

    name: str
    number: str


class DialplanCep(AriModel):
    """Schema `DialplanCEP`: where in the dialplan a channel is."""

    context: str
    exten: str
    priority: int
    app_name: str = ""
    app_data: str = ""


class Channel(AriModel):
    """Schema `Channel` (channels.json)."""

    id: str
    name: str
    state: str
    caller: CallerId
    connected: CallerId
    dialplan: DialplanCep
    creationtime: AwareDatetime
    language: str
    protocol_id: str = ""
    accountcode: str = ""
    channelvars: dict[str, str] | None = None
    caller_rdnis: str | None = None


class Bridge(AriModel):
    """Schema `Bridge` (bridges.json)."""

    id: str
    technology: str
    bridge_type: str
    bridge_class: str
    channels: tuple[str, ...]
    creationtime: AwareDatetime
    creator: str = ""
    name: str = ""


class Playback(AriModel):
    """Schema `Playback` (playbacks.json). `state`: queued, playing, continuing, done, failed."""

    id: str
    media_uri: str
    target_uri: str
    state: str
    next_media_uri: str | None = None
    language: str | None = None


class LiveRecording(AriModel):
    """Schema `LiveRecording` (recordings.json).

    `state`: queued, recording, paused, done, failed, canceled. `duration` is
    in seconds and absent until the recording ends; `cause` is set on failure.
    """

    name: str
    format: str
    target_uri: str
    state: str
    duration: int | None = None
    talking_duration: int | None = None
    silence_duration: int | None = None
    cause: str | None = None


class StoredRecording(AriModel):
    """Schema `StoredRecording` (recordings.json)."""

    name: str
    format: str


class Application(AriModel):
    """Schema `Application` (applications.json)."""

    name: str
    channel_ids: tuple[str, ...]
    bridge_ids: tuple[str, ...]
    endpoint_ids: tuple[str, ...]
    device_names: tuple[str, ...]
    events_allowed: tuple[dict[str, Any], ...] = ()
    events_disallowed: tuple[dict[str, Any], ...] = ()


class SystemInfo(AriModel):
    """Schema `SystemInfo` (asterisk.json)."""

    version: str
    entity_id: str


class StatusInfo(AriModel):
    """Schema `StatusInfo` (asterisk.json)."""

    startup_time: AwareDatetime
    last_reload_time: AwareDatetime


class AsteriskInfo(AriModel):
    """Schema `AsteriskInfo` (asterisk.json); every part is optional there.

    Only the parts a health check needs are typed (`build`, `config` ignored).
    """

    system: SystemInfo | None = None
    status: StatusInfo | None = None
