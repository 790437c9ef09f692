"""AriEventStream against a fake ARI WebSocket: events arrive in order, a lost or
dead socket is replaced, bad messages and failing callbacks are survived, and
cancelling stops everything."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from support.fake_ari import FakeAri, sample_event

from callcontrol.ari import events as ev
from callcontrol.ari.events import AriEvent
from callcontrol.ari.stream import AriEventStream, events_url


@dataclass
class Recorder:
    events: list[AriEvent] = field(default_factory=list)
    connected_calls: int = 0
    fail_on_connected: bool = False

    def on_event(self, event: AriEvent) -> None:
        self.events.append(event)

    async def on_connected(self) -> None:
        self.connected_calls += 1
        if self.fail_on_connected:
            raise RuntimeError("resync failed")


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def dtmf(digit: str) -> dict[str, Any]:
    return dict(sample_event("ChannelDtmfReceived"), digit=digit)


@dataclass
class Rig:
    fake: FakeAri
    recorder: Recorder
    stream: AriEventStream
    task: asyncio.Task[None]


def make_stream(
    session: aiohttp.ClientSession, base_url: str, recorder: Recorder, **options: Any
) -> AriEventStream:
    settings: dict[str, Any] = {
        "initial_backoff_s": 0.01,
        "max_backoff_s": 0.2,
        "heartbeat_s": 5.0,
    }
    settings.update(options)
    return AriEventStream(
        session,
        base_url,
        "callcontrol",
        "secret",
        "callcontrol",
        on_event=recorder.on_event,
        on_connected=recorder.on_connected,
        **settings,
    )


@asynccontextmanager
async def running_stream(fake: FakeAri, **options: Any) -> AsyncIterator[Rig]:
    recorder = Recorder()
    async with fake.running() as base_url, aiohttp.ClientSession() as session:
        stream = make_stream(session, base_url, recorder, **options)
        task = asyncio.create_task(stream.run())
        try:
            yield Rig(fake, recorder, stream, task)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with running_stream(FakeAri()) as rig:
        await wait_until(lambda: rig.stream.connected and rig.recorder.connected_calls == 1)
        yield rig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_events_url_switches_http_to_ws_and_appends_ari_events() -> None:
    assert str(events_url("http://127.0.0.1:8088/")) == "ws://127.0.0.1:8088/ari/events"
    assert str(events_url("https://pbx.example:8089")) == "wss://pbx.example:8089/ari/events"


async def test_stream_subscribes_our_app_only_with_basic_auth(rig: Rig) -> None:
    assert rig.fake.ws_queries == [{"app": "callcontrol", "subscribeAll": "false"}]


async def test_events_are_delivered_typed_and_in_order(rig: Rig) -> None:
    await rig.fake.send_event(sample_event("StasisStart"))
    for digit in "0123456789*#":
        await rig.fake.send_event(dtmf(digit))
    await rig.fake.send_event(sample_event("StasisEnd"))
    await wait_until(lambda: len(rig.recorder.events) == 14)
    assert isinstance(rig.recorder.events[0], ev.StasisStart)
    digits = [e.digit for e in rig.recorder.events if isinstance(e, ev.ChannelDtmfReceived)]
    assert "".join(digits) == "0123456789*#"
    assert isinstance(rig.recorder.events[-1], ev.StasisEnd)


async def test_unknown_event_types_are_delivered_as_unknown_events(rig: Rig) -> None:
    await rig.fake.send_event(sample_event("unmodelled_ChannelConnectedLine"))
    await wait_until(lambda: len(rig.recorder.events) == 1)
    assert isinstance(rig.recorder.events[0], ev.UnknownEvent)


async def test_a_malformed_message_is_counted_and_the_stream_goes_on(rig: Rig) -> None:
    await rig.fake.send_event("{this is not json")
    await rig.fake.send_event({"type": "StasisStart", "application": "callcontrol"})
    await rig.fake.send_event(sample_event("StasisEnd"))
    await wait_until(lambda: len(rig.recorder.events) == 1)
    assert isinstance(rig.recorder.events[0], ev.StasisEnd)
    assert rig.stream.protocol_errors == 2
    assert rig.stream.connected


async def test_a_failing_event_callback_does_not_stop_the_stream(rig: Rig) -> None:
    seen: list[str] = []

    def explode_on_first(event: AriEvent) -> None:
        seen.append(event.type)
        if len(seen) == 1:
            raise RuntimeError("handler bug")

    rig.stream._on_event = explode_on_first
    await rig.fake.send_event(sample_event("StasisStart"))
    await rig.fake.send_event(sample_event("StasisEnd"))
    await wait_until(lambda: len(seen) == 2)
    assert seen == ["StasisStart", "StasisEnd"]


async def test_a_dropped_socket_is_reconnected_and_resynced(rig: Rig) -> None:
    await rig.fake.send_event(sample_event("StasisStart"))
    await wait_until(lambda: len(rig.recorder.events) == 1)
    await rig.fake.drop()
    await wait_until(lambda: rig.fake.ws_connections == 2 and rig.recorder.connected_calls == 2)
    await wait_until(lambda: rig.stream.connected)
    await rig.fake.send_event(sample_event("StasisEnd"))
    await wait_until(lambda: len(rig.recorder.events) == 2)
    assert rig.stream.reconnects == 1
    assert [e.type for e in rig.recorder.events] == ["StasisStart", "StasisEnd"]


async def test_connected_flag_is_false_while_disconnected() -> None:
    fake = FakeAri()
    async with running_stream(fake, initial_backoff_s=0.5, max_backoff_s=0.5) as rig:
        await wait_until(lambda: rig.stream.connected)
        await fake.drop()
        await wait_until(lambda: not rig.stream.connected)
        assert fake.ws_connections == 1


async def test_a_failing_resync_does_not_stop_event_delivery() -> None:
    fake = FakeAri()
    async with running_stream(fake) as rig:
        rig.recorder.fail_on_connected = True
        await wait_until(lambda: rig.recorder.connected_calls == 1)
        await fake.send_event(sample_event("StasisStart"))
        await wait_until(lambda: len(rig.recorder.events) == 1)
        assert rig.stream.connected


async def test_stream_connects_once_asterisk_comes_up() -> None:
    port = free_port()
    fake = FakeAri()
    recorder = Recorder()
    async with aiohttp.ClientSession() as session:
        stream = make_stream(session, f"http://127.0.0.1:{port}", recorder, max_backoff_s=0.05)
        task = asyncio.create_task(stream.run())
        await asyncio.sleep(0.2)
        assert not stream.connected
        assert stream.connect_failures >= 1, "the refused attempts are counted"
        async with fake.running(port=port):
            try:
                await wait_until(lambda: stream.connected and recorder.connected_calls == 1)
                assert stream.reconnects == 0
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_refused_handshake_is_retried() -> None:
    fake = FakeAri(websocket_status=401)
    async with running_stream(fake, max_backoff_s=0.05) as rig:
        await asyncio.sleep(0.3)
        assert not rig.stream.connected
        fake.websocket_status = None
        await wait_until(lambda: rig.stream.connected)


async def test_backoff_grows_with_jitter_and_stays_under_the_cap() -> None:
    async with aiohttp.ClientSession() as session:
        stream = make_stream(
            session, "http://127.0.0.1:1", Recorder(), initial_backoff_s=0.1, max_backoff_s=10.0
        )
    delays = [stream._backoff(n) for n in range(12)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.4 <= delays[3] <= 0.8
    assert all(5.0 <= d <= 10.0 for d in delays[7:])


async def test_application_replaced_is_delivered_then_retried_after_max_backoff() -> None:
    fake = FakeAri()
    async with running_stream(fake, max_backoff_s=0.3) as rig:
        await wait_until(lambda: rig.stream.connected)
        replaced_at = time.monotonic()
        await fake.send_event(sample_event("ApplicationReplaced"))
        await wait_until(lambda: rig.stream.replaced == 1 and not rig.stream.connected)
        assert isinstance(rig.recorder.events[-1], ev.ApplicationReplaced)
        await wait_until(lambda: fake.ws_connections == 2)
        assert time.monotonic() - replaced_at >= 0.3
        await wait_until(lambda: rig.recorder.connected_calls == 2)


async def test_heartbeat_pings_the_server() -> None:
    fake = FakeAri(autoping=False)
    async with running_stream(fake, heartbeat_s=0.1, max_backoff_s=5.0) as rig:
        await wait_until(lambda: rig.stream.connected)
        await wait_until(lambda: fake.pings_received >= 1, timeout_s=1.0)


async def test_a_silent_dead_peer_is_detected_by_heartbeat_and_replaced() -> None:
    fake = FakeAri(autoping=False)  # never answers pings
    async with running_stream(fake, heartbeat_s=0.1, max_backoff_s=0.05) as rig:
        await wait_until(lambda: fake.ws_connections >= 2, timeout_s=2.0)
        assert rig.stream.reconnects >= 1


async def test_cancel_stops_the_stream_and_closes_the_socket() -> None:
    fake = FakeAri()
    before = asyncio.all_tasks()
    async with running_stream(fake) as rig:
        await wait_until(lambda: rig.stream.connected)
        rig.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await rig.task
        assert not rig.stream.connected
        await wait_until(lambda: fake.ws_closed == 1)
        assert fake.open_sockets == 0
    assert asyncio.all_tasks() - before == set()


async def test_cancel_during_backoff_stops_the_stream() -> None:
    recorder = Recorder()
    async with aiohttp.ClientSession() as session:
        stream = make_stream(
            session,
            f"http://127.0.0.1:{free_port()}",
            recorder,
            initial_backoff_s=5.0,
            max_backoff_s=5.0,
        )
        task = asyncio.create_task(stream.run())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1.0)
    assert recorder.connected_calls == 0
