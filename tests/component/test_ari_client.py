"""AriClient against a fake ARI server: each method sends the request Asterisk 22
documents (method, path, query, body) and failures become typed errors."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from support.fake_ari import FakeAri, RecordedRequest, sample_response

from callcontrol.ari.client import AriClient
from callcontrol.ari.errors import (
    AriBadRequest,
    AriConflict,
    AriError,
    AriNotFound,
    AriProtocolError,
    AriRequestError,
    AriUnauthorized,
    AriUnavailable,
)
from callcontrol.ari.models import Application, Bridge, Channel, LiveRecording, Playback

CH = "1736936430.12"


@dataclass
class Rig:
    fake: FakeAri
    client: AriClient
    base_url: str
    session: aiohttp.ClientSession

    @property
    def last(self) -> RecordedRequest:
        assert self.fake.requests, "no request reached the fake ARI"
        return self.fake.requests[-1]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    fake = FakeAri()
    async with fake.running() as base_url, aiohttp.ClientSession() as session:
        client = AriClient(session, base_url + "/", "callcontrol", "secret", "callcontrol")
        yield Rig(fake, client, base_url, session)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- channels -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method_name", "http_method", "path"),
    [
        ("answer", "POST", f"/ari/channels/{CH}/answer"),
        ("ring", "POST", f"/ari/channels/{CH}/ring"),
        ("ring_stop", "DELETE", f"/ari/channels/{CH}/ring"),
        ("progress", "POST", f"/ari/channels/{CH}/progress"),
    ],
)
async def test_simple_channel_operations_hit_their_documented_path(
    rig: Rig, method_name: str, http_method: str, path: str
) -> None:
    await getattr(rig.client, method_name)(CH)
    assert (rig.last.method, rig.last.path, rig.last.query) == (http_method, path, {})


async def test_hangup_with_a_q850_code_sends_reason_code_only(rig: Rig) -> None:
    assert await rig.client.hangup(CH, reason_code=17) is True
    assert (rig.last.method, rig.last.path) == ("DELETE", f"/ari/channels/{CH}")
    assert rig.last.query == {"reason_code": "17"}


async def test_hangup_with_a_named_reason_sends_reason_only(rig: Rig) -> None:
    await rig.client.hangup(CH, reason="busy")
    assert rig.last.query == {"reason": "busy"}


async def test_hangup_refuses_both_reason_and_reason_code(rig: Rig) -> None:
    with pytest.raises(ValueError, match="not both"):
        await rig.client.hangup(CH, reason="busy", reason_code=17)
    assert rig.fake.requests == []


async def test_hangup_of_a_channel_already_gone_returns_false(rig: Rig) -> None:
    rig.fake.respond(
        "DELETE", f"/ari/channels/{CH}", status=404, body={"message": "Channel not found"}
    )
    assert await rig.client.hangup(CH, reason_code=16) is False


async def test_hangup_of_a_channel_already_gone_raises_when_asked_to(rig: Rig) -> None:
    rig.fake.respond(
        "DELETE", f"/ari/channels/{CH}", status=404, body={"message": "Channel not found"}
    )
    with pytest.raises(AriNotFound):
        await rig.client.hangup(CH, missing_ok=False)


async def test_play_sends_media_list_comma_separated_and_returns_the_playback(rig: Rig) -> None:
    rig.fake.respond(
        "POST", f"/ari/channels/{CH}/play/pb-1", status=201, body=sample_response("playback")
    )
    playback = await rig.client.play(CH, ["sound:/g/welcome", "sound:beep"], "pb-1")
    assert rig.last.query == {"media": "sound:/g/welcome,sound:beep"}
    assert isinstance(playback, Playback)
    assert playback.state == "queued"


async def test_play_of_one_media_sends_it_verbatim(rig: Rig) -> None:
    rig.fake.respond(
        "POST", f"/ari/channels/{CH}/play/pb-2", status=201, body=sample_response("playback")
    )
    await rig.client.play(CH, "sound:http://127.0.0.1:8080/m/a.wav", "pb-2", lang="de")
    assert rig.last.query == {"media": "sound:http://127.0.0.1:8080/m/a.wav", "lang": "de"}


async def test_stop_playback_deletes_the_playback(rig: Rig) -> None:
    await rig.client.stop_playback("pb-1")
    assert (rig.last.method, rig.last.path) == ("DELETE", "/ari/playbacks/pb-1")


async def test_create_channel_puts_variables_in_the_json_body(rig: Rig) -> None:
    rig.fake.respond("POST", "/ari/channels/create", body=sample_response("channel_created"))
    variables = {"CALLERID(num)": "+4915112345678", "PJSIP_HEADER(add,X-Did)": "4930123456"}
    channel = await rig.client.create_channel(
        "PJSIP/+4930999888@customer",
        "leg-1",
        originator=CH,
        variables=variables,
        formats="ulaw,alaw",
    )
    assert rig.last.query == {
        "endpoint": "PJSIP/+4930999888@customer",
        "app": "callcontrol",
        "channelId": "leg-1",
        "originator": CH,
        "formats": "ulaw,alaw",
    }
    assert rig.last.json_body == {"variables": variables}
    assert rig.last.content_type == "application/json"
    assert isinstance(channel, Channel)
    assert channel.state == "Down"


async def test_create_channel_without_variables_sends_no_body(rig: Rig) -> None:
    rig.fake.respond("POST", "/ari/channels/create", body=sample_response("channel_created"))
    await rig.client.create_channel("PJSIP/x@customer", "leg-1")
    assert rig.last.json_body is None
    assert "originator" not in rig.last.query


async def test_dial_passes_caller_and_timeout(rig: Rig) -> None:
    await rig.client.dial("leg-1", caller=CH, timeout_s=25)
    assert (rig.last.method, rig.last.path) == ("POST", "/ari/channels/leg-1/dial")
    assert rig.last.query == {"caller": CH, "timeout": "25"}


async def test_originate_posts_to_channels_with_app_and_variables(rig: Rig) -> None:
    rig.fake.respond("POST", "/ari/channels", body=sample_response("channel_created"))
    await rig.client.originate(
        "PJSIP/+4930999888@customer",
        "leg-2",
        app_args="outbound",
        caller_id="+4930123456",
        timeout_s=30,
        variables={"X": "1"},
    )
    assert rig.last.path == "/ari/channels"
    assert rig.last.query == {
        "endpoint": "PJSIP/+4930999888@customer",
        "app": "callcontrol",
        "channelId": "leg-2",
        "appArgs": "outbound",
        "callerId": "+4930123456",
        "timeout": "30",
    }
    assert rig.last.json_body == {"variables": {"X": "1"}}


async def test_set_variable_sends_name_and_value(rig: Rig) -> None:
    await rig.client.set_variable(CH, "CONNECTEDLINE(num)", "+4930123456")
    assert rig.last.path == f"/ari/channels/{CH}/variable"
    assert rig.last.query == {"variable": "CONNECTEDLINE(num)", "value": "+4930123456"}


async def test_get_and_list_channels_return_channel_models(rig: Rig) -> None:
    rig.fake.respond("GET", f"/ari/channels/{CH}", body=sample_response("channel"))
    rig.fake.respond("GET", "/ari/channels", body=sample_response("channels"))
    channel = await rig.client.get_channel(CH)
    channels = await rig.client.list_channels()
    assert channel.id == CH
    assert [c.state for c in channels] == ["Up", "Up"]


async def test_record_sends_every_documented_parameter(rig: Rig) -> None:
    rig.fake.respond(
        "POST", f"/ari/channels/{CH}/record", status=201, body=sample_response("live_recording")
    )
    recording = await rig.client.record(
        CH, "rec-1", max_duration_seconds=120, max_silence_seconds=5, beep=True
    )
    assert rig.last.query == {
        "name": "rec-1",
        "format": "wav",
        "maxDurationSeconds": "120",
        "maxSilenceSeconds": "5",
        "beep": "true",
        "ifExists": "fail",
        "terminateOn": "none",
    }
    assert isinstance(recording, LiveRecording)


async def test_continue_in_dialplan_sends_only_given_targets(rig: Rig) -> None:
    await rig.client.continue_in_dialplan(CH, context="fallback", priority=1)
    assert rig.last.path == f"/ari/channels/{CH}/continue"
    assert rig.last.query == {"context": "fallback", "priority": "1"}


# -- bridges, recordings, applications, asterisk --------------------------------


async def test_create_bridge_posts_type_our_id_and_our_app_as_its_name(rig: Rig) -> None:
    rig.fake.respond("POST", "/ari/bridges", body=sample_response("bridge"))
    bridge = await rig.client.create_bridge("br-1")
    assert rig.last.query == {"type": "mixing", "bridgeId": "br-1", "name": rig.client.app}
    assert isinstance(bridge, Bridge)


async def test_list_bridges_parses_every_bridge(rig: Rig) -> None:
    rig.fake.respond("GET", "/ari/bridges", body=[sample_response("bridge")])
    bridges = await rig.client.list_bridges()
    assert [type(b) for b in bridges] == [Bridge] and rig.last.path == "/ari/bridges"


async def test_global_variables_are_read_and_written(rig: Rig) -> None:
    rig.fake.respond("GET", "/ari/asterisk/variable", body={"value": "me;12.5"})
    assert await rig.client.get_global_variable("LEASE") == "me;12.5"
    assert rig.last.query == {"variable": "LEASE"}
    await rig.client.set_global_variable("LEASE", "you;1.0")
    assert (rig.last.method, rig.last.query) == ("POST", {"variable": "LEASE", "value": "you;1.0"})


async def test_add_and_remove_channels_send_a_comma_separated_list(rig: Rig) -> None:
    await rig.client.add_channel("br-1", [CH, "leg-1"])
    added = rig.last
    await rig.client.remove_channel("br-1", ["leg-1"])
    assert (added.path, added.query) == ("/ari/bridges/br-1/addChannel", {"channel": f"{CH},leg-1"})
    assert (rig.last.path, rig.last.query) == (
        "/ari/bridges/br-1/removeChannel",
        {"channel": "leg-1"},
    )


async def test_destroy_bridge_deletes_it(rig: Rig) -> None:
    await rig.client.destroy_bridge("br-1")
    assert (rig.last.method, rig.last.path) == ("DELETE", "/ari/bridges/br-1")


async def test_stored_recording_file_comes_back_as_bytes(rig: Rig) -> None:
    audio = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256))
    rig.fake.respond("GET", "/ari/recordings/stored/rec-1/file", raw=audio)
    assert await rig.client.get_stored_recording_file("rec-1") == audio


async def test_recording_cleanup_and_stop_hit_their_paths(rig: Rig) -> None:
    await rig.client.delete_stored_recording("rec-1")
    deleted = rig.last
    await rig.client.stop_live_recording("rec-2")
    assert (deleted.method, deleted.path) == ("DELETE", "/ari/recordings/stored/rec-1")
    assert (rig.last.method, rig.last.path) == ("POST", "/ari/recordings/live/rec-2/stop")


async def test_event_filter_is_put_as_type_objects(rig: Rig) -> None:
    rig.fake.respond(
        "PUT", "/ari/applications/callcontrol/eventFilter", body=sample_response("application")
    )
    application = await rig.client.set_event_filter(disallowed=["ChannelVarset"])
    assert rig.last.json_body == {"disallowed": [{"type": "ChannelVarset"}]}
    assert isinstance(application, Application)
    assert application.events_disallowed == ({"type": "ChannelVarset"},)


async def test_event_filter_with_both_lists_sends_both(rig: Rig) -> None:
    rig.fake.respond(
        "PUT", "/ari/applications/callcontrol/eventFilter", body=sample_response("application")
    )
    await rig.client.set_event_filter(allowed=["StasisStart", "StasisEnd"], disallowed=[])
    assert rig.last.json_body == {
        "allowed": [{"type": "StasisStart"}, {"type": "StasisEnd"}],
        "disallowed": [],
    }


async def test_get_application_and_info_parse_their_bodies(rig: Rig) -> None:
    rig.fake.respond("GET", "/ari/applications/callcontrol", body=sample_response("application"))
    rig.fake.respond("GET", "/ari/asterisk/info", body=sample_response("asterisk_info"))
    application = await rig.client.get_application()
    info = await rig.client.info()
    assert application.channel_ids == (CH,)
    assert info.system is not None and info.system.version == "22.1.0"


async def test_ids_are_quoted_as_one_path_segment(rig: Rig) -> None:
    await rig.client.answer("a/b c")
    assert rig.last.raw_path == "/ari/channels/a%2Fb%20c/answer"


# -- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, AriBadRequest),
        (422, AriBadRequest),
        (401, AriUnauthorized),
        (403, AriUnauthorized),
        (404, AriNotFound),
        (409, AriConflict),
        (412, AriConflict),
        (500, AriUnavailable),
        (503, AriUnavailable),
    ],
)
async def test_error_statuses_map_to_typed_errors_with_asterisk_message(
    rig: Rig, status: int, error: type[AriRequestError]
) -> None:
    rig.fake.respond(
        "POST",
        f"/ari/channels/{CH}/answer",
        status=status,
        body={"message": "Channel not in Stasis application"},
    )
    with pytest.raises(error) as info:
        await rig.client.answer(CH)
    assert info.value.status == status
    assert info.value.method == "POST"
    assert info.value.path == f"/channels/{CH}/answer"
    assert info.value.message == "Channel not in Stasis application"


async def test_error_without_json_body_keeps_the_text(rig: Rig) -> None:
    rig.fake.respond("POST", f"/ari/channels/{CH}/answer", status=500, raw=b"Internal Error")
    with pytest.raises(AriUnavailable, match="Internal Error"):
        await rig.client.answer(CH)


async def test_wrong_credentials_raise_unauthorized(rig: Rig) -> None:
    client = AriClient(rig.session, rig.base_url, "callcontrol", "wrong", "callcontrol")
    with pytest.raises(AriUnauthorized):
        await client.answer(CH)


async def test_connection_refused_raises_unavailable_without_status() -> None:
    async with aiohttp.ClientSession() as session:
        client = AriClient(session, f"http://127.0.0.1:{free_port()}", "u", "p", "callcontrol")
        with pytest.raises(AriUnavailable) as info:
            await client.answer(CH)
    assert info.value.status is None
    assert isinstance(info.value, AriError)


async def test_slow_answer_raises_unavailable_after_the_request_timeout(rig: Rig) -> None:
    rig.fake.respond("POST", f"/ari/channels/{CH}/answer", status=204, delay_s=2.0)
    client = AriClient(
        rig.session, rig.base_url, "callcontrol", "secret", "callcontrol", request_timeout_s=0.1
    )
    with pytest.raises(AriUnavailable, match=r"no answer within 0\.1 s"):
        await client.answer(CH)


async def test_unexpected_body_raises_protocol_error(rig: Rig) -> None:
    rig.fake.respond("GET", f"/ari/channels/{CH}", body={"id": CH})
    with pytest.raises(AriProtocolError, match="Channel"):
        await rig.client.get_channel(CH)


async def test_base_url_with_or_without_trailing_slash_reaches_ari(rig: Rig) -> None:
    for base in (rig.base_url, rig.base_url + "/"):
        await AriClient(rig.session, base, "callcontrol", "secret", "callcontrol").answer(CH)
    assert [r.path for r in rig.fake.requests] == [f"/ari/channels/{CH}/answer"] * 2
