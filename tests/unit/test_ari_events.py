"""Typed ARI events: the models match Asterisk 22's schema, and the parser
turns every message into a typed event, an UnknownEvent or an AriProtocolError.

The schema files in tests/data/ari/*.json are copies of Asterisk 22.10's
/usr/share/asterisk/rest-api/; the samples in tests/data/ari/samples/events/
are shaped like its output (recordings from the real Asterisk can be added
there: every file is parsed by these tests).
"""

from __future__ import annotations

import datetime
import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ValidationError

from callcontrol.ari import events as ev
from callcontrol.ari import models
from callcontrol.ari.errors import AriProtocolError
from callcontrol.ari.events import UnknownEvent, parse_event

DATA = Path(__file__).parent.parent / "data" / "ari"
SAMPLES = sorted((DATA / "samples" / "events").glob("*.json"))
SCHEMA_FILES = (
    "events.json",
    "channels.json",
    "bridges.json",
    "playbacks.json",
    "recordings.json",
    "applications.json",
    "asterisk.json",
)

EVENT_CLASSES: tuple[type[BaseModel], ...] = typing.get_args(ev.AnyEvent)

# Our nested models and the schema model each one stands for.
NESTED: dict[type[BaseModel], str] = {
    models.Channel: "Channel",
    models.CallerId: "CallerID",
    models.DialplanCep: "DialplanCEP",
    models.Bridge: "Bridge",
    models.Playback: "Playback",
    models.LiveRecording: "LiveRecording",
    models.StoredRecording: "StoredRecording",
    models.Application: "Application",
    models.AsteriskInfo: "AsteriskInfo",
    models.SystemInfo: "SystemInfo",
    models.StatusInfo: "StatusInfo",
}
SCHEMA_NAME_TO_CLASS = {name: cls for cls, name in NESTED.items()}


def load_schema_models() -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for name in SCHEMA_FILES:
        merged.update(json.loads((DATA / name).read_text())["models"])
    return merged


SCHEMA = load_schema_models()


def schema_properties(schema_name: str) -> dict[str, dict[str, Any]]:
    """Properties of a schema model, including those inherited from Event/Message."""
    props = dict(SCHEMA[schema_name]["properties"])
    if "type" not in props and schema_name in SCHEMA["Event"]["subTypes"]:
        props.update(SCHEMA["Event"]["properties"])
        props.update(SCHEMA["Message"]["properties"])
    return props


def strip_optional(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        assert len(members) == 1, f"unexpected union {annotation}"
        return members[0]
    return annotation


def is_compatible(annotation: Any, schema_type: str) -> bool:
    """Whether our annotation can hold what the schema says Asterisk sends."""
    annotation = strip_optional(annotation)
    if schema_type.startswith("List[") and schema_type.endswith("]"):
        args = typing.get_args(annotation)
        return (
            typing.get_origin(annotation) is tuple
            and len(args) == 2
            and args[1] is Ellipsis
            and is_compatible(args[0], schema_type[5:-1])
        )
    if schema_type == "string":
        return annotation is str or typing.get_origin(annotation) is typing.Literal
    if schema_type in ("int", "long"):
        return annotation is int
    if schema_type == "boolean":
        return annotation is bool
    if schema_type == "Date":
        return annotation is AwareDatetime
    if schema_type == "object":
        return annotation is dict or typing.get_origin(annotation) is dict
    return SCHEMA_NAME_TO_CLASS.get(schema_type) is annotation


def assert_matches_schema(cls: type[BaseModel], schema_name: str) -> None:
    props = schema_properties(schema_name)
    for field_name, field in cls.model_fields.items():
        assert field_name in props, f"{cls.__name__}.{field_name}: Asterisk does not send it"
        prop = props[field_name]
        if field.is_required():
            assert prop.get("required", False), (
                f"{cls.__name__}.{field_name} is required but optional in the schema"
            )
        assert is_compatible(field.annotation, prop["type"]), (
            f"{cls.__name__}.{field_name}: {field.annotation} cannot hold schema {prop['type']}"
        )


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_every_event_field_exists_in_asterisk_schema_with_a_compatible_type(
    cls: type[BaseModel],
) -> None:
    assert_matches_schema(cls, cls.__name__)


@pytest.mark.parametrize("cls", list(NESTED), ids=lambda cls: cls.__name__)
def test_every_resource_field_exists_in_asterisk_schema_with_a_compatible_type(
    cls: type[BaseModel],
) -> None:
    assert_matches_schema(cls, NESTED[cls])


def test_the_schema_check_rejects_a_field_asterisk_does_not_send() -> None:
    class Invented(models.AriModel):
        id: str
        sip_call_id: str

    with pytest.raises(AssertionError, match="does not send"):
        assert_matches_schema(Invented, "Channel")


def test_the_schema_check_rejects_requiring_an_optional_field() -> None:
    class TooStrict(models.AriModel):
        id: str
        channelvars: dict[str, str]

    with pytest.raises(AssertionError, match="required but optional"):
        assert_matches_schema(TooStrict, "Channel")


def test_each_event_type_literal_matches_its_class_name() -> None:
    for cls in EVENT_CLASSES:
        assert typing.get_args(cls.model_fields["type"].annotation) == (cls.__name__,)


def test_every_modelled_event_type_has_a_sample() -> None:
    sampled = {json.loads(path.read_text())["type"] for path in SAMPLES}
    missing = {cls.__name__ for cls in EVENT_CLASSES} - sampled
    assert not missing


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_every_sample_parses_to_the_model_named_by_its_type(path: Path) -> None:
    raw = path.read_bytes()
    event = parse_event(raw)
    expected = json.loads(raw)["type"]
    assert event.type == expected
    modelled = {cls.__name__ for cls in EVENT_CLASSES}
    assert isinstance(event, UnknownEvent) is (expected not in modelled)


def sample(name: str) -> bytes:
    return (DATA / "samples" / "events" / f"{name}.json").read_bytes()


def test_stasis_start_carries_the_dialled_number_caller_and_tz_aware_times() -> None:
    event = parse_event(sample("StasisStart"))
    assert isinstance(event, ev.StasisStart)
    assert event.args == ("4930123456",)
    assert event.application == "callcontrol"
    assert event.asterisk_id == "02:42:ac:11:00:02"
    assert event.channel.id == "1736936430.12"
    assert event.channel.caller.number == "+4915112345678"
    assert event.channel.dialplan.exten == "4930123456"
    assert event.channel.dialplan.priority == 1
    assert event.timestamp == datetime.datetime(2025, 1, 15, 10, 20, 30, 90000, tzinfo=datetime.UTC)
    assert event.channel.creationtime.utcoffset() == datetime.timedelta(0)
    assert event.replace_channel is None


def test_channel_destroyed_carries_the_q850_cause() -> None:
    event = parse_event(sample("ChannelDestroyed"))
    assert isinstance(event, ev.ChannelDestroyed)
    assert (event.cause, event.cause_txt) == (16, "Normal Clearing")


def test_hangup_request_without_cause_is_a_soft_hangup() -> None:
    event = parse_event(sample("ChannelHangupRequest_soft"))
    assert isinstance(event, ev.ChannelHangupRequest)
    assert event.cause is None
    assert event.soft is True


def test_dial_names_the_peer_leg_the_caller_and_the_status() -> None:
    event = parse_event(sample("Dial_answer"))
    assert isinstance(event, ev.Dial)
    assert event.dialstatus == "ANSWER"
    assert event.peer.id == "6f1c2a3e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"
    assert event.caller is not None and event.caller.id == "1736936430.12"


def test_playback_finished_carries_id_state_and_uris() -> None:
    event = parse_event(sample("PlaybackFinished"))
    assert isinstance(event, ev.PlaybackFinished)
    assert event.playback.id == "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
    assert event.playback.state == "done"
    assert event.playback.target_uri == "channel:1736936430.12"
    assert event.playback.media_uri.startswith("sound:/")


def test_recording_finished_carries_duration_and_failed_carries_cause() -> None:
    finished = parse_event(sample("RecordingFinished"))
    failed = parse_event(sample("RecordingFailed"))
    assert isinstance(finished, ev.RecordingFinished)
    assert isinstance(failed, ev.RecordingFailed)
    assert (finished.recording.state, finished.recording.duration) == ("done", 12)
    assert failed.recording.state == "failed"
    assert failed.recording.cause is not None


def test_bridge_events_carry_bridge_and_channel() -> None:
    event = parse_event(sample("ChannelLeftBridge"))
    assert isinstance(event, ev.ChannelLeftBridge)
    assert event.bridge.bridge_type == "mixing"
    assert event.bridge.channels == ("6f1c2a3e-8b4d-4e5f-9a0b-1c2d3e4f5a6b",)
    assert event.channel.id == "1736936430.12"


def test_global_varset_has_no_channel() -> None:
    event = parse_event(sample("ChannelVarset_global"))
    assert isinstance(event, ev.ChannelVarset)
    assert event.channel is None


def test_unmodelled_event_keeps_its_type_and_raw_json() -> None:
    event = parse_event(sample("unmodelled_ChannelConnectedLine"))
    assert isinstance(event, UnknownEvent)
    assert event.type == "ChannelConnectedLine"
    assert event.raw["channel"]["id"] == "1736936430.12"


def test_parser_accepts_text_as_well_as_bytes() -> None:
    assert parse_event(sample("StasisEnd").decode()) == parse_event(sample("StasisEnd"))


def test_fields_asterisk_adds_later_are_ignored() -> None:
    data = json.loads(sample("StasisEnd"))
    data["future_field"] = {"x": 1}
    data["channel"]["tenantid"] = "t-1"
    event = parse_event(json.dumps(data))
    assert isinstance(event, ev.StasisEnd)
    assert not hasattr(event, "future_field")


def test_events_are_immutable() -> None:
    event = parse_event(sample("StasisStart"))
    assert isinstance(event, ev.StasisStart)
    with pytest.raises(ValidationError):
        event.channel.state = "Up"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "malformed JSON"),
        (b"[1, 2]", "object"),
        (b'{"application": "callcontrol"}', "tag"),
        (b'{"type": 42, "application": "callcontrol"}', "tag"),
    ],
    ids=["broken", "empty", "array", "no-type", "numeric-type"],
)
def test_unreadable_messages_raise_a_protocol_error(raw: bytes, reason: str) -> None:
    with pytest.raises(AriProtocolError, match=reason):
        parse_event(raw)


def test_known_event_missing_a_required_field_raises_a_protocol_error_naming_it() -> None:
    data = json.loads(sample("ChannelDestroyed"))
    del data["cause"]
    with pytest.raises(AriProtocolError, match="cause"):
        parse_event(json.dumps(data))


def test_timestamp_without_time_zone_is_rejected() -> None:
    data = json.loads(sample("StasisEnd"))
    data["timestamp"] = "2025-01-15T10:20:30.123"
    with pytest.raises(AriProtocolError, match="timestamp"):
        parse_event(json.dumps(data))


def test_protocol_error_keeps_a_bounded_excerpt_of_the_message() -> None:
    with pytest.raises(AriProtocolError) as info:
        parse_event(b"{" + b"x" * 10_000)
    assert info.value.raw_excerpt is not None
    assert len(info.value.raw_excerpt) == 500


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
event_types = st.sampled_from([cls.__name__ for cls in EVENT_CLASSES]) | st.text(max_size=12)


@given(raw=st.binary(max_size=200))
def test_parser_raises_nothing_but_protocol_errors_on_arbitrary_bytes(raw: bytes) -> None:
    try:
        parse_event(raw)
    except AriProtocolError:
        pass


@given(
    type_=event_types,
    fields=st.dictionaries(
        st.sampled_from(["channel", "timestamp", "application", "cause", "playback", "args"]),
        json_values,
    ),
)
def test_parser_raises_nothing_but_protocol_errors_on_event_shaped_json(
    type_: str, fields: dict[str, Any]
) -> None:
    try:
        event = parse_event(json.dumps({"type": type_, **fields}))
    except AriProtocolError:
        return
    assert event.type == type_
