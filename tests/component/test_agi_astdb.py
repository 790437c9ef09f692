"""AstDB writes over FastAGI against a scripted Asterisk on a real loopback
socket: the originate opens the FastAGI request that carries the batch, each
entry is one DATABASE command, and a batch nobody asks for fails in time."""

from __future__ import annotations

import asyncio
import shlex

import pytest

from callcontrol.agi.astdb import CONTEXT, SCRIPT, AgiAstDbWriter, AstDbWriteError
from callcontrol.agi.server import AgiServer


class ScriptedAsterisk:
    """Answers ``originate_to_dialplan`` as Asterisk's dialplan does: a FastAGI
    request to the script with the Local channel's extension, then one reply
    per command (``result``: what DATABASE PUT answers)."""

    def __init__(self, *, result: int = 1, connects: bool = True) -> None:
        self.port = 0
        self.result = result
        self.connects = connects
        self.endpoints: list[str] = []
        self.astdb: dict[tuple[str, str], str] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def originate_to_dialplan(
        self, endpoint: str, *, context: str, extension: str, timeout_s: int = 10
    ) -> None:
        assert context == CONTEXT and extension == "done"
        self.endpoints.append(endpoint)
        if self.connects:
            batch = endpoint.removeprefix("Local/").split("@")[0]
            self.tasks.append(asyncio.create_task(self._request(batch)))

    async def _request(self, batch: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"agi_network: yes\nagi_network_script: {SCRIPT}\n"
            f"agi_request: agi://127.0.0.1/{SCRIPT}\nagi_arg_1: {batch}\n\n".encode()
        )
        while line := (await reader.readline()).decode().strip():
            words = shlex.split(line)
            if words[:2] == ["DATABASE", "PUT"]:
                self.astdb[words[2], words[3]] = words[4]
                writer.write(f"200 result={self.result}\n".encode())
            elif words[:2] == ["DATABASE", "DEL"]:
                self.astdb.pop((words[2], words[3]), None)
                writer.write(b"200 result=1\n")
        writer.close()


async def bed(
    asterisk: ScriptedAsterisk, timeout_s: float = 2.0
) -> tuple[AgiAstDbWriter, AgiServer]:
    writer = AgiAstDbWriter(asterisk, context=CONTEXT, timeout_s=timeout_s)
    server = AgiServer({SCRIPT: writer.serve}, host="127.0.0.1", port=0)
    await server.start()
    asterisk.port = server.port
    return writer, server


async def test_a_batch_is_written_entry_by_entry_and_confirmed() -> None:
    asterisk = ScriptedAsterisk()
    writer, server = await bed(asterisk)
    asterisk.astdb["plans", "old"] = "x"
    value = '0000000001|CC_PLAN=1,CC_DIAL1=PJSIP/a&PJSIP/b,CC_OPTS1=L(3000),X=a\\,b "q"'
    await writer.write("plans", [("+4930111", value), ("4930111", value), ("old", None)])
    assert asterisk.astdb == {("plans", "+4930111"): value, ("plans", "4930111"): value}
    assert asterisk.endpoints == [f"Local/1@{CONTEXT}/n"] and writer.writes == 2
    await server.close()


async def test_a_write_asterisk_refuses_fails_the_batch() -> None:
    writer, server = await bed(ScriptedAsterisk(result=0))
    with pytest.raises(AstDbWriteError, match="DATABASE PUT plans/k"):
        await writer.write("plans", [("k", "v")])
    await server.close()


async def test_a_batch_nobody_asks_for_fails_within_its_timeout() -> None:
    writer, server = await bed(ScriptedAsterisk(connects=False), timeout_s=0.3)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(AstDbWriteError, match=r"not confirmed within 0\.3s"):
        await writer.write("plans", [("k", "v")])
    assert loop.time() - began < 1.0
    await server.close()


async def test_a_request_for_an_unknown_batch_writes_nothing() -> None:
    asterisk = ScriptedAsterisk()
    writer, server = await bed(asterisk)
    await asterisk._request("999")  # a stale Local channel: its batch is long gone
    assert asterisk.astdb == {}
    await writer.write("plans", [])  # and an empty batch costs no channel
    assert asterisk.endpoints == []
    await server.close()


async def test_a_value_too_long_for_res_agi_is_refused_before_any_channel() -> None:
    asterisk = ScriptedAsterisk()
    writer, server = await bed(asterisk)
    with pytest.raises(ValueError, match="at most 1800"):
        await writer.write("plans", [("k", "v" * 1801)])
    assert asterisk.endpoints == []
    await server.close()
