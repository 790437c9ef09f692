"""How Asterisk is told to re-read pjsip.conf: over ARI or over AMI.

ARI: ``PUT /ari/asterisk/modules/res_pjsip.so``; AMI: ``provisioning/ami.py``.

Why ARI and not only AMI: the engine always has ARI, while AMI is off by
default - and AMI costs Asterisk CPU on every call even with no client
connected: once ``manager.conf`` enables it, the manager forwards every channel
message (a snapshot per dialplan priority run) to its one ``manager:core``
thread, which formats AMI events from them (``main/manager.c``
``subscribe_all``; docs/benchmarks.md, 2026-12-03). With ARI doing the
reloads, AMI can stay off.

ARI's module reload has the same answers as AMI's ``ModuleLoad`` (both call
``ast_module_reload``; ``res/ari/resource_asterisk.c``): 204 reloaded,
202 queued (Asterisk is still starting; it reloads once up), 409 failed or
another reload in progress, 404 module not loaded. Only 204 and 202 count as
done; anything else, or no answer within the timeout, is a failed reload
that the file back-end retries.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from callcontrol.ari.client import basic_auth_header
from callcontrol.ari.http import HttpConnectionPool
from provisioning.state import PjsipReloader, ReloadResult

if TYPE_CHECKING:
    from callcontrol.settings import Settings

log = logging.getLogger(__name__)

PJSIP_MODULE = "res_pjsip.so"

ReloadVia = Literal["auto", "ari", "ami", "off"]
"""``ProvisioningSettings.reload_via``."""


class AriPjsipReloader:
    """Reloads res_pjsip through ARI's REST interface (one keep-alive connection)."""

    def __init__(
        self, base_url: str, username: str, password: str, *, timeout_s: float = 10.0
    ) -> None:
        base = base_url.rstrip("/")
        self._pool = HttpConnectionPool(base, max_connections=1)
        self._where = base
        prefix = (urlsplit(base).path or "") + "/ari"
        self._request = (
            f"PUT {prefix}/asterisk/modules/{PJSIP_MODULE} HTTP/1.1\r\n"
            f"Host: {self._pool.host_header}\r\n"
            f"Authorization: {basic_auth_header(username, password)}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        self._timeout_s = timeout_s

    async def reload_pjsip(self) -> ReloadResult:
        try:
            status, reason, body = await self._pool.request("PUT", self._request, self._timeout_s)
        except TimeoutError:
            took = f"no answer within {self._timeout_s} s"
            return ReloadResult(False, f"ARI at {self._where}: {took}")
        except OSError as exc:
            return ReloadResult(False, f"ARI at {self._where} unreachable: {exc!r}")
        if status == 204:
            return ReloadResult(True, "reloaded")
        if status == 202:
            return ReloadResult(True, "queued (Asterisk is starting; it reloads once up)")
        if status == 401:
            return ReloadResult(
                False, "ARI refused the login: CALLCONTROL_ARI__* must match ari.conf"
            )
        return ReloadResult(False, f"ARI answered {status} {reason}: {_message(body)}")

    async def close(self) -> None:
        await self._pool.close()


def _message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text[:200] if text else "(no body)"


def reloader_kind(via: ReloadVia, *, ami_enabled: bool) -> Literal["ari", "ami"] | None:
    """Which reloader a setting means: ``auto`` is AMI when it is enabled, else ARI."""
    if via == "off":
        return None
    if via == "auto":
        return "ami" if ami_enabled else "ari"
    return via


@asynccontextmanager
async def open_reloader(settings: Settings) -> AsyncIterator[PjsipReloader | None]:
    """The reloader ``settings.provisioning.reload_via`` names (None: ``off``), closed on exit."""
    from provisioning.ami import AmiClient

    part = settings.provisioning
    kind = reloader_kind(part.reload_via, ami_enabled=settings.ami.enabled)
    reloader: AriPjsipReloader | AmiClient | None = None
    if kind == "ami":
        reloader = AmiClient(settings.ami, timeout_s=part.ami_timeout_s)
    elif kind == "ari":
        ari = settings.ari
        reloader = AriPjsipReloader(
            str(ari.url), ari.username, ari.password.get_secret_value(),
            timeout_s=part.reload_timeout_s,
        )  # fmt: skip
    try:
        yield reloader
    finally:
        if reloader is not None:
            await reloader.close()
