"""The AMI client against a fake AMI: login, ping with a deadline, pjsip reload, reconnect."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr
from support.fake_ami import FakeAmi

from provisioning.ami import AmiClient, AmiError


async def test_it_logs_in_pings_and_reloads_pjsip_with_moduleload() -> None:
    async with FakeAmi() as ami:
        client = AmiClient(ami.settings(), timeout_s=2.0)
        try:
            assert await client.ping()
            result = await client.reload_pjsip()
        finally:
            await client.close()
    assert result.ok and ami.reloads == 1 and ami.logins == 1
    reload = next(a for a in ami.actions if a["action"] == "ModuleLoad")
    assert reload["module"] == "res_pjsip.so" and reload["loadtype"] == "reload"
    login = next(a for a in ami.actions if a["action"] == "Login")
    assert login["events"] == "off"


async def test_a_refused_reload_is_a_failure_with_asterisks_message() -> None:
    async with FakeAmi(fail_reloads=1) as ami:
        client = AmiClient(ami.settings(), timeout_s=2.0)
        try:
            result = await client.reload_pjsip()
        finally:
            await client.close()
    assert not result.ok and "unknown error" in result.message


async def test_a_wrong_secret_is_refused() -> None:
    async with FakeAmi() as ami:
        settings = ami.settings().model_copy(update={"password": SecretStr("nope")})
        client = AmiClient(settings, timeout_s=2.0)
        with pytest.raises(AmiError, match="refused"):
            await client.connect()
        result = await client.reload_pjsip()
        await client.close()
    assert not result.ok and ami.reloads == 0


async def test_a_silent_asterisk_fails_the_ping_within_the_timeout() -> None:
    async with FakeAmi() as ami:
        client = AmiClient(ami.settings(), timeout_s=0.3)
        await client.connect()
        ami.silent = True
        began = time.monotonic()
        try:
            assert not await client.ping()
        finally:
            await client.close()
    assert time.monotonic() - began < 2.0


async def test_it_reconnects_after_asterisk_dropped_the_session() -> None:
    async with FakeAmi() as ami:
        client = AmiClient(ami.settings(), timeout_s=2.0)
        try:
            assert (await client.reload_pjsip()).ok
            await ami.drop_clients()
            # The first action may still meet the dead socket; the next one reconnects.
            for _ in range(3):
                if (await client.reload_pjsip()).ok:
                    break
        finally:
            await client.close()
    assert ami.reloads == 2 and ami.logins == 2


async def test_an_unreachable_ami_is_an_error_not_a_hang() -> None:
    async with FakeAmi() as ami:
        settings = ami.settings()
    client = AmiClient(settings, timeout_s=1.0)
    with pytest.raises(AmiError, match="unreachable"):
        await client.connect()
    assert not await client.ping()
    await client.close()
