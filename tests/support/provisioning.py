"""Provisioning against the sandbox's Asterisk from a test process.

The file back-end writes the sandbox's ``pjsip_callcontrol.conf`` and reloads
res_pjsip over the sandbox's AMI (coalesced: one reload per burst); on exit
from ``provisioned`` Asterisk has reloaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from callcontrol.db.engine import create_engine, session_factory
from callcontrol.settings import AmiSettings, DatabaseSettings
from provisioning.ami import AmiClient
from provisioning.service import ProvisioningService, open_provisioning
from provisioning.settings import ProvisioningSettings
from support.asterisk import AsteriskSandbox

T = TypeVar("T")


def provisioned(
    asterisk: AsteriskSandbox, db_url: str, work: Callable[[ProvisioningService], Awaitable[T]]
) -> T:
    """Run ``work`` with a provisioning service; on exit Asterisk has reloaded."""

    async def go() -> T:
        settings = ProvisioningSettings(
            file_path=asterisk.layout.etc_asterisk / "pjsip_callcontrol.conf",
            reload_coalesce_s=0.1,
        )
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
