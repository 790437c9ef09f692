"""SIP accounts provisioned into the real Asterisk: phones register with the
generated credentials, a wrong password is refused, a deleted account is gone.

The provisioning service runs in the test process with the file back-end
writing the sandbox's ``pjsip_callcontrol.conf`` and reloading res_pjsip over
the sandbox's AMI (coalesced: one reload per burst).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from support.asterisk import AsteriskSandbox
from support.data import Seeder
from support.sipp import Sipp, SippResult

from callcontrol.db.engine import create_engine, session_factory
from callcontrol.settings import AmiSettings, DatabaseSettings
from provisioning.ami import AmiClient
from provisioning.service import ProvisioningService, open_provisioning
from provisioning.settings import ProvisioningSettings

pytestmark = pytest.mark.e2e

T = TypeVar("T")
PHONE = "127.0.0.10"
_ports = itertools.count(5090)
_logins = itertools.count(1)


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


def register(workdir: Path, login: str, password: str) -> SippResult:
    return Sipp(
        "phone_register.xml",
        PHONE,
        next(_ports),
        workdir,
        remote="127.0.0.1:5060",
        service=login,
        extra_args=("-au", login, "-ap", password),
        timeout_s=10,
    ).run()


def test_a_provisioned_sip_account_registers_and_only_with_its_password(
    asterisk: AsteriskSandbox, db_url: str, data: Seeder, workdir: Path
) -> None:
    account = data.account()
    login = f"phone{next(_logins):03d}"

    async def create(svc: ProvisioningService) -> str:
        _, password = await svc.create_sip_account(account, login)
        return password

    password = provisioned(asterisk, db_url, create)
    conf = (asterisk.layout.etc_asterisk / "pjsip_callcontrol.conf").read_text()
    assert f"[{login}]" in conf and password not in conf
    auth = asterisk.cli(f"pjsip show auth {login}")
    assert "callcontrol" in auth, auth  # the realm Asterisk challenges with

    ok = register(workdir, login, password)
    assert ok.ok, ok.describe()
    assert ok.received(401) and ok.received(200)

    wrong = register(workdir, login, password + "x")
    assert not wrong.ok and not wrong.received(200), wrong.describe()

    async def delete(svc: ProvisioningService) -> None:
        await svc.delete_sip_account(login)

    provisioned(asterisk, db_url, delete)
    assert f"[{login}]" not in (asterisk.layout.etc_asterisk / "pjsip_callcontrol.conf").read_text()
    gone = register(workdir, login, password)
    assert not gone.ok and not gone.received(200), gone.describe()
