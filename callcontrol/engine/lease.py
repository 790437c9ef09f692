"""One engine per ARI application: a lease kept in Asterisk itself.

Two engines connected with one app name take the app from each other
(``ApplicationReplaced``) and each hangs up the other's calls. So an engine
holds a lease before it connects its event stream, and a second engine stands
by until the lease is free. The lease is a global variable of the Asterisk
the engines share (``CALLCONTROL_LEASE_<app>`` = ``<holder>;<expires>``), so it
needs no shared database and fences exactly the engines that would collide:
those on the same Asterisk with the same app name. The rules it keeps:

- the active engine renews the lease every ``ttl_s / 3``; a lease not renewed
  for ``ttl_s`` is free;
- acquiring is write-then-verify: the engine writes its claim, waits
  ``verify_s`` and reads it back; of two engines claiming at once only the
  last writer sees its own claim and goes on;
- a lease held by a dead process on this host (same host name, no such PID
  running callcontrol) is free at once: a restarted engine takes over without
  waiting for the lease to run out;
- ``keep()`` is the one renewal loop (the engine's app and the reminder app):
  it renews only while the event stream is connected (a standby holds nothing
  to renew); a renewal that fails (ARI unreachable) is logged and tried again
  at the next one;
- an engine that finds another holder's lease while renewing, or whose app was
  taken (``ApplicationReplaced``), stops serving and stands by. If the client
  that took the app holds no lease (an older engine, a foreign tool), the
  engine does not take the app back before ``replaced_holdoff_s`` (doubled
  each time it happens again, up to 15 minutes): such a client is not fought
  every few seconds, and every replacement is logged as an error.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from callcontrol.ari.errors import AriError
from callcontrol.domain import contract

log = structlog.get_logger(__name__)


class LeaseStore(Protocol):
    async def get_global_variable(self, name: str) -> str: ...
    async def set_global_variable(self, name: str, value: str) -> None: ...


class FencedStream(Protocol):
    """The event stream a lease fences (``AriEventStream``): is it up, and drop it."""

    @property
    def connected(self) -> bool: ...
    async def disconnect(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Claim:
    holder: str
    expires: float

    def encode(self) -> str:
        return f"{self.holder};{self.expires:.3f}"

    @staticmethod
    def decode(text: str) -> Claim | None:
        holder, _, expires = text.rpartition(";")
        try:
            return Claim(holder, float(expires)) if holder else None
        except ValueError:
            return None


def holder_id(host: str | None = None, pid: int | None = None) -> str:
    """``host/pid/random``: who holds the lease, and enough to tell if it still runs."""
    return f"{host or socket.gethostname()}/{pid or os.getpid()}/{uuid.uuid4().hex[:8]}"


def _callcontrol_running(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"callcontrol" in cmdline


class AppLease:
    def __init__(
        self,
        store: LeaseStore,
        app: str,
        *,
        holder: str | None = None,
        ttl_s: float = 6.0,
        verify_s: float = 0.3,
        replaced_holdoff_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        alive: Callable[[int], bool] = _callcontrol_running,
    ) -> None:
        self._store = store
        self.variable = contract.app_variable(contract.LEASE_VARIABLE, app)
        self.holder = holder or holder_id()
        self._host = self.holder.split("/", 1)[0]
        self._ttl_s = ttl_s
        self._verify_s = verify_s
        self._holdoff_s = replaced_holdoff_s
        self._not_before = 0.0
        self._clock = clock
        self._alive = alive
        self.held = False
        self.other: str | None = None
        """The other holder last seen (for /health and the logs)."""

    @property
    def renew_every_s(self) -> float:
        return self._ttl_s / 3

    async def _read(self) -> Claim | None:
        return Claim.decode(await self._store.get_global_variable(self.variable))

    async def _write(self) -> None:
        claim = Claim(self.holder, self._clock() + self._ttl_s)
        await self._store.set_global_variable(self.variable, claim.encode())

    def _free(self, claim: Claim | None) -> bool:
        if claim is None or claim.holder == self.holder or claim.expires <= self._clock():
            return True
        host, _, rest = claim.holder.partition("/")
        pid = rest.partition("/")[0]
        return host == self._host and pid.isdigit() and not self._alive(int(pid))

    async def try_acquire(self) -> bool:
        """Take the lease if it is free; True when this engine holds it."""
        claim = await self._read()
        if not self._free(claim):
            self._saw_other(claim)
            self._not_before = 0.0  # the client that replaced us keeps the lease: no fight
            return False
        if self._clock() < self._not_before:
            return False  # replaced by a client that keeps no lease: hold off
        await self._write()
        await asyncio.sleep(self._verify_s)
        claim = await self._read()
        self.held = claim is not None and claim.holder == self.holder
        if not self.held:
            self._saw_other(claim)
        else:
            self.other = None
        return self.held

    async def hold(self, poll_s: float | None = None) -> None:
        """Wait (standing by) until this engine holds the lease."""
        poll = poll_s if poll_s is not None else self._ttl_s / 2
        announced = False
        while True:
            try:
                if await self.try_acquire():
                    log.info("ari_lease_acquired", variable=self.variable, holder=self.holder)
                    return
            except AriError as exc:
                log.warning("ari_lease_unreachable", error=str(exc))
            if not announced:
                log.warning(
                    "ari_app_held_by_another_engine",
                    variable=self.variable,
                    other=self.other,
                    hint="standing by; give a second deployment its own CALLCONTROL_ARI__APP",
                )
                announced = True
            await asyncio.sleep(poll)

    async def renew(self) -> bool:
        """Keep the lease; False when another engine holds it now (we are fenced)."""
        claim = await self._read()
        if claim is not None and claim.holder != self.holder and not self._free(claim):
            self.held = False
            self._saw_other(claim)
            return False
        await self._write()
        self.held = True
        return True

    async def keep(
        self, stream: FencedStream, *, on_lost: Callable[[], None], log_as: str = "ari"
    ) -> None:
        """Renew every ``renew_every_s`` while ``stream`` is connected, until cancelled.

        When another engine holds the lease now, ``on_lost()`` (stop serving), then
        the stream is dropped: it stands by in ``hold()`` before it reconnects. Logs
        ``<log_as>_lease_renew_failed`` and ``<log_as>_lease_lost``."""
        while True:
            await asyncio.sleep(self.renew_every_s)
            if not stream.connected:
                continue
            try:
                still_ours = await self.renew()
            except AriError as exc:
                log.warning(f"{log_as}_lease_renew_failed", error=str(exc))
                continue
            if not still_ours:
                log.error(f"{log_as}_lease_lost", other=self.other)
                on_lost()
                await stream.disconnect()

    async def release(self) -> None:
        """Give the lease up (a clean stop): a standby takes over at once."""
        if not self.held:
            return
        self.held = False
        claim = await self._read()
        if claim is not None and claim.holder == self.holder:
            await self._store.set_global_variable(self.variable, "")

    def replaced(self) -> None:
        """Our app was taken by another client: stand by, and hold off before retaking."""
        self.held = False
        self._not_before = self._clock() + self._holdoff_s
        log.error(
            "ari_application_replaced",
            variable=self.variable,
            retake_after_s=self._holdoff_s,
            hint="another client connected with this app name",
        )
        self._holdoff_s = min(self._holdoff_s * 2, 900.0)

    def _saw_other(self, claim: Claim | None) -> None:
        self.other = claim.holder if claim is not None else None
