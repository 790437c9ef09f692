"""Writing Asterisk's own database (AstDB) from the engine, over FastAGI.

ARI can set ``DB(family/key)`` only with ``live_dangerously`` on (Asterisk
blocks "dangerous" functions, ``DB`` among them, from ARI and AMI: "Dangerous
function DB write blocked"), which would open every such function to every
ARI and AMI user. res_agi's ``DATABASE PUT``/``DATABASE DEL`` commands are
not functions and are not blocked. So a batch of writes goes like this:

1. the batch is kept here under a number;
2. ARI originates ``Local/<number>@<context>`` (``originate_to_dialplan``):
   that context's ``_X!`` extension asks ``AGI(agi://…/astdb,${EXTEN})``;
3. the FastAGI request finds its batch by the number and sends one command
   per entry (a few tens of microseconds each on loopback); the batch's
   waiter learns that every write was answered ``result=1``;
4. the Local channel hangs up without ever being answered.

A batch not written within ``timeout_s`` (the dialplan or the FastAGI
server not there) fails its waiter; a request whose number has no batch (a
stale one) does nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from callcontrol.agi.protocol import database_del, database_put
from callcontrol.agi.server import AgiSession

SCRIPT = "astdb"
CONTEXT = "callcontrol-agi-astdb"
"""The dialplan context that asks for a batch (dialplan/extensions_callcontrol_agi.conf)."""
MAX_VALUE_CHARS = 1800
"""res_agi reads a command line into 2 KB: longer values are refused here."""


class DialplanOriginator(Protocol):
    async def originate_to_dialplan(
        self, endpoint: str, *, context: str, extension: str, timeout_s: int = 10
    ) -> None: ...


class AstDbWriteError(Exception):
    """A batch of AstDB writes that Asterisk did not confirm."""


@dataclass
class _Batch:
    family: str
    entries: Sequence[tuple[str, str | None]]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class AgiAstDbWriter:
    def __init__(self, ari: DialplanOriginator, *, context: str, timeout_s: float = 5.0) -> None:
        self._ari = ari
        self._context = context
        self._timeout_s = timeout_s
        self._batches: dict[str, _Batch] = {}
        self._numbers = itertools.count(1)
        self.writes = 0

    async def write(self, family: str, entries: Sequence[tuple[str, str | None]]) -> None:
        """Set each ``key`` of ``family`` to its value (None: delete the key);
        returns once Asterisk confirmed every entry, else raises AstDbWriteError."""
        if not entries:
            return
        for key, value in entries:
            if value is not None and len(value) > MAX_VALUE_CHARS:
                raise ValueError(
                    f"AstDB value for {key!r}: {len(value)} chars, at most {MAX_VALUE_CHARS}"
                )
        number = str(next(self._numbers))
        batch = self._batches[number] = _Batch(family, entries)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._ari.originate_to_dialplan(
                    f"Local/{number}@{self._context}/n", context=self._context,
                    extension="done", timeout_s=max(1, int(self._timeout_s)),
                )  # fmt: skip
                await batch.done
        except TimeoutError as exc:
            raise AstDbWriteError(
                f"{len(entries)} AstDB writes not confirmed within {self._timeout_s}s"
            ) from exc
        finally:
            self._batches.pop(number, None)
            if not batch.done.done():
                batch.done.cancel()  # a request still writing it stops at its next entry

    async def serve(self, session: AgiSession) -> None:
        """The FastAGI script ``astdb``: write the batch its first argument names."""
        batch = self._batches.get(session.header.arg(1))
        if batch is None or batch.done.done():
            return
        try:
            for key, value in batch.entries:
                if batch.done.done():
                    return  # its waiter gave up
                if value is None:
                    await session.command(database_del(batch.family, key))  # 0: was not there
                    continue
                reply = await session.command(database_put(batch.family, key, value))
                if reply.result != "1":
                    raise AstDbWriteError(f"DATABASE PUT {batch.family}/{key}: {reply.line}")
                self.writes += 1
        except BaseException as exc:
            if not batch.done.done():
                batch.done.set_exception(
                    exc if isinstance(exc, Exception) else AstDbWriteError("cancelled")
                )
            raise
        if not batch.done.done():
            batch.done.set_result(None)
