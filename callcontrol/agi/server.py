"""A small asyncio FastAGI server: one task per Asterisk connection.

Panoramisk's server is not used (ASTERISK_FACTS.md: a client gone mid-header
makes its header loop spin forever). Rules kept here:

- the header is read under one deadline (``header_timeout_s``) and one size
  limit (``MAX_HEADER_BYTES``); EOF, an oversized or a malformed header closes
  the connection without calling any handler;
- every command waits for its reply at most ``command_timeout_s``; a ``HANGUP``
  line before the reply is noted (``session.hung_up``) and skipped;
- a connection always ends closed, whatever the handler did; closing the
  server cancels the connections still open and waits for them;
- a handler's exception is logged with the script name and ends only its own
  connection. Asterisk sets ``AGISTATUS=SUCCESS`` for any connection that
  closes after a complete header, so the dialplan never trusts AGISTATUS
  alone: a call goes on only if the handler set ``CC_ACTION`` (a decision).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

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
        self,
        header: AgiHeader,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        command_timeout_s: float,
    ) -> None:
        self.header = header
        self._reader = reader
        self._writer = writer
        self._timeout = command_timeout_s
        self.hung_up = False

    async def command(self, line: str) -> AgiReply:
        """Send one command; its ``200`` reply, or AgiCommandError/AgiProtocolError."""
        self._writer.write(line.encode("utf-8") + b"\n")
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
                return await self._reply()
        except TimeoutError as exc:
            raise AgiProtocolError(f"no reply within {self._timeout}s to {line[:40]!r}") from exc

    async def _reply(self) -> AgiReply:
        in_usage = False
        for _ in range(_MAX_REPLY_LINES):
            line = await _read_line(self._reader)
            if line == HANGUP_LINE:
                self.hung_up = True
                continue
            if line.startswith("520-"):  # usage text, up to "520 End of proper usage."
                in_usage = True
                continue
            if in_usage and not line.startswith("520 "):
                continue
            return AgiReply.parse(line)
        raise AgiProtocolError("reply longer than any AGI reply")


AgiHandler = Callable[[AgiSession], Awaitable[None]]


async def _read_line(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readline()
    except (asyncio.LimitOverrunError, ValueError) as exc:  # a line beyond the limit
        raise AgiProtocolError("line longer than the header limit") from exc
    if not raw.endswith(b"\n"):
        raise AgiProtocolError("connection closed by Asterisk")
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


async def read_header(
    reader: asyncio.StreamReader, *, max_bytes: int = MAX_HEADER_BYTES
) -> AgiHeader:
    """The ``agi_*`` block up to its empty line; AgiProtocolError on EOF or excess.

    Read in one ``readuntil`` (the reader's limit is ``max_bytes``), not line by
    line: a header is a score of lines, and this is once per request."""
    first = (await _read_line(reader)).encode()
    if not first.startswith(b"agi_"):  # not Asterisk (or an empty header): no waiting
        raise AgiProtocolError(f"not an AGI header line: {first[:60]!r}")
    try:
        rest = await reader.readuntil(b"\n\n")
    except asyncio.IncompleteReadError as exc:
        raise AgiProtocolError("connection closed by Asterisk inside the header") from exc
    except asyncio.LimitOverrunError as exc:
        raise AgiProtocolError(f"AGI header larger than {max_bytes} bytes") from exc
    if len(first) + len(rest) > max_bytes:
        raise AgiProtocolError(f"AGI header larger than {max_bytes} bytes")
    text = rest.decode("utf-8", errors="replace").replace("\r", "")
    return AgiHeader.parse([first.decode(), *text.rstrip("\n").split("\n")])


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
        self._header_timeout = header_timeout_s
        self._command_timeout = command_timeout_s
        self._max_header = max_header_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
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
        # hangup reports overflowed it (connects timed out, reports went to the
        # dialplan's fallback file).
        self._server = await asyncio.start_server(
            self._connection, self._host, self._port, limit=self._max_header, backlog=4096
        )
        log.info("agi_listening", host=self._host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._header_timeout):
                header = await read_header(reader, max_bytes=self._max_header)
        except (AgiProtocolError, TimeoutError, ConnectionError) as exc:
            self.failures += 1
            log.warning("agi_bad_request", error=str(exc) or type(exc).__name__)
            return
        self.requests += 1
        handler = self._handlers.get(header.script)
        if handler is None:
            self.failures += 1
            log.warning("agi_unknown_script", script=header.script)
            return
        session = AgiSession(header, reader, writer, command_timeout_s=self._command_timeout)
        try:
            await handler(session)
        except (AgiProtocolError, AgiCommandError, ConnectionError) as exc:
            self.failures += 1
            log.warning("agi_request_failed", script=header.script, error=str(exc))
        except Exception:
            self.failures += 1
            log.exception("agi_handler_failed", script=header.script)
