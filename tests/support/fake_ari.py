"""A fake Asterisk REST Interface on aiohttp.web, for component tests.

It records every REST request, answers with canned responses (status, JSON or
bytes, optional delay), and serves `/ari/events` as a WebSocket that a test
can push events into, drop, or leave silent (no pongs) to simulate a dead peer.
Both REST and WebSocket insist on HTTP basic auth, like Asterisk.

    fake = FakeAri()
    async with fake.running() as base_url:     # "http://127.0.0.1:<port>"
        fake.respond("POST", "/ari/channels/c1/answer", status=404,
                     body={"message": "Channel not found"})
        ...
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, hdrs, web
from aiohttp.test_utils import TestServer

SAMPLES = Path(__file__).parent.parent / "data" / "ari" / "samples"


def sample_event(name: str) -> dict[str, Any]:
    """A sample event from tests/data/ari/samples/events/<name>.json, as a dict."""
    data: dict[str, Any] = json.loads((SAMPLES / "events" / f"{name}.json").read_text())
    return data


def sample_response(name: str) -> Any:
    """A sample REST body from tests/data/ari/samples/responses/<name>.json."""
    return json.loads((SAMPLES / "responses" / f"{name}.json").read_text())


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    json_body: Any
    content_type: str


@dataclass
class CannedResponse:
    status: int = 204
    body: Any = None
    raw: bytes | None = None
    delay_s: float = 0.0


@dataclass
class FakeAri:
    username: str = "callcontrol"
    password: str = "secret"
    autoping: bool = True
    """False: the server neither answers pings nor sends pongs (a dead peer)."""
    websocket_status: int | None = None
    """Refuse the WebSocket handshake with this HTTP status."""
    requests: list[RecordedRequest] = field(default_factory=list)
    ws_connections: int = 0
    ws_queries: list[dict[str, str]] = field(default_factory=list)
    pings_received: int = 0
    global_variables: dict[str, str] = field(default_factory=dict)
    """Asterisk's global variables (the engines' lease lives there), kept like Asterisk does."""
    _canned: dict[tuple[str, str], CannedResponse] = field(default_factory=dict)
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _ws_closed: int = 0

    # -- configuration --------------------------------------------------------

    def respond(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        body: Any = None,
        raw: bytes | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Answer `method path` (path with /ari, without query) like this from now on."""
        self._canned[(method, path)] = CannedResponse(status, body, raw, delay_s)

    # -- running ----------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ari/events", self._events)
        app.router.add_route("*", "/ari/{tail:.*}", self._rest)
        return app

    @asynccontextmanager
    async def running(self, port: int | None = None) -> AsyncIterator[str]:
        server = TestServer(self.make_app(), host="127.0.0.1", port=port)
        await server.start_server()
        try:
            yield str(server.make_url("")).rstrip("/")
        finally:
            await server.close()

    # -- websocket control ------------------------------------------------------

    @property
    def open_sockets(self) -> int:
        return sum(1 for ws in self._sockets if not ws.closed)

    @property
    def ws_closed(self) -> int:
        """WebSocket handlers that have finished (the socket is fully closed)."""
        return self._ws_closed

    async def send_event(self, event: dict[str, Any] | str) -> None:
        """Send to the newest open WebSocket (a dict as JSON, a str verbatim)."""
        ws = self._current()
        await ws.send_str(event if isinstance(event, str) else json.dumps(event))

    async def drop(self) -> None:
        """Close the newest open WebSocket from the server side."""
        await self._current().close()

    def _current(self) -> web.WebSocketResponse:
        open_ws = [ws for ws in self._sockets if not ws.closed]
        assert open_ws, "no open WebSocket"
        return open_ws[-1]

    # -- handlers -------------------------------------------------------------

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        try:
            credentials = base64.b64decode(token, validate=True).decode()
        except ValueError:
            return False
        return scheme == "Basic" and credentials == f"{self.username}:{self.password}"

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return web.json_response({"message": "Authentication required"}, status=401)
        if self.websocket_status is not None:
            return web.json_response({"message": "refused"}, status=self.websocket_status)
        ws = web.WebSocketResponse(autoping=self.autoping)
        await ws.prepare(request)
        self.ws_connections += 1
        self.ws_queries.append(dict(request.query))
        self._sockets.append(ws)
        try:
            async for message in ws:
                if message.type is WSMsgType.PING:
                    self.pings_received += 1
        finally:
            self._ws_closed += 1
        return ws

    def _stateful(self, request: web.Request) -> CannedResponse:
        """What Asterisk answers when a test canned nothing: global variables are
        kept, listings are empty."""
        if request.path == "/ari/asterisk/variable":
            name = request.query.get("variable", "")
            if request.method == "POST":
                self.global_variables[name] = request.query.get("value", "")
                return CannedResponse()
            return CannedResponse(200, {"value": self.global_variables.get(name, "")})
        if request.method == "GET" and request.path in ("/ari/channels", "/ari/bridges"):
            return CannedResponse(200, [])
        return CannedResponse()

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return web.json_response({"message": "Authentication required"}, status=401)
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                raw_path=request.raw_path.split("?", 1)[0],
                query=dict(request.query),
                json_body=json.loads(body) if body else None,
                content_type=request.content_type,
            )
        )
        default = self._stateful(request)
        canned = self._canned.get((request.method, request.path), default)
        if canned.delay_s:
            await asyncio.sleep(canned.delay_s)
        if canned.raw is not None:
            return web.Response(status=canned.status, body=canned.raw)
        if canned.body is None:
            return web.Response(status=canned.status)
        return web.json_response(canned.body, status=canned.status)
