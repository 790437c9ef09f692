"""pjsip reloads over ARI (provisioning/reloaders.py) against a small HTTP server that
answers as Asterisk's ``PUT /ari/asterisk/modules/{module}`` does: each answer
maps to done or failed with its reason, the password never shows, and the
setting picks ARI or AMI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from callcontrol.settings import SettingsError, load_settings
from provisioning.ami import AmiClient
from provisioning.reloaders import AriPjsipReloader, open_reloader, reloader_kind

PASSWORD = "s3cret-ari"


class FakeAsteriskModules:
    """``PUT /ari/asterisk/modules/{name}`` answering ``status`` (and what it was asked)."""

    def __init__(self, status: int = 204, *, delay_s: float = 0.0) -> None:
        self.status = status
        self.delay_s = delay_s
        self.seen: list[tuple[str, str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path, request.headers.get("Authorization", "")))
        await asyncio.sleep(self.delay_s)
        if self.status == 204:
            return web.Response(status=204)
        if self.status == 202:
            return web.Response(status=202)
        messages = {
            409: "Another reload is currently in progress",
            404: "Module not found in running modules",
            401: "Authentication required",
        }
        return web.json_response({"message": messages.get(self.status, "?")}, status=self.status)


@asynccontextmanager
async def served(fake: FakeAsteriskModules) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_put("/ari/asterisk/modules/{name}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def reload_once(fake: FakeAsteriskModules, *, timeout_s: float = 2.0) -> tuple[bool, str]:
    async with served(fake) as url:
        reloader = AriPjsipReloader(url, "callcontrol", PASSWORD, timeout_s=timeout_s)
        try:
            result = await reloader.reload_pjsip()
        finally:
            await reloader.close()
    return result.ok, result.message


async def test_a_reload_puts_res_pjsip_with_the_ari_login() -> None:
    fake = FakeAsteriskModules(204)
    assert await reload_once(fake) == (True, "reloaded")
    [(method, path, auth)] = fake.seen
    assert (method, path) == ("PUT", "/ari/asterisk/modules/res_pjsip.so")
    assert auth.startswith("Basic ") and PASSWORD not in auth  # base64, not plain


async def test_a_reload_queued_while_asterisk_starts_counts_as_done() -> None:
    ok, message = await reload_once(FakeAsteriskModules(202))
    assert ok and "queued" in message


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (409, "Another reload is currently in progress"),
        (404, "Module not found"),
        (401, "ARI refused the login: CALLCONTROL_ARI__* must match ari.conf"),
    ],
)
async def test_a_refused_reload_fails_with_asterisks_reason(status: int, reason: str) -> None:
    ok, message = await reload_once(FakeAsteriskModules(status))
    assert not ok and reason in message and PASSWORD not in message


async def test_no_answer_in_time_is_a_failed_reload() -> None:
    ok, message = await reload_once(FakeAsteriskModules(204, delay_s=2.0), timeout_s=0.2)
    assert not ok and "no answer within 0.2 s" in message


async def test_an_unreachable_asterisk_is_a_failed_reload() -> None:
    async with served(FakeAsteriskModules()) as url:
        pass  # the port is closed again
    reloader = AriPjsipReloader(url, "callcontrol", PASSWORD, timeout_s=1.0)
    try:
        result = await reloader.reload_pjsip()
    finally:
        await reloader.close()
    assert not result.ok and "unreachable" in result.message


@pytest.mark.parametrize(
    ("via", "ami_enabled", "kind"),
    [
        ("auto", False, "ari"),
        ("auto", True, "ami"),
        ("ari", True, "ari"),
        ("ami", True, "ami"),
        ("off", True, None),
        ("off", False, None),
    ],
)
def test_the_setting_picks_the_reloader(via: str, ami_enabled: bool, kind: str | None) -> None:
    assert reloader_kind(via, ami_enabled=ami_enabled) == kind  # type: ignore[arg-type]


async def test_open_reloader_builds_what_the_settings_name() -> None:
    async with open_reloader(load_settings()) as default:
        assert isinstance(default, AriPjsipReloader)  # AMI is off by default
    with_ami = load_settings(ami={"enabled": True})
    async with open_reloader(with_ami) as reloader:
        assert isinstance(reloader, AmiClient)
    off = load_settings(provisioning={"reload_via": "off"})
    async with open_reloader(off) as none:
        assert none is None


def test_reloads_over_ami_without_ami_are_refused_naming_both_settings() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(provisioning={"reload_via": "ami"}, ari={"password": PASSWORD})
    message = str(refused.value)
    assert "provisioning.reload_via=ami needs CALLCONTROL_AMI__ENABLED=true" in message
    assert PASSWORD not in message
