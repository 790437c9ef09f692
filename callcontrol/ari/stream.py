"""The ARI event WebSocket: connect, read, parse, hand over in order, reconnect.

`AriEventStream.run()` owns one WebSocket to `/ari/events?app=<app>` at a time
and runs until cancelled. The rules it keeps:

- Every message is parsed once (`parse_event`) and handed to `on_event`
  synchronously, in the order Asterisk sent it. `on_event` must be cheap and
  must not block (the engine queues per channel); if it raises, the error is
  logged and the stream goes on.
- An unreadable message is logged and counted (`protocol_errors`), never fatal.
- While no WebSocket is connected Asterisk fails `Stasis()` at once, so a lost
  connection is retried quickly: exponential back-off from
  `initial_backoff_s`, doubled per failed attempt, with jitter (50-100 % of
  the step), capped at `max_backoff_s`. The back-off restarts from the
  beginning once a connection has stayed up for `stable_after_s`.
- A WebSocket ping every `heartbeat_s` detects a silent dead peer: with no
  pong within half of it aiohttp closes the socket and we reconnect.
- After every (re)connection `on_connected()` is awaited before the next
  message is read, so the engine can re-sync (list the channels still in the
  app) first; events Asterisk sends meanwhile are buffered and delivered after
  it returns, so the engine must accept events about channels it has just
  learnt of from the listing. If it raises, the error is logged and reading
  goes on.
- `before_connect()`, when given, is awaited before every connection attempt:
  the engine holds its lease there (`engine/lease.py`) and so stands by while
  another engine serves the app.
- `ApplicationReplaced` (another WebSocket took our app name) is delivered to
  `on_event`, the socket is closed and `on_replaced()` is called; without a
  `before_connect` gate we reconnect after the full `max_backoff_s`.
- `disconnect()` closes the current WebSocket (the engine lost its lease).
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable

import aiohttp
import structlog
from yarl import URL

from callcontrol.ari.client import basic_auth_header
from callcontrol.ari.errors import AriProtocolError
from callcontrol.ari.events import ApplicationReplaced, AriEvent, parse_event

__all__ = ["AriEventStream"]

log = structlog.get_logger(__name__)

_CLOSED = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.CLOSED,
    aiohttp.WSMsgType.ERROR,
)


class _Outcome(enum.Enum):
    CONNECT_FAILED = "connect_failed"
    DROPPED = "dropped"
    REPLACED = "replaced"


def events_url(base_url: str) -> URL:
    """`http://host:8088[/]` -> `ws://host:8088/ari/events` (https -> wss)."""
    url = URL(base_url.rstrip("/") + "/ari/events")
    return url.with_scheme("wss" if url.scheme in ("https", "wss") else "ws")


class AriEventStream:
    """Delivers the events of one Stasis application, reconnecting for ever."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        username: str,
        password: str,
        app: str,
        on_event: Callable[[AriEvent], None],
        on_connected: Callable[[], Awaitable[None]] | None = None,
        max_backoff_s: float = 10.0,
        *,
        before_connect: Callable[[], Awaitable[None]] | None = None,
        on_replaced: Callable[[], None] | None = None,
        initial_backoff_s: float = 0.1,
        stable_after_s: float = 1.0,
        heartbeat_s: float = 5.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._session = session
        self._url = events_url(base_url)
        self._params = {"app": app, "subscribeAll": "false"}
        self._headers = {"Authorization": basic_auth_header(username, password)}
        self._app = app
        self._on_event = on_event
        self._on_connected = on_connected
        self._before_connect = before_connect
        self._on_replaced = on_replaced
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._max_backoff_s = max_backoff_s
        self._initial_backoff_s = initial_backoff_s
        self._stable_after_s = stable_after_s
        self._heartbeat_s = heartbeat_s
        self._connect_timeout_s = connect_timeout_s
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0)
        self._ever_connected = False
        self.connected = False
        """True while a WebSocket is open (for /health)."""
        self.reconnects = 0
        """Successful connections after the first one (for /metrics)."""
        self.connect_failures = 0
        """Connection attempts that failed (refused, timed out, handshake refused)."""
        self.protocol_errors = 0
        """Messages that could not be parsed (for /metrics)."""
        self.replaced = 0
        """ApplicationReplaced events received (for /metrics)."""

    async def run(self) -> None:
        """Connect and deliver events until cancelled; never returns otherwise."""
        failures = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    outcome = await self._connect_and_read()
                except Exception:  # a bug or an aiohttp surprise must not end the stream
                    log.exception("ari.events.unexpected_error", app=self._app)
                    outcome = _Outcome.CONNECT_FAILED
                if outcome is _Outcome.REPLACED:
                    if self._on_replaced is not None:
                        self._on_replaced()
                    gated = self._before_connect is not None
                    delay = self._initial_backoff_s if gated else self._max_backoff_s
                else:
                    stayed_up = time.monotonic() - started >= self._stable_after_s
                    if outcome is _Outcome.DROPPED and stayed_up:
                        failures = 0
                    delay = self._backoff(failures)
                    failures += 1
                log.info(
                    "ari.events.reconnect_scheduled",
                    app=self._app,
                    delay_s=round(delay, 3),
                    reason=outcome.value,
                )
                await asyncio.sleep(delay)
        finally:
            self.connected = False

    def _backoff(self, failures: int) -> float:
        step = min(self._max_backoff_s, self._initial_backoff_s * 2.0 ** min(failures, 30))
        return step * random.uniform(0.5, 1.0)

    async def disconnect(self) -> None:
        """Close the current WebSocket, if any (the stream then reconnects)."""
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()

    async def _connect_and_read(self) -> _Outcome:
        if self._before_connect is not None:
            await self._before_connect()
        ws = await self._connect()
        if ws is None:
            self.connect_failures += 1
            return _Outcome.CONNECT_FAILED
        self._ws = ws
        async with ws:
            self.connected = True
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            log.info(
                "ari.events.connected",
                app=self._app,
                url=str(self._url),
                reconnects=self.reconnects,
            )
            try:
                await self._notify_connected()
                outcome = await self._read(ws)
            finally:
                self.connected = False
                self._ws = None
        log.warning(
            "ari.events.disconnected",
            app=self._app,
            close_code=ws.close_code,
            error=repr(ws.exception()) if ws.exception() else None,
        )
        return outcome

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                return await self._session.ws_connect(
                    self._url,
                    params=self._params,
                    headers=self._headers,
                    heartbeat=self._heartbeat_s,
                    timeout=self._ws_timeout,
                )
        except aiohttp.WSServerHandshakeError as exc:
            # 401: wrong credentials; 400/404: ARI disabled or bad app name.
            log.error(
                "ari.events.handshake_refused",
                app=self._app,
                status=exc.status,
                message=exc.message,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning(
                "ari.events.connect_failed", app=self._app, error=f"{type(exc).__name__}: {exc}"
            )
        return None

    async def _notify_connected(self) -> None:
        if self._on_connected is None:
            return
        try:
            await self._on_connected()
        except Exception:
            log.exception("ari.events.on_connected_failed", app=self._app)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> _Outcome:
        while True:
            message = await ws.receive()
            if message.type in _CLOSED:
                return _Outcome.DROPPED
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                continue
            if isinstance(self._deliver(message.data), ApplicationReplaced):
                self.replaced += 1
                log.error(
                    "ari.events.application_replaced",
                    app=self._app,
                    hint="another client connected with the same app name",
                )
                return _Outcome.REPLACED

    def _deliver(self, data: str | bytes) -> AriEvent | None:
        try:
            event = parse_event(data)
        except AriProtocolError as exc:
            self.protocol_errors += 1
            log.warning(
                "ari.events.unreadable", app=self._app, error=exc.message, raw=exc.raw_excerpt
            )
            return None
        try:
            self._on_event(event)
        except Exception:
            log.exception("ari.events.on_event_failed", app=self._app, event_type=event.type)
        return event
