"""The sandbox's Asterisk configuration: rendered from the project's files.

Realtime pjsip (SIP accounts read from PostgreSQL) is installed only when the
settings ask for it, and its connection comes from the realtime URL.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from callcontrol.sandbox.config import REALTIME_FILES, SandboxConfig, render, rendered_files
from callcontrol.sandbox.errors import SandboxError
from callcontrol.settings import AmiSettings, AriSettings
from provisioning.settings import ProvisioningSettings

REALTIME_URL = "postgresql+asyncpg://cc:s3cret@127.0.0.1:6543/accounts"


def test_the_default_sandbox_has_no_realtime_files_and_renders_every_placeholder() -> None:
    files = rendered_files(SandboxConfig())
    assert not set(REALTIME_FILES) & set(files)
    assert all("{{" not in text for text in files.values())
    assert "#tryinclude modules_realtime.conf" in files["modules.conf"]


def test_a_realtime_sandbox_reads_sip_accounts_from_the_urls_database() -> None:
    files = rendered_files(replace(SandboxConfig(), realtime_url=REALTIME_URL))
    assert set(REALTIME_FILES) <= set(files)
    pgsql = files["res_pgsql.conf"]
    for line in ("dbhost = 127.0.0.1", "dbport = 6543", "dbname = accounts", "dbuser = cc"):
        assert line in pgsql
    assert "dbpass = s3cret" in pgsql
    assert "ps_endpoints => pgsql,accounts" in files["extconfig.conf"]
    assert "endpoint = realtime,ps_endpoints" in files["sorcery.conf"]
    assert "require = res_config_pgsql.so" in files["modules_realtime.conf"]


def test_the_realtime_url_comes_from_the_provisioning_settings_only_for_realtime() -> None:
    ari, ami = AriSettings(), AmiSettings()
    realtime = ProvisioningSettings(backend="realtime", realtime_url=REALTIME_URL)  # type: ignore[arg-type]
    assert SandboxConfig.from_settings(ari, ami, realtime).realtime_url == REALTIME_URL
    assert SandboxConfig.from_settings(ari, ami, ProvisioningSettings()).realtime_url is None


def test_a_realtime_url_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(SandboxError, match="postgresql"):
        rendered_files(replace(SandboxConfig(), realtime_url="sqlite+aiosqlite:///x.db"))


def test_an_unknown_placeholder_is_an_error_not_a_silent_blank() -> None:
    with pytest.raises(SandboxError, match="NOPE"):
        render("x = {{NOPE}}", {}, source="t.conf")
