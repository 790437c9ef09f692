"""A small AMI client on panoramisk: connect on demand, ping with a timeout, reload pjsip.

Rules kept here:

- The panoramisk ``Manager`` is created inside the running loop (it binds its
  futures to the loop of its creator; created elsewhere it breaks on 3.11).
- Nothing waits without a deadline: login, ping and every action are bounded
  by ``timeout_s``. panoramisk's own keep-alive never reads its answer, so
  ``ping()`` is the liveness check; a failed ping or action drops the
  connection and the next call reconnects.
- No background reconnect loop: panoramisk's is switched off (it would keep
  dialling after ``close()`` and replay stale actions after a reconnect).
  Provisioning reloads rarely and retries on its own schedule, so connecting
  on demand is enough.
- pjsip is reloaded with ``Action: ModuleLoad`` / ``LoadType: reload`` /
  ``Module: res_pjsip.so`` (manager write class ``system``): unlike
  ``Action: Command`` (``module reload res_pjsip.so``), whose response is
  ``Success`` whatever the CLI printed, ModuleLoad answers ``Error`` when the
  reload fails or another reload is in progress.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from panoramisk import Manager

from provisioning.settings import AmiSettings
from provisioning.state import ReloadResult

log = logging.getLogger(__name__)

PJSIP_MODULE = "res_pjsip.so"
DEFAULT_TIMEOUT_S = 10.0


class AmiError(Exception):
    """AMI could not be reached, refused the login or did not answer in time."""


class _Manager(Manager):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's Manager without its background reconnect."""

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # the caller of connect() sees the error; no retry loop
        super().connection_made(f)

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        self.authenticated = False
        pinger = getattr(self, "pinger", None)
        if pinger is not None:
            pinger.cancel()
            self.pinger = None
        log.info("AMI connection lost")


class AmiClient:
    """One AMI session, (re)opened when needed."""

    def __init__(self, settings: AmiSettings, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._manager: _Manager | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        m = self._manager
        return m is not None and bool(m._connected) and bool(m.authenticated)

    async def connect(self) -> None:
        """Open the session and log in; raise ``AmiError`` on any failure."""
        async with self._lock:
            if not self.connected:
                await self._open()

    async def _open(self) -> None:
        self._drop()
        s = self._settings
        manager = _Manager(
            loop=asyncio.get_running_loop(),
            host=s.host,
            port=s.port,
            username=s.username,
            secret=s.password.get_secret_value(),
            events="off",
            ping_delay=86400,  # its unchecked keep-alive is replaced by ping()
            ping_interval=86400,
            # Not replayed after a reconnect: a late duplicate reload is worse than a retry.
            forgetable_actions=("ping", "login", "moduleload", "command"),
        )
        self._manager = manager
        try:
            async with asyncio.timeout(self._timeout_s):
                await manager.connect()  # connection_made has run when this returns
                login = manager.authenticated_future
                if login is None:
                    raise AmiError("AMI connection closed before login")
                reply = await asyncio.shield(login)
        except (OSError, TimeoutError) as exc:
            self._drop()
            raise AmiError(f"AMI at {s.host}:{s.port} unreachable: {exc!r}") from exc
        if not reply.success:
            self._drop()
            raise AmiError(f"AMI login as {s.username!r} refused: {reply.message}")
        log.debug("AMI connected to %s:%s", s.host, s.port)

    async def action(self, action: dict[str, str]) -> Any:
        """Send one action and return its panoramisk ``Message``; ``AmiError`` on failure."""
        await self.connect()
        assert self._manager is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._manager.send_action(dict(action))
        except TimeoutError as exc:
            self._drop()  # an unanswered session is not trusted again
            raise AmiError(f"AMI action {action.get('Action')} timed out") from exc

    async def ping(self) -> bool:
        """True when AMI answers a Ping within the timeout."""
        try:
            reply = await self.action({"Action": "Ping"})
        except AmiError as exc:
            log.warning("AMI ping failed: %s", exc)
            return False
        return bool(reply.success)

    async def command(self, text: str) -> str:
        """The output of one Asterisk CLI command (``Action: Command``, class ``command``)."""
        reply = await self.action({"Action": "Command", "Command": text})
        output = reply.get("Output", "")
        lines = output if isinstance(output, list) else [str(output)]
        content = str(getattr(reply, "content", "") or "")
        return "\n".join([*lines, content])

    async def reload_pjsip(self) -> ReloadResult:
        """Ask Asterisk to reload res_pjsip (re-reads pjsip.conf and its includes)."""
        try:
            reply = await self.action(
                {"Action": "ModuleLoad", "Module": PJSIP_MODULE, "LoadType": "reload"}
            )
        except AmiError as exc:
            return ReloadResult(False, str(exc))
        message = str(reply.message or reply.get("Response", ""))
        return ReloadResult(bool(reply.success), message)

    def _drop(self) -> None:
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()

    async def close(self) -> None:
        self._drop()
