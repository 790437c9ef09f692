"""The ARI client's own HTTP/1.1 connections (callcontrol/ari/http.py) against raw
servers: each kind of response framing is read, keep-alive connections are
reused and bounded, and a broken or slow connection is never reused. Every test
runs on the standard event loop and again on uvloop (the engine's loop in
production: callcontrol.app.new_event_loop) - see the end of the module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import uvloop

from callcontrol.ari.http import HttpConnectionPool

Answer = Callable[[bytes], bytes | None]
"""Given one request head, the bytes to send back (None: close the connection)."""


def request(method: str = "GET", target: str = "/ari/x") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


class RawServer:
    """A TCP server that answers each request head with whatever `answer` returns."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                reply = self.answer(head)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def drop_all(self) -> None:
        for writer in self.writers:
            writer.close()


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[RawServer, str]]:
    raw = RawServer(answer)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield raw, f"http://127.0.0.1:{port}"
    finally:
        raw.drop_all()
        server.close()
        await server.wait_closed()


def fixed(reply: bytes) -> Answer:
    return lambda head: reply


async def test_a_content_length_body_is_read_and_the_connection_reused() -> None:
    reply = (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{"a": 1 }'
    )
    async with serving(fixed(reply)) as (server, url):
        pool = HttpConnectionPool(url)
        for _ in range(3):
            assert await pool.request("GET", request(), 1.0) == (200, "OK", b'{"a": 1 }')
        await pool.close()
    assert server.connections == 1


async def test_a_no_content_answer_has_an_empty_body() -> None:
    async with serving(fixed(b"HTTP/1.1 204 No Content\r\n\r\n")) as (_, url):
        pool = HttpConnectionPool(url)
        assert await pool.request("POST", request("POST"), 1.0) == (204, "No Content", b"")
        await pool.close()


async def test_a_chunked_body_is_reassembled() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n"
    )
    async with serving(fixed(reply)) as (server, url):
        pool = HttpConnectionPool(url)
        assert await pool.request("GET", request(), 1.0) == (200, "OK", b"Wikipedia")
        assert await pool.request("GET", request(), 1.0) == (200, "OK", b"Wikipedia")
        await pool.close()
    assert server.connections == 1


async def test_a_body_without_length_ends_with_the_connection_which_is_not_reused() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = HttpConnectionPool(f"http://127.0.0.1:{port}")
    try:
        assert await pool.request("GET", request(), 1.0) == (200, "OK", b"all of it")
        assert pool.open_connections == 0
    finally:
        server.close()
        await server.wait_closed()


async def test_connection_close_in_the_answer_is_honoured() -> None:
    reply = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    async with serving(fixed(reply)) as (server, url):
        pool = HttpConnectionPool(url)
        await pool.request("DELETE", request("DELETE"), 1.0)
        await pool.request("DELETE", request("DELETE"), 1.0)
        await pool.close()
    assert server.connections == 2


async def test_an_idempotent_request_on_a_connection_closed_while_idle_is_sent_again() -> None:
    replies = iter([b"HTTP/1.1 204 No Content\r\n\r\n", None, b"HTTP/1.1 204 No Content\r\n\r\n"])
    async with serving(lambda head: next(replies)) as (server, url):
        pool = HttpConnectionPool(url)
        await pool.request("DELETE", request("DELETE"), 1.0)
        # The server closes the kept connection when the second request arrives.
        status, _, _ = await pool.request("DELETE", request("DELETE"), 1.0)
        await pool.close()
    assert status == 204
    assert server.connections == 2


async def test_a_post_on_a_connection_that_broke_is_not_sent_twice() -> None:
    replies = iter([b"HTTP/1.1 204 No Content\r\n\r\n", None])
    async with serving(lambda head: next(replies)) as (server, url):
        pool = HttpConnectionPool(url)
        await pool.request("POST", request("POST"), 1.0)
        with pytest.raises(ConnectionResetError):
            await pool.request("POST", request("POST"), 1.0)
        await pool.close()
    assert len(server.requests) == 2
    assert pool.open_connections == 0


async def test_a_connection_idle_too_long_is_replaced() -> None:
    async with serving(fixed(b"HTTP/1.1 204 No Content\r\n\r\n")) as (server, url):
        pool = HttpConnectionPool(url, idle_timeout_s=0.05)
        await pool.request("GET", request(), 1.0)
        await asyncio.sleep(0.1)
        await pool.request("GET", request(), 1.0)
        await pool.close()
    assert server.connections == 2


async def test_no_answer_in_time_raises_timeout_and_drops_the_connection() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = HttpConnectionPool(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TimeoutError):
            await pool.request("GET", request(), 0.1)
        assert pool.open_connections == 0
    finally:
        server.close()
        await server.wait_closed()


async def test_connections_are_bounded_and_waiting_requests_get_a_released_one() -> None:
    gate = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await gate.wait()
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = HttpConnectionPool(f"http://127.0.0.1:{port}", max_connections=2)
    try:
        tasks = [asyncio.ensure_future(pool.request("GET", request(), 2.0)) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert pool.open_connections == 2
        gate.set()
        results = await asyncio.gather(*tasks)
        assert [status for status, _, _ in results] == [204] * 5
        assert pool.open_connections == 2
        await pool.close()
        assert pool.open_connections == 0
    finally:
        server.close()
        await server.wait_closed()


async def test_a_refused_connection_raises_oserror() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = HttpConnectionPool(f"http://127.0.0.1:{port}")
    with pytest.raises(OSError):
        await pool.request("GET", request(), 1.0)
    assert pool.open_connections == 0


async def test_garbage_instead_of_a_status_line_is_an_error_and_closes() -> None:
    async with serving(fixed(b"SSH-2.0-OpenSSH\r\n\r\n")) as (_, url):
        pool = HttpConnectionPool(url)
        with pytest.raises(OSError, match="status line"):
            await pool.request("GET", request(), 1.0)
        assert pool.open_connections == 0


_ON_ASYNCIO = sorted(
    name
    for name, value in list(globals().items())
    if name.startswith("test_") and asyncio.iscoroutinefunction(value)
)


@pytest.mark.parametrize("name", _ON_ASYNCIO)
def test_on_uvloop(name: str) -> None:
    """The same test on uvloop, whose transports are not asyncio.Transport subclasses."""
    uvloop.run(globals()[name]())
