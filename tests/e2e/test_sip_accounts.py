"""SIP accounts provisioned into the real Asterisk: phones register with the
generated credentials, a wrong password is refused, a deleted account is gone.

The provisioning service runs in the test process with the back-end the
sandbox uses (support.provisioning): on SQLite runs the file back-end, on
PostgreSQL runs the realtime back-end - the same test proves both.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.data import Seeder
from support.provisioning import new_sip_account, provisioned
from support.sipp import Sipp, SippResult

from provisioning.service import ProvisioningService

pytestmark = pytest.mark.e2e

PHONE = "127.0.0.10"
_ports = itertools.count(5090)
_logins = itertools.count(1)


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

    password = new_sip_account(asterisk, db_url, account, login)
    if asterisk.config.realtime_url is None:  # the file back-end's include file
        conf = (asterisk.layout.etc_asterisk / "pjsip_callcontrol.conf").read_text()
        assert f"[{login}]" in conf and password not in conf
    else:  # the realtime back-end: a row in PostgreSQL, nothing in the include file
        conf = (asterisk.layout.etc_asterisk / "pjsip_callcontrol.conf").read_text()
        assert f"[{login}]" not in conf
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
    assert "Unable to find" in asterisk.cli(f"pjsip show endpoint {login}")
    gone = register(workdir, login, password)
    assert not gone.ok and not gone.received(200), gone.describe()
