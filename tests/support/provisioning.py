"""Provisioning against the sandbox's Asterisk from a test process.

The back-end follows the sandbox: when Asterisk reads SIP accounts from
PostgreSQL (``realtime_url``), the realtime back-end writes the ps_* rows
there (no reload needed); otherwise the file back-end writes the sandbox's
``pjsip_callcontrol.conf`` and reloads res_pjsip over the sandbox's AMI
(coalesced: one reload per burst). On exit from ``provisioned`` Asterisk sees
the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import SecretStr

from callcontrol.db.engine import create_engine, session_factory
from callcontrol.settings import AmiSettings, DatabaseSettings
from provisioning.ami import AmiClient
from provisioning.service import ProvisioningService, open_provisioning
from provisioning.settings import ProvisioningSettings
from support.asterisk import AsteriskSandbox

T = TypeVar("T")


def provisioning_settings(asterisk: AsteriskSandbox) -> ProvisioningSettings:
    realtime_url = asterisk.config.realtime_url
    return ProvisioningSettings(
        backend="file" if realtime_url is None else "realtime",
        realtime_url=SecretStr(realtime_url) if realtime_url is not None else None,
        file_path=asterisk.layout.etc_asterisk / "pjsip_callcontrol.conf",
        reload_coalesce_s=0.1,
        media_address="127.0.0.1",
    )


def provisioned(
    asterisk: AsteriskSandbox, db_url: str, work: Callable[[ProvisioningService], Awaitable[T]]
) -> T:
    """Run ``work`` with a provisioning service; on exit Asterisk has reloaded."""

    async def go() -> T:
        settings = provisioning_settings(asterisk)
        engine = create_engine(DatabaseSettings(url=db_url), pooled=False)
        ami = AmiClient(AmiSettings(enabled=True))
        try:
            async with open_provisioning(settings, session_factory(engine), reloader=ami) as svc:
                return await work(svc)
        finally:
            await ami.close()
            await engine.dispose()

    return asyncio.run(go())


def new_sip_account(asterisk: AsteriskSandbox, db_url: str, account_id: int, login: str) -> str:
    """Provision a SIP account of ``account_id``; returns its password."""

    async def create(svc: ProvisioningService) -> str:
        _, password = await svc.create_sip_account(account_id, login)
        return password

    return provisioned(asterisk, db_url, create)
