"""Provisioning against the sandbox's Asterisk from a test process.

The back-end follows the sandbox: when Asterisk reads SIP accounts from
PostgreSQL (``realtime_url``), the realtime back-end writes the ps_* rows
there (no reload needed); otherwise the file back-end writes the sandbox's
``pjsip_callcontrol.conf`` and reloads res_pjsip over the sandbox's ARI (the
default of ``provisioning.reload_via`` when AMI is off) or AMI (coalesced: one
reload per burst). On exit from ``provisioned`` Asterisk sees the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from pydantic import SecretStr

from callcontrol.db.engine import create_engine, session_factory
from callcontrol.settings import AmiSettings, DatabaseSettings
from provisioning.ami import AmiClient
from provisioning.reloaders import AriPjsipReloader
from provisioning.service import ProvisioningService, open_provisioning
from provisioning.settings import ProvisioningSettings
from support.asterisk import AsteriskSandbox

T = TypeVar("T")


def provisioning_settings(
    asterisk: AsteriskSandbox, *, backend: Literal["file", "realtime"] | None = None
) -> ProvisioningSettings:
    """The sandbox's back-end (``backend`` forces one: the include file works on both)."""
    realtime_url = asterisk.config.realtime_url
    chosen = backend or ("file" if realtime_url is None else "realtime")
    return ProvisioningSettings(
        backend=chosen,
        realtime_url=SecretStr(realtime_url) if realtime_url is not None else None,
        file_path=asterisk.layout.etc_asterisk / "pjsip_callcontrol.conf",
        reload_coalesce_s=0.1,
        media_address="127.0.0.1",
    )


def sandbox_reloader(
    asterisk: AsteriskSandbox, via: Literal["ari", "ami"], *, ari_password: str | None = None
) -> AriPjsipReloader | AmiClient:
    """A reloader of the sandbox's Asterisk (``ari_password``: a different one, to fail)."""
    c = asterisk.config
    if via == "ami":
        return AmiClient(
            AmiSettings(
                enabled=True, host=c.ami_host, port=c.ami_port, username=c.ami_username,
                password=SecretStr(c.ami_password),
            )
        )  # fmt: skip
    password = c.ari_password if ari_password is None else ari_password
    return AriPjsipReloader(
        f"http://{c.http_host}:{c.http_port}", c.ari_username, password, timeout_s=5.0
    )


def provisioned(
    asterisk: AsteriskSandbox,
    db_url: str,
    work: Callable[[ProvisioningService], Awaitable[T]],
    *,
    via: Literal["ari", "ami"] = "ari",
    backend: Literal["file", "realtime"] | None = None,
) -> T:
    """Run ``work`` with a provisioning service; on exit Asterisk has reloaded."""

    async def go() -> T:
        settings = provisioning_settings(asterisk, backend=backend)
        engine = create_engine(DatabaseSettings(url=db_url), pooled=False)
        reloader = sandbox_reloader(asterisk, via)
        try:
            async with open_provisioning(
                settings, session_factory(engine), reloader=reloader
            ) as svc:
                return await work(svc)
        finally:
            await reloader.close()
            await engine.dispose()

    return asyncio.run(go())


def new_sip_account(asterisk: AsteriskSandbox, db_url: str, account_id: int, login: str) -> str:
    """Provision a SIP account of ``account_id``; returns its password."""

    async def create(svc: ProvisioningService) -> str:
        _, password = await svc.create_sip_account(account_id, login)
        return password

    return provisioned(asterisk, db_url, create)
