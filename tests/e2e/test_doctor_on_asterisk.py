"""``callcontrol doctor`` against the real sandbox Asterisk: everything passes
with the right settings, and each Asterisk check fails for its own reason - a
wrong ARI password, an app leased by a running engine, a media folder Asterisk
does not see, a dialplan that sends calls to another app."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.asterisk import AsteriskSandbox
from support.engine import EngineProcess

from callcontrol.doctor import Finding, run_checks
from callcontrol.engine.lease import Claim
from callcontrol.sandbox.layout import MEDIA_MOUNT_POINT
from callcontrol.settings import Settings
from provisioning.asterisk_check import basic_auth

pytestmark = pytest.mark.e2e


def settings_for(sandbox: AsteriskSandbox, db_url: str, tmp_path: Path, **over: Any) -> Settings:
    c = sandbox.config
    values: dict[str, Any] = {
        "database": {"url": db_url},
        "ari": {
            "url": sandbox.ari_url,
            "username": c.ari_username,
            "password": c.ari_password,
            "app": c.ari_app,
        },
        "ami": {
            "enabled": True,
            "host": c.ami_host,
            "port": c.ami_port,
            "username": c.ami_username,
            "password": c.ami_password,
        },
        "media": {"root": str(sandbox.media_dir), "asterisk_root": MEDIA_MOUNT_POINT},
        "provisioning": {"file_path": str(sandbox.layout.etc_asterisk / "pjsip_callcontrol.conf")},
    }
    for key, value in over.items():
        values[key] = values.get(key, {}) | value
    return Settings(**values)


def by_name(settings: Settings) -> dict[str, Finding]:
    return {f.name: f for f in asyncio.run(run_checks(settings))}


def test_every_asterisk_check_passes_against_the_sandbox(
    asterisk: AsteriskSandbox, db_url: str, tmp_path: Path
) -> None:
    found = by_name(settings_for(asterisk, db_url, tmp_path))
    # ari-app: the sandbox's app may be held by the session's engine (next test);
    # a free app passes in test_an_app_leased_by_a_running_engine_is_taken.
    for name in ("database", "ari", "media", "ami", "dialplan", "provisioning"):
        assert found[name].status == "ok", found[name].line()


def test_an_app_an_engine_is_connected_to_is_taken(
    engine: EngineProcess, asterisk: AsteriskSandbox, db_url: str, tmp_path: Path
) -> None:
    found = by_name(settings_for(asterisk, db_url, tmp_path))
    assert found["ari-app"].status == "fail"
    assert "connected by another client" in found["ari-app"].detail


def test_a_wrong_ari_password_fails_naming_the_settings(
    asterisk: AsteriskSandbox, db_url: str, tmp_path: Path
) -> None:
    found = by_name(settings_for(asterisk, db_url, tmp_path, ari={"password": "wrong"}))
    assert found["ari"].status == "fail" and "401" in found["ari"].detail
    assert "CALLCONTROL_ARI__USERNAME" in found["ari"].detail


def test_an_app_leased_by_a_running_engine_is_taken(
    asterisk: AsteriskSandbox, db_url: str, tmp_path: Path
) -> None:
    settings = settings_for(asterisk, db_url, tmp_path, ari={"app": "callcontrol-test-doctor"})
    variable = "CALLCONTROL_LEASE_callcontrol_test_doctor"

    async def set_lease(value: str) -> None:
        auth = basic_auth(asterisk.ari_username, asterisk.ari_password)
        async with aiohttp.ClientSession(headers={"Authorization": auth}) as session:
            url = f"{asterisk.ari_base_url}/asterisk/variable"
            async with session.post(url, params={"variable": variable, "value": value}) as r:
                assert r.status == 204

    asyncio.run(set_lease(Claim("otherhost/1234/abcd", time.time() + 60).encode()))
    try:
        found = by_name(settings)
    finally:
        asyncio.run(set_lease(""))
    assert found["ari-app"].status == "fail" and "otherhost/1234/abcd" in found["ari-app"].detail
    assert by_name(settings)["ari-app"].status == "ok"


def test_a_media_folder_asterisk_does_not_see_fails_saying_what_to_set(
    asterisk: AsteriskSandbox, db_url: str, tmp_path: Path
) -> None:
    found = by_name(
        settings_for(asterisk, db_url, tmp_path, media={"asterisk_root": "/srv/elsewhere"})
    )
    assert found["media"].status == "fail"
    assert "CALLCONTROL_MEDIA__ASTERISK_ROOT" in found["media"].detail


def test_a_dialplan_for_another_app_fails(
    asterisk: AsteriskSandbox, db_url: str, tmp_path: Path
) -> None:
    found = by_name(settings_for(asterisk, db_url, tmp_path, ari={"app": "callcontrol-other"}))
    assert found["dialplan"].status == "fail"
    assert "asterisk-config render" in found["dialplan"].detail
