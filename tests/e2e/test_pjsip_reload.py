"""The file back-end's pjsip reload through the real Asterisk, over ARI and over AMI.

ARI (``PUT /ari/asterisk/modules/res_pjsip.so``) is the default
(``provisioning.reload_via=auto`` with AMI off): the account written to the
include file is an endpoint in Asterisk once the service is done, and gone
after it is deleted. A reload that fails (here: ARI refuses the login) is
reported with its reason and kept pending, not lost. The file back-end is
forced on PostgreSQL runs too: the sandbox's sorcery reads config objects
beside the realtime ones.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Literal

import pytest
from support.asterisk import AsteriskSandbox
from support.data import Seeder
from support.provisioning import provisioned, provisioning_settings, sandbox_reloader

from callcontrol.db.engine import create_engine, session_factory
from callcontrol.settings import DatabaseSettings
from provisioning.service import ProvisioningService, open_provisioning

pytestmark = pytest.mark.e2e

_logins = itertools.count(1)


@pytest.mark.parametrize("via", ["ari", "ami"])
def test_an_account_written_to_the_include_file_is_in_asterisk_after_the_reload(
    asterisk: AsteriskSandbox, db_url: str, data: Seeder, via: Literal["ari", "ami"]
) -> None:
    account = data.account()
    login = f"reload{via}{next(_logins):03d}"

    async def create(svc: ProvisioningService) -> None:
        await svc.create_sip_account(account, login)

    provisioned(asterisk, db_url, create, via=via, backend="file")
    shown = asterisk.cli(f"pjsip show endpoint {login}")
    assert f"Endpoint:  {login}" in shown, shown

    async def delete(svc: ProvisioningService) -> None:
        await svc.delete_sip_account(login)

    provisioned(asterisk, db_url, delete, via=via, backend="file")
    assert "Unable to find" in asterisk.cli(f"pjsip show endpoint {login}")


def test_a_refused_ari_reload_is_reported_and_stays_pending(
    asterisk: AsteriskSandbox, db_url: str, data: Seeder
) -> None:
    account = data.account()
    login = f"reloadfail{next(_logins):03d}"

    async def go() -> tuple[str, str | None, str]:
        settings = provisioning_settings(asterisk, backend="file")
        engine = create_engine(DatabaseSettings(url=db_url), pooled=False)
        wrong = sandbox_reloader(asterisk, "ari", ari_password="not-the-password")
        try:
            async with open_provisioning(settings, session_factory(engine), reloader=wrong) as svc:
                await svc.create_sip_account(account, login)
                report = await svc.sync()
                shown = await asyncio.to_thread(asterisk.cli, f"pjsip show endpoint {login}")
                return report.reload, report.reload_error, shown
        finally:
            await wrong.close()
            await engine.dispose()

    status, error, shown = asyncio.run(go())
    assert status == "failed", (status, error)
    assert error is not None and "ARI refused the login" in error
    assert "not-the-password" not in error
    assert "Unable to find" in shown  # not reloaded: Asterisk does not know it yet

    async def nothing(svc: ProvisioningService) -> None:
        await svc.sync()

    provisioned(asterisk, db_url, nothing, backend="file")  # the next good reload takes it
    assert f"Endpoint:  {login}" in asterisk.cli(f"pjsip show endpoint {login}")
    provisioned(asterisk, db_url, lambda svc: svc.delete_sip_account(login), backend="file")
