"""A fake Asterisk Manager Interface: an asyncio TCP server speaking the AMI text protocol.

Enough of AMI for the provisioning tests: the banner, ``Login`` (checks the
credentials), ``Ping``, ``ModuleLoad`` and ``Command`` (both counted as reloads
when they reload res_pjsip), ``Logoff``. Faults can be injected: refuse the
next N reloads, or stop answering altogether.

Use ``async with FakeAmi() as ami:`` and connect to ``ami.host``/``ami.port``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType

from pydantic import SecretStr

from callcontrol.settings import AmiSettings

EOL = "\r\n"


@dataclass
class FakeAmi:
    username: str = "callcontrol"
    secret: str = "callcontrol"
    host: str = "127.0.0.1"
    port: int = 0
    fail_reloads: int = 0  # the next N reloads answer Response: Error
    silent: bool = False  # read actions, never answer (a hung Asterisk)
    reloads: int = 0  # successful reloads of res_pjsip
    failed_reloads: int = 0
    logins: int = 0
    actions: list[dict[str, str]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def settings(self) -> AmiSettings:
        return AmiSettings(
            enabled=True,
            host=self.host,
            port=self.port,
            username=self.username,
            password=SecretStr(self.secret),
        )

    async def start(self) -> FakeAmi:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeAmi:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def drop_clients(self) -> None:
        """Close every open session (Asterisk restarted)."""
        for writer in list(self._writers):
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        authenticated = False
        try:
            writer.write(f"Asterisk Call Manager/9.0.0{EOL}".encode())
            while True:
                try:
                    block = await reader.readuntil(f"{EOL}{EOL}".encode())
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                action = _parse(block.decode())
                self.actions.append(action)
                if self.silent:
                    continue
                reply, authenticated = self._answer(action, authenticated)
                writer.write(reply.encode())
                await writer.drain()
                if action.get("action", "").lower() == "logoff":
                    return
        finally:
            self._writers.discard(writer)
            writer.close()

    def _answer(self, action: dict[str, str], authenticated: bool) -> tuple[str, bool]:
        name = action.get("action", "").lower()
        aid = action.get("actionid", "")
        if name == "login":
            if action.get("username") == self.username and action.get("secret") == self.secret:
                self.logins += 1
                return (
                    _msg(Response="Success", ActionID=aid, Message="Authentication accepted")
                    + _msg(Event="FullyBooted", Privilege="system,all", Status="Fully Booted"),
                    True,
                )
            return _msg(Response="Error", ActionID=aid, Message="Authentication failed"), False
        if not authenticated:
            return _msg(Response="Error", ActionID=aid, Message="Permission denied"), False
        if name == "ping":
            return _msg(Response="Success", ActionID=aid, Ping="Pong", Timestamp="0.0"), True
        if name == "logoff":
            return _msg(Response="Goodbye", ActionID=aid, Message="Thanks for all the fish."), True
        if _is_pjsip_reload(name, action):
            if self.fail_reloads > 0:
                self.fail_reloads -= 1
                self.failed_reloads += 1
                failure = _msg(Response="Error", ActionID=aid, Message="An unknown error occurred")
                return failure, True
            self.reloads += 1
            return _msg(Response="Success", ActionID=aid, Message="Module reloaded."), True
        return _msg(Response="Error", ActionID=aid, Message="Invalid/unknown command"), True


def _is_pjsip_reload(name: str, action: dict[str, str]) -> bool:
    if name == "moduleload":
        return action.get("loadtype", "").lower() == "reload" and action.get("module", "") in (
            "res_pjsip.so",
            "res_pjsip",
        )
    if name == "command":
        return action.get("command", "").strip() in (
            "module reload res_pjsip.so",
            "module reload res_pjsip",
        )
    return False


def _parse(block: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(EOL):
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return headers


def _msg(**headers: str) -> str:
    return "".join(f"{k}: {v}{EOL}" for k, v in headers.items()) + EOL
