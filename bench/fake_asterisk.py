"""A scripted fake of Asterisk's ARI for the engine CPU benchmark (``bench.cpu``).

    python -m bench.fake_asterisk --port 18088 [--talk-ms 100] [--stasis-lag-ms 0]

It plays what the real Asterisk 22 did in recorded forwarded calls (event JSON
copied from a recording through the sandbox, ids and times filled in), so the
engine does its real work - the same REST requests, the same events, the same
bytes - without Asterisk or SIPp. It reacts to the requests the engine sends:

- a call is a ``StasisStart`` (args ``inbound,<DID>``) that the fake sends
  when the driver asks (``POST /_bench/run?did=&rate=&calls=``);
- ``answer`` -> the caller's ``ChannelStateChange`` (Up);
- ``POST /channels/create`` -> the leg's ``StasisStart`` (Down), after
  ``--stasis-lag-ms`` (Asterisk answers 409 to a ``dial`` that comes first);
  ``dial`` -> the far end answers at once (``ChannelStateChange`` Up); the
  caller given to ``dial`` stays subscribed after it leaves Stasis, so its
  ``ChannelDestroyed`` is sent too, as Asterisk does;
- ``POST /channels`` (originate into our app) -> ``ChannelStateChange`` (Up)
  then the leg's ``StasisStart`` (Up): an originated channel enters Stasis
  when it is answered;
- the far end hangs up ``--talk-ms`` after answering: the leg's ``StasisEnd``
  and ``ChannelDestroyed`` (16);
- ``DELETE /channels/{id}`` -> ``StasisEnd`` (and ``ChannelDestroyed`` for
  legs and dial-linked callers) with the cause given; a call is finished when
  its caller is hung up;
- bridges are created, filled and destroyed without events (the engine does
  not ask for bridge events); the event filter the engine sets is honoured.

``GET /_bench/status`` returns the counts (calls started and finished,
requests by kind, events sent, errors) as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

APP_ID = "02:fc:00:00:00:01"


def _now() -> str:
    stamp = datetime.now(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+0000"


@dataclass
class FakeChannel:
    id: str
    name: str
    state: str
    caller: dict[str, str]
    connected: dict[str, str]
    dialplan: dict[str, Any]
    created: str
    is_leg: bool
    call: str
    in_stasis: bool = False
    linked: bool = False
    """Still subscribed after leaving Stasis (a caller given to ``dial``)."""
    bye: asyncio.TimerHandle | None = None

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "protocol_id": f"{self.id}@127.0.0.2",
            "caller": self.caller,
            "connected": self.connected,
            "accountcode": "",
            "dialplan": self.dialplan,
            "creationtime": self.created,
            "language": "en",
        }


@dataclass
class FakeAsterisk:
    app: str = "callcontrol"
    talk_ms: int = 100
    stasis_lag_ms: int = 0
    channels: dict[str, FakeChannel] = field(default_factory=dict)
    allowed: set[str] | None = None
    global_variables: dict[str, str] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    started: int = 0
    finished: int = 0
    _ws: web.WebSocketResponse | None = None
    _outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    _serial: int = 0
    _generator: asyncio.Task[None] | None = None

    # ---- events -------------------------------------------------------------------

    def emit(self, kind: str, channel: FakeChannel, **extra: Any) -> None:
        if self.allowed is not None and kind not in self.allowed:
            return
        event = {"type": kind, "timestamp": _now(), **extra, "channel": channel.json()}
        event["asterisk_id"] = APP_ID
        event["application"] = self.app
        self.events[kind] += 1
        self._outbox.put_nowait(json.dumps(event))

    async def _send_events(self, ws: web.WebSocketResponse) -> None:
        while True:
            text = await self._outbox.get()
            await ws.send_str(text)

    # ---- calls --------------------------------------------------------------------

    def new_call(self, did: str) -> None:
        self._serial += 1
        self.started += 1
        channel_id = f"{int(time.time())}.{self._serial}"
        caller = FakeChannel(
            id=channel_id,
            name=f"PJSIP/callcontrol-carrier-{self._serial:08x}",
            state="Ring",
            caller={"name": "4915112345678", "number": "4915112345678"},
            connected={"name": "", "number": ""},
            dialplan={
                "context": "callcontrol-inbound",
                "exten": did,
                "priority": 1,
                "app_name": "Stasis",
                "app_data": f"{self.app},inbound,{did}",
            },
            created=_now(),
            is_leg=False,
            call=channel_id,
            in_stasis=True,
        )
        self.channels[channel_id] = caller
        self.emit("StasisStart", caller, args=["inbound", did])

    def new_leg(self, query: Any, body: dict[str, Any] | None) -> FakeChannel:
        self._serial += 1
        channel_id = query.get("channelId") or f"{int(time.time())}.{self._serial}"
        variables = (body or {}).get("variables") or {}
        number = variables.get("CALLERID(num)", "")
        originator = query.get("originator", "")
        leg = FakeChannel(
            id=channel_id,
            name=f"PJSIP/callcontrol-external-{self._serial:08x}",
            state="Down",
            caller={"name": variables.get("CALLERID(name)", ""), "number": number},
            connected={"name": variables.get("CONNECTEDLINE(name)", ""), "number": number},
            dialplan={
                "context": "callcontrol-reject",
                "exten": "s",
                "priority": 1,
                "app_name": "AppDial2",
                "app_data": "(Outgoing Line)",
            },
            created=_now(),
            is_leg=True,
            call=originator,
        )
        self.channels[channel_id] = leg
        return leg

    def enter_stasis(self, leg: FakeChannel, args: str) -> None:
        if leg.in_stasis or leg.id not in self.channels:
            return
        leg.in_stasis = True
        leg.dialplan = {**leg.dialplan, "app_name": "Stasis", "app_data": f"{self.app},{args}"}
        self.emit("StasisStart", leg, args=args.split(",") if args else [])

    def far_end_answers(self, leg: FakeChannel) -> None:
        leg.state = "Up"
        self.emit("ChannelStateChange", leg)
        loop = asyncio.get_running_loop()
        leg.bye = loop.call_later(self.talk_ms / 1000, self.destroy, leg, 16)

    def destroy(self, channel: FakeChannel, cause: int) -> None:
        if self.channels.pop(channel.id, None) is None:
            return
        if channel.bye is not None:
            channel.bye.cancel()
        if channel.in_stasis:
            self.emit("StasisEnd", channel)
        if channel.is_leg or channel.linked:
            self.emit("ChannelDestroyed", channel, cause=cause, cause_txt="Normal Clearing")
        if not channel.is_leg:
            self.finished += 1

    async def generate(self, did: str, rate: float, calls: int) -> None:
        began = time.monotonic()
        for index in range(calls):
            delay = began + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.new_call(did)

    # ---- HTTP -----------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ari/events", self.events_socket)
        app.router.add_post("/_bench/run", self.bench_run)
        app.router.add_get("/_bench/status", self.bench_status)
        app.router.add_route("*", "/ari/{tail:.*}", self.rest)
        return app

    async def events_socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        sender = asyncio.get_running_loop().create_task(self._send_events(ws))
        try:
            async for _ in ws:
                pass
        finally:
            sender.cancel()
        return ws

    async def bench_run(self, request: web.Request) -> web.Response:
        query = request.query
        self.requests.clear()
        self.events.clear()
        self.errors.clear()
        self.started = self.finished = 0
        self._generator = asyncio.get_running_loop().create_task(
            self.generate(query["did"], float(query["rate"]), int(query["calls"]))
        )
        return web.json_response({"ok": True})

    async def bench_status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "started": self.started,
                "finished": self.finished,
                "open_channels": len(self.channels),
                "requests": dict(self.requests),
                "events": dict(self.events),
                "errors": dict(self.errors),
            }
        )

    async def rest(self, request: web.Request) -> web.StreamResponse:
        body_bytes = await request.read()
        body = json.loads(body_bytes) if body_bytes else None
        parts = request.path.split("/")[2:]  # after "", "ari"
        method = request.method
        kind = f"{method} /{parts[0]}"
        if parts[1:2] == ["create"]:
            kind += "/create"
        elif len(parts) > 1:
            kind += "/{id}"
        if len(parts) > 2:
            kind += "/" + "/".join(parts[2:3])
        self.requests[kind] += 1
        response = self.handle(method, parts, request.query, body)
        if response.status >= 400:
            self.errors[f"{kind} {response.status}"] += 1
        return response

    def handle(self, method: str, parts: list[str], query: Any, body: Any) -> web.Response:
        resource = parts[0]
        if resource == "asterisk" and parts[1:] == ["variable"]:
            # Global variables: the engine keeps its app lease there.
            name = query.get("variable", "")
            if method == "POST":
                self.global_variables[name] = query.get("value", "")
                return web.Response(status=204)
            return web.json_response({"value": self.global_variables.get(name, "")})
        if method == "GET" and parts == ["bridges"]:
            return web.json_response([])
        if method == "GET" and parts == ["channels"]:
            return web.json_response([c.json() for c in self.channels.values()])
        if resource == "applications":
            if method == "PUT" and parts[2:] == ["eventFilter"]:
                allowed = (body or {}).get("allowed") or []
                self.allowed = {item["type"] for item in allowed} or None
            ids = [c.id for c in self.channels.values() if c.in_stasis]
            return web.json_response(
                {
                    "name": self.app,
                    "channel_ids": ids,
                    "bridge_ids": [],
                    "endpoint_ids": [],
                    "device_names": [],
                    "events_allowed": [{"type": t} for t in sorted(self.allowed or ())],
                    "events_disallowed": [],
                }
            )
        if resource == "bridges":
            if method == "POST" and len(parts) == 1:
                return web.json_response(
                    {
                        "id": query.get("bridgeId", "b"),
                        "technology": "simple_bridge",
                        "bridge_type": query.get("type", "mixing"),
                        "bridge_class": "stasis",
                        "creator": "Stasis",
                        "name": "",
                        "channels": [],
                        "creationtime": _now(),
                        "video_mode": "talker",
                    }
                )
            return web.Response(status=204)
        if resource != "channels":
            return web.json_response({"message": "not modelled"}, status=404)
        if method == "POST" and parts[1:] == ["create"]:
            leg = self.new_leg(query, body)
            loop = asyncio.get_running_loop()
            args = query.get("appArgs", "")
            if self.stasis_lag_ms:
                loop.call_later(self.stasis_lag_ms / 1000, self.enter_stasis, leg, args)
            else:
                loop.call_soon(self.enter_stasis, leg, args)
            return web.json_response(leg.json())
        if method == "POST" and len(parts) == 1:
            leg = self.new_leg(query, body)
            args = query.get("appArgs", "")
            loop = asyncio.get_running_loop()

            def answered() -> None:
                if leg.id in self.channels:
                    self.far_end_answers(leg)
                    self.enter_stasis(leg, args)

            loop.call_soon(answered)
            return web.json_response(leg.json())
        channel = self.channels.get(parts[1]) if len(parts) > 1 else None
        if channel is None:
            return web.json_response({"message": "Channel not found"}, status=404)
        action = parts[2] if len(parts) > 2 else ""
        if method == "DELETE" and not action:
            cause = int(query.get("reason_code", "16"))
            asyncio.get_running_loop().call_soon(self.destroy, channel, cause)
            return web.Response(status=204)
        if method == "GET" and not action:
            return web.json_response(channel.json())
        if action == "dial":
            if not channel.in_stasis:
                return web.json_response({"message": "Channel not in Stasis application"}, 409)
            caller = self.channels.get(query.get("caller", ""))
            if caller is not None:
                caller.linked = True
            asyncio.get_running_loop().call_soon(self.far_end_answers, channel)
            return web.Response(status=204)
        if action == "answer":
            channel.state = "Up"
            asyncio.get_running_loop().call_soon(self.emit, "ChannelStateChange", channel)
        return web.Response(status=204)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_asterisk")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--talk-ms", type=int, default=100)
    parser.add_argument("--stasis-lag-ms", type=int, default=0)
    args = parser.parse_args(argv)

    async def serve() -> None:
        fake = FakeAsterisk(talk_ms=args.talk_ms, stasis_lag_ms=args.stasis_lag_ms)
        runner = web.AppRunner(fake.make_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
