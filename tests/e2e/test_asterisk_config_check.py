"""``asterisk-config render --check`` against the real sandbox Asterisk: the
sandbox (rendered by the same renderer) matches its own plan, and a plan that
differs is named difference by difference."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from pydantic import SecretStr
from support.asterisk import AsteriskSandbox

from callcontrol.settings import AmiSettings
from provisioning.ami import AmiClient
from provisioning.asterisk_check import check_ami, check_ari
from provisioning.asterisk_config import AsteriskPlan

pytestmark = pytest.mark.e2e


def ami_of(sandbox: AsteriskSandbox) -> AmiClient:
    c = sandbox.config
    return AmiClient(
        AmiSettings(
            enabled=True,
            host=c.ami_host,
            port=c.ami_port,
            username=c.ami_username,
            password=SecretStr(c.ami_password),
        ),
        timeout_s=5.0,
    )


async def differences(sandbox: AsteriskSandbox, plan: AsteriskPlan) -> list[str]:
    found = await check_ari(plan, sandbox.ari_url)
    ami = ami_of(sandbox)
    try:
        return found + await check_ami(plan, ami.command)
    finally:
        await ami.close()


def test_the_sandbox_matches_the_configuration_rendered_for_it(asterisk: AsteriskSandbox) -> None:
    assert asyncio.run(differences(asterisk, asterisk.config.plan())) == []


def test_each_difference_is_named_with_its_file(asterisk: AsteriskSandbox) -> None:
    plan = asterisk.config.plan()
    other = replace(
        plan,
        app="callcontrol-not-this-one",
        pstn_endpoint="carrier-b-pstn",
        address=plan.address.model_copy(
            update={"carrier_match": ("127.0.0.2", "127.0.0.99"), "sip_bind": "127.0.0.1:5062"}
        ),
    )
    found = asyncio.run(differences(asterisk, other))
    assert "pjsip.conf: endpoint 'carrier-b-pstn' is missing" in found
    assert "pjsip.conf: carrier address 127.0.0.99 is not matched" in found
    assert any(
        line.startswith("extensions_callcontrol.conf: context callcontrol-inbound")
        for line in found
    )
    assert any("not bound to 127.0.0.1:5062" in line for line in found)
    assert not any("127.0.0.2 " in line for line in found)


def test_a_wrong_ari_password_is_named(asterisk: AsteriskSandbox) -> None:
    plan = replace(asterisk.config.plan(), ari_password="wrong")
    found = asyncio.run(check_ari(plan, asterisk.ari_url))
    assert found == [f"ari.conf: user {plan.ari_username!r} with this password is refused (401)"]
