"""A small asyncio FastAGI server: a protocol per Asterisk connection, a task per request.

Panoramisk's server is not used (ASTERISK_FACTS.md: a client gone mid-header
makes its header loop spin forever). Rules kept here:

- the header is read under one deadline (``header_timeout_s``) and one size
  limit (``MAX_HEADER_BYTES``); EOF, an oversized or a malformed header closes
  the connection without calling any handler;
- every command waits for its reply at most ``command_timeout_s``; a ``HANGUP``
  line before the reply is noted (``session.hung_up``) and skipped;
- a connection always ends closed, whatever the handler did; closing the
  server cancels the connections still open and waits for them;
- the connection is an ``asyncio.Protocol``, not a stream pair: a request is
  a header, a command or two and their replies, and the bytes are parsed
  where they arrive (no reader, writer and drain per connection; the
  replies are small, so nothing is ever paused for flow control);
- a handler's exception is logged with the script name and ends only its own
  connection. Asterisk sets ``AGISTATUS=SUCCESS`` for any connection that
  closes after a complete header, so the dialplan never trusts AGISTATUS
  alone: a call goes on only if the handler set a ``CC_ACTION`` that
  ``callcontrol-agi-run`` has (a whole decision).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

import structlog

from callcontrol.agi.protocol import (
    HANGUP_LINE,
    MAX_HEADER_BYTES,
    AgiCommandError,
    AgiHeader,
    AgiProtocolError,
    AgiReply,
)

log = structlog.get_logger(__name__)

_MAX_REPLY_LINES = 64


class AgiSession:
    """One AGI request: its header, and commands with their replies."""

    def __init__(
        self, header: AgiHeader, connection: _AgiConnection, *, command_timeout_s: float
    ) -> None:
        self.header = header
        self._connection = connection
        self._timeout = command_timeout_s
        self.hung_up = False

    async def command(self, line: str) -> AgiReply:
        """Send one command; its ``200`` reply, or AgiCommandError/AgiProtocolError."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._reply(self._connection.send(line.encode("utf-8") + b"\n"))
        except TimeoutError as exc:
            raise AgiProtocolError(f"no reply within {self._timeout}s to {line[:40]!r}") from exc

    async def _reply(self, first: Awaitable[str]) -> AgiReply:
        in_usage = False
        line = await first
        for _ in range(_MAX_REPLY_LINES):
            if line == HANGUP_LINE:
                self.hung_up = True
            elif line.startswith("520-"):  # usage text, up to "520 End of proper usage."
                in_usage = True
            elif not in_usage or line.startswith("520 "):
                return AgiReply.parse(line)
            line = await self._connection.next_line()
        raise AgiProtocolError("reply longer than any AGI reply")


AgiHandler = Callable[[AgiSession], Awaitable[None]]


class _AgiConnection(asyncio.Protocol):
    """One Asterisk connection: the header under its deadline and size limit,
    then reply lines handed to the one command waiting for them."""

    def __init__(self, server: AgiServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._lines: list[str] = []
        self._waiter: asyncio.Future[str] | None = None
        self._closed = False
        self.task: asyncio.Task[None] | None = None

    # ---- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server._opened(self)
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(
            self._server.header_timeout_s, self._refuse, "no AGI header in time"
        )

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self.task is None:
            self._header_part()
        else:
            self._reply_lines()

    def eof_received(self) -> bool:
        self._gone()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()
        self._server._closed_connection(self)

    # ---- the header --------------------------------------------------------------------

    def _header_part(self) -> None:
        if not self._buffer.startswith(b"agi_"[: len(self._buffer)]):
            self._refuse(f"not an AGI header line: {bytes(self._buffer[:60])!r}")
            return
        end = self._buffer.find(b"\n\n")
        if end < 0:
            if len(self._buffer) > self._server.max_header_bytes:
                self._refuse(f"AGI header larger than {self._server.max_header_bytes} bytes")
            return
        if end + 2 > self._server.max_header_bytes:
            self._refuse(f"AGI header larger than {self._server.max_header_bytes} bytes")
            return
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        try:
            text = raw.decode("utf-8", errors="replace").replace("\r", "")
            header = AgiHeader.parse(text.split("\n"))
        except AgiProtocolError as exc:
            self._refuse(str(exc))
            return
        if self._header_timer is not None:
            self._header_timer.cancel()
        self.task = self._server._dispatch(header, self)
        if self._buffer:
            self._reply_lines()

    def _refuse(self, reason: str) -> None:
        if self.task is not None or self._closed:
            return
        self._server._bad_request(reason)
        self.close()

    # ---- replies -----------------------------------------------------------------------

    def _reply_lines(self) -> None:
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).decode("utf-8", errors="replace").rstrip("\r")
            del self._buffer[: end + 1]
            self._lines.append(line)
        if len(self._buffer) > self._server.max_header_bytes:
            self._fail(AgiProtocolError("line longer than the header limit"))
            self.close()
            return
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done() and self._lines:
            self._waiter.set_result(self._lines.pop(0))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _gone(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        if self.task is None and not self._closed:
            self._server._bad_request("connection closed by Asterisk inside the header")
        self._closed = True
        self._fail(AgiProtocolError("connection closed by Asterisk"))

    def send(self, data: bytes) -> asyncio.Future[str]:
        """Write a command; the future of the next reply line."""
        if self._closed or self._transport is None:
            raise AgiProtocolError("connection closed by Asterisk")
        self._transport.write(data)
        return self.next_line()

    def next_line(self) -> asyncio.Future[str]:
        self._waiter = asyncio.get_running_loop().create_future()
        if self._lines:
            self._waiter.set_result(self._lines.pop(0))
        elif self._closed:
            self._waiter.set_exception(AgiProtocolError("connection closed by Asterisk"))
        return self._waiter

    def close(self) -> None:
        self._closed = True
        if self._header_timer is not None:
            self._header_timer.cancel()
        if self._transport is not None:
            self._transport.close()


class AgiServer:
    """Listens on ``host:port`` and hands each request to the handler of its script."""

    def __init__(
        self,
        handlers: Mapping[str, AgiHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        header_timeout_s: float = 5.0,
        command_timeout_s: float = 5.0,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self._handlers = dict(handlers)
        self._host, self._port = host, port
        self.header_timeout_s = header_timeout_s
        self._command_timeout = command_timeout_s
        self.max_header_bytes = max_header_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[_AgiConnection] = set()
        self.requests = 0
        self.failures = 0

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        # A deep accept queue: Asterisk gives a FastAGI connect 2 s (MAX_AGI_CONNECT),
        # and a busy loop accepts late; with asyncio's default of 100 a burst of
        # requests overflowed it (connects timed out, calls were retried).
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _AgiConnection(self), self._host, self._port, backlog=4096
        )
        log.info("agi_listening", host=self._host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        for connection in list(self._connections):
            if connection.task is None:
                connection.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ---- called by the connections -----------------------------------------------------

    def _opened(self, connection: _AgiConnection) -> None:
        self._connections.add(connection)

    def _closed_connection(self, connection: _AgiConnection) -> None:
        if connection.task is None or connection.task.done():
            self._connections.discard(connection)

    def _bad_request(self, reason: str) -> None:
        self.failures += 1
        log.warning("agi_bad_request", error=reason)

    def _dispatch(self, header: AgiHeader, connection: _AgiConnection) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._serve(header, connection))

    async def _serve(self, header: AgiHeader, connection: _AgiConnection) -> None:
        try:
            self.requests += 1
            handler = self._handlers.get(header.script)
            if handler is None:
                self.failures += 1
                log.warning("agi_unknown_script", script=header.script)
                return
            session = AgiSession(header, connection, command_timeout_s=self._command_timeout)
            try:
                await handler(session)
            except (AgiProtocolError, AgiCommandError, ConnectionError) as exc:
                self.failures += 1
                log.warning("agi_request_failed", script=header.script, error=str(exc))
            except Exception:
                self.failures += 1
                log.exception("agi_handler_failed", script=header.script)
        finally:
            connection.close()
            self._connections.discard(connection)
