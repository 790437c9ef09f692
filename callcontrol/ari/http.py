"""A small HTTP/1.1 client for ARI's REST requests: keep-alive connections, no frills.

A forwarded call costs about eight REST requests; through aiohttp each one cost
the engine 0.15-0.3 ms of CPU (request and response objects, URL and header
handling, cookie jar, timers, tracing hooks), which on a machine shared with
Asterisk is capacity taken from Asterisk. ARI needs little of that: one host,
one fixed `Authorization` header, small bodies with `Content-Length`. So this
module writes the request bytes itself and reads the response with a tiny
parser on an `asyncio.Protocol`. The rules it keeps:

- Connections are HTTP/1.1 keep-alive, one request at a time each, reused
  last-in first-out; at most `max_connections` are open, further requests wait
  for one. A connection idle for longer than `idle_timeout_s` is closed
  instead of reused, before Asterisk's own keep-alive limit (http.conf
  `session_keep_alive`, 15 s by default) can close it under a request.
- A response is read fully (`Content-Length`, chunked, or until close) and
  returned as (status, reason, body). Anything unexpected on the connection
  (a malformed response, an early close, a timeout) closes that connection.
- A request that was written to a reused connection which then closed without
  an answer is retried once on a fresh connection if its method is idempotent
  (GET, PUT, DELETE, HEAD) - the server most likely closed it as idle.
- Errors come out as `OSError` (connection failure, early close) or
  `TimeoutError` (no full answer within the timeout); the ARI client turns
  them into `AriUnavailable`.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import cast
from urllib.parse import urlsplit

__all__ = ["HttpConnectionPool", "HttpResponse"]

HttpResponse = tuple[int, str, bytes]
"""(status, reason, body)"""

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_MAX_HEAD = 64 * 1024


class _ProtocolError(OSError):
    """The peer sent something that is not an HTTP/1.x response we can read."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; reads one response per request."""

    __slots__ = (
        "_body_end",
        "_buffer",
        "_chunked",
        "_head",
        "_length",
        "_until_close",
        "_waiter",
        "closed",
        "counted",
        "idle_since",
        "keep_alive",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = True
        """Counted in the pool's open connections (until forgotten)."""
        self.keep_alive = True
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._head: tuple[int, str] | None = None
        self._length = -1
        self._chunked = False
        self._until_close = False
        self._body_end = 0

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not subclasses of asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None:
            if self._buffer.strip():  # bytes nobody asked for: the stream is out of step
                self.close()
            return
        try:
            response = self._parse()
        except _ProtocolError as exc:
            self._fail(exc)
            self.close()
            return
        if response is not None:
            waiter, self._waiter = self._waiter, None
            if not waiter.done():
                waiter.set_result(response)

    def eof_received(self) -> bool | None:
        if self._waiter is not None and self._until_close and self._head is not None:
            status, reason = self._head
            body = bytes(self._buffer[self._body_end :])
            waiter, self._waiter = self._waiter, None
            self.keep_alive = False
            if not waiter.done():
                waiter.set_result((status, reason, body))
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("connection closed before a complete answer"))

    # -- use ------------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[HttpResponse]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._head = None
        self._length = -1
        self._chunked = False
        self._until_close = False
        self._body_end = 0
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # -- parsing --------------------------------------------------------------------

    def _parse(self) -> HttpResponse | None:
        buffer = self._buffer
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise _ProtocolError("response head too large")
                return None
            self._read_head(bytes(buffer[:end]).decode("latin-1"))
            del buffer[: end + 4]
        assert self._head is not None
        status, reason = self._head
        if self._chunked:
            body = self._dechunk()
            if body is None:
                return None
        elif self._length >= 0:
            if len(buffer) < self._length:
                return None
            body = bytes(buffer[: self._length])
            del buffer[: self._length]
        elif self._until_close:
            return None  # finished by eof_received
        else:
            body = b""
        if buffer:
            raise _ProtocolError("more bytes than the response announced")
        return status, reason, body

    def _read_head(self, head: str) -> None:
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise _ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        keep_alive = version != "HTTP/1.0"
        length = -1
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                value = value.strip()
                if not value.isdigit():
                    raise _ProtocolError(f"bad Content-Length {value[:40]!r}")
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                token = value.strip().lower()
                if token == "close":
                    keep_alive = False
                elif token == "keep-alive":
                    keep_alive = True
        self._head = (status, reason)
        self.keep_alive = keep_alive
        self._chunked = chunked
        no_body = status in (204, 304) or 100 <= status < 200
        self._length = 0 if no_body else (-1 if chunked else length)
        self._until_close = not no_body and not chunked and length < 0
        if self._until_close:
            self.keep_alive = False

    def _dechunk(self) -> bytes | None:
        """The whole chunked body once it is complete (then removed from the buffer)."""
        buffer = self._buffer
        position = 0
        parts: list[bytes] = []
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size_text = bytes(buffer[position:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            start = line_end + 2
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return None
                del buffer[: trailer_end + 4]
                return b"".join(parts)
            if len(buffer) < start + size + 2:
                return None
            parts.append(bytes(buffer[start : start + size]))
            position = start + size + 2


class HttpConnectionPool:
    """Keep-alive HTTP/1.1 connections to one server (`http://` or `https://`)."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 100,
        idle_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        default_port = self._port == (443 if parts.scheme == "https" else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.host_header = host if default_port else f"{host}:{self._port}"
        self._max = max_connections
        self._idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def request(self, method: str, request: bytes, timeout_s: float) -> HttpResponse:
        """Send `request` (complete bytes: head and body); return the response.

        Raises `OSError` if no connection could be made or it broke, and
        `TimeoutError` when no complete answer came within `timeout_s`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        connection = await self._acquire(deadline)
        try:
            try:
                response = await self._exchange(connection, request, deadline)
            except ConnectionResetError:
                if not (method in _IDEMPOTENT and connection.idle_since):
                    raise  # a fresh connection, or a request that must not be repeated
                self._discard(connection)
                connection = await self._acquire(deadline, fresh=True)
                response = await self._exchange(connection, request, deadline)
        except BaseException:
            self._discard(connection)
            raise
        self._release(connection)
        return response

    async def _exchange(
        self, connection: _Connection, request: bytes, deadline: float
    ) -> HttpResponse:
        waiter = connection.send(request)
        loop = asyncio.get_running_loop()
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    async def _acquire(self, deadline: float, *, fresh: bool = False) -> _Connection:
        if self._closed:
            raise ConnectionAbortedError("connection pool closed")
        now = time.monotonic()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if connection.closed:
                self._forget(connection)
            elif now - connection.idle_since > self._idle_timeout_s:
                self._discard(connection)
            else:
                return connection
        while self._open >= self._max:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if self._idle and not fresh:
                return await self._acquire(deadline)
        self._open += 1
        try:
            return await self._connect(deadline)
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        timeout_at = min(deadline, loop.time() + self._connect_timeout_s)
        async with asyncio.timeout_at(timeout_at):
            _, connection = await loop.create_connection(
                _Connection, self._host, self._port, ssl=self._ssl
            )
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.closed or not connection.keep_alive or self._closed:
            self._discard(connection)
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._wake()

    def _discard(self, connection: _Connection) -> None:
        if not connection.closed:
            connection.close()
        self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)
        if connection.counted:
            connection.counted = False
            self._open -= 1
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop())


def _expire(waiter: asyncio.Future[HttpResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
