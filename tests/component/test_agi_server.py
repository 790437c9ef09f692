"""The FastAGI server against scripted fake AGI clients on a real loopback socket:
a well-behaved Asterisk, and the ones that break the protocol (gone mid-header,
an endless header, silent, never replying). None of them may hang the server
or reach a handler with half a header."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from callcontrol.agi.protocol import AgiCommandError, AgiProtocolError, get_variable, set_variable
from callcontrol.agi.server import AgiServer, AgiSession

HEADER = (
    b"agi_network: yes\n"
    b"agi_network_script: inbound\n"
    b"agi_request: agi://127.0.0.1/inbound\n"
    b"agi_channel: PJSIP/carrier-00000001\n"
    b"agi_uniqueid: 1733115600.1\n"
    b"agi_callerid: 4915112345678\n"
    b"agi_arg_1: 4930123456\n"
    b"\n"
)


class Recorder:
    def __init__(self) -> None:
        self.sessions: list[AgiSession] = []
        self.results: list[object] = []
        self.done = asyncio.Event()

    async def handle(self, session: AgiSession) -> None:
        self.sessions.append(session)
        try:
            self.results.append(await session.command(set_variable("CC_ACTION", "reject")))
            self.results.append(await session.command(get_variable("CHANNEL(name)")))
        except (AgiCommandError, AgiProtocolError) as exc:
            self.results.append(exc)
            raise
        finally:
            self.done.set()


async def server(recorder: Recorder, **kwargs: float) -> AgiServer:
    agi = AgiServer({"inbound": recorder.handle}, host="127.0.0.1", port=0, **kwargs)  # type: ignore[arg-type]
    await agi.start()
    return agi


async def connect(agi: AgiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", agi.port)


async def test_a_request_reaches_its_handler_and_commands_get_their_replies() -> None:
    recorder = Recorder()
    agi = await server(recorder)
    reader, writer = await connect(agi)
    writer.write(HEADER)
    assert await reader.readline() == b'SET VARIABLE CC_ACTION "reject"\n'
    writer.write(b"200 result=1\n")
    assert await reader.readline() == b'GET VARIABLE "CHANNEL(name)"\n'
    writer.write(b"HANGUP\n200 result=1 (PJSIP/carrier-00000001)\n")  # a hang-up notice first
    assert await reader.read() == b""  # the server closed the connection
    session = recorder.sessions[0]
    assert session.header.arg(1) == "4930123456" and session.hung_up
    assert [getattr(r, "data", None) for r in recorder.results] == [None, "PJSIP/carrier-00000001"]
    writer.close()
    await agi.close()
    assert (agi.requests, agi.failures) == (1, 0)


async def test_a_client_gone_mid_header_is_dropped_without_calling_the_handler() -> None:
    recorder = Recorder()
    agi = await server(recorder)
    started = time.monotonic()
    _, writer = await connect(agi)
    writer.write(HEADER[:60])  # cut inside a line
    await writer.drain()
    writer.close()
    await _until(lambda: agi.failures == 1)
    assert time.monotonic() - started < 2 and recorder.sessions == []
    # the loop is not spinning: a good request right after is served
    reader, writer = await connect(agi)
    writer.write(HEADER)
    assert (await reader.readline()).startswith(b"SET VARIABLE")
    writer.close()
    await agi.close()


async def test_an_oversized_header_is_refused_and_the_connection_closed() -> None:
    recorder = Recorder()
    agi = await server(recorder)
    reader, writer = await connect(agi)
    line = b"agi_padding: " + b"x" * 200 + b"\n"
    try:
        for _ in range(100):  # 21 KB of valid-looking lines, never an empty one
            writer.write(line)
        await writer.drain()
    except ConnectionError:
        pass
    assert await asyncio.wait_for(reader.read(), 2) == b""
    assert agi.failures == 1 and recorder.sessions == []
    writer.close()
    await agi.close()


async def test_one_line_beyond_the_limit_is_refused_too() -> None:
    agi = await server(Recorder())
    reader, writer = await connect(agi)
    try:
        writer.write(b"agi_request: " + b"y" * 20_000 + b"\n\n")
        await writer.drain()
    except ConnectionError:
        pass
    assert await asyncio.wait_for(reader.read(), 2) == b""
    assert agi.failures == 1
    writer.close()
    await agi.close()


async def test_a_silent_client_is_closed_after_the_header_timeout() -> None:
    recorder = Recorder()
    agi = await server(recorder, header_timeout_s=0.3)
    reader, writer = await connect(agi)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 3) == b""
    assert 0.25 < time.monotonic() - started < 2
    assert agi.failures == 1 and recorder.sessions == []
    writer.close()
    await agi.close()


async def test_a_command_without_reply_times_out_and_ends_only_that_request() -> None:
    recorder = Recorder()
    agi = await server(recorder, command_timeout_s=0.3)
    reader, writer = await connect(agi)
    writer.write(HEADER)
    await reader.readline()  # the command; no reply
    await asyncio.wait_for(recorder.done.wait(), 3)
    assert isinstance(recorder.results[0], AgiProtocolError)
    assert await asyncio.wait_for(reader.read(), 2) == b""
    assert agi.failures == 1
    writer.close()
    await agi.close()


async def test_a_refused_command_is_an_error_not_a_value() -> None:
    recorder = Recorder()
    agi = await server(recorder)
    reader, writer = await connect(agi)
    writer.write(HEADER)
    await reader.readline()
    writer.write(b"520-Invalid command syntax.  Proper usage follows:\nUsage: ...\n")
    writer.write(b"520 End of proper usage.\n")
    await asyncio.wait_for(recorder.done.wait(), 3)
    assert isinstance(recorder.results[0], AgiCommandError) and recorder.results[0].code == 520
    writer.close()
    await agi.close()


async def test_an_unknown_script_and_a_non_agi_peer_are_turned_away() -> None:
    agi = await server(Recorder())
    reader, writer = await connect(agi)
    writer.write(HEADER.replace(b"inbound", b"nosuch"))
    assert await asyncio.wait_for(reader.read(), 2) == b""
    reader, writer2 = await connect(agi)
    writer2.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 2) == b""
    assert agi.failures == 2
    writer.close()
    writer2.close()
    await agi.close()


async def test_closing_the_server_ends_requests_still_running() -> None:
    recorder = Recorder()
    agi = await server(recorder, command_timeout_s=30)
    reader, writer = await connect(agi)
    writer.write(HEADER)
    await reader.readline()
    await asyncio.wait_for(agi.close(), 2)
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()


async def _until(condition: object, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "case",
    [
        test_a_request_reaches_its_handler_and_commands_get_their_replies,
        test_a_client_gone_mid_header_is_dropped_without_calling_the_handler,
        test_an_oversized_header_is_refused_and_the_connection_closed,
        test_a_command_without_reply_times_out_and_ends_only_that_request,
        test_closing_the_server_ends_requests_still_running,
    ],
)
def test_the_same_on_uvloop(case: Callable[[], Awaitable[None]]) -> None:
    """The engine runs uvloop (whose transports are not ``asyncio.Transport``
    subclasses); the cases above run on asyncio's own loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(case(), 10))
