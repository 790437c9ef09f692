"""``callcontrol doctor`` against real peers that are not Asterisk: each check
fails for its own reason (an unmigrated SQLite file, a closed ARI port, a closed
SMTP port, a media folder that cannot be made, a missing provisioning folder)
and passes when the peer is there (a real SMTP server, a migrated database)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.engine import free_port
from support.smtp import SmtpSink

from callcontrol.doctor import Finding, run_checks
from callcontrol.settings import Settings


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(free_port())
    sink.start()
    yield sink
    sink.stop()


def settings_for(tmp_path: Path, db_url: str, **parts: object) -> Settings:
    values: dict[str, object] = {
        "database": {"url": db_url},
        "ari": {"url": f"http://127.0.0.1:{free_port()}", "app": "callcontrol-test-doctor"},
        "smtp": {"port": free_port(), "timeout_s": 2},
        "media": {"root": str(tmp_path / "media")},
        "provisioning": {"file_path": str(tmp_path / "pjsip_callcontrol.conf")},
    }
    return Settings(**(values | parts))  # type: ignore[arg-type]


def by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.name: f for f in findings}


def test_an_unmigrated_database_fails_saying_to_upgrade(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    found = by_name(
        asyncio.run(run_checks(settings_for(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/empty.db")))
    )
    assert found["database"].status == "fail"
    assert "run callcontrol db upgrade" in found["database"].detail


def test_a_migrated_database_and_a_real_smtp_server_pass(
    tmp_path: Path, db_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(tmp_path, db_url, smtp={"port": smtp.port})
    found = by_name(asyncio.run(run_checks(settings)))
    assert found["database"].status == "ok", found["database"]
    assert found["smtp"].status == "ok", found["smtp"]
    assert found["provisioning"].status == "ok"
    assert found["provisioning"].detail.endswith("; reloads res_pjsip over ARI")  # AMI off
    assert found["ami"].status == "skip" and "pjsip reloads go over ARI" in found["ami"].detail


def test_closed_ari_and_smtp_ports_fail_with_what_to_check(tmp_path: Path, db_url: str) -> None:
    found = by_name(asyncio.run(run_checks(settings_for(tmp_path, db_url))))
    assert found["ari"].status == "fail" and "CALLCONTROL_ARI__URL" in found["ari"].detail
    assert found["ari-app"].status == "skip" and found["media"].status == "skip"
    assert found["smtp"].status == "fail" and "CALLCONTROL_SMTP__HOST" in found["smtp"].detail


def test_a_missing_provisioning_folder_fails(tmp_path: Path, db_url: str) -> None:
    settings = settings_for(
        tmp_path, db_url, provisioning={"file_path": str(tmp_path / "nope" / "p.conf")}
    )
    found = by_name(asyncio.run(run_checks(settings)))
    assert found["provisioning"].status == "fail"
    assert "CALLCONTROL_PROVISIONING__FILE_PATH" in found["provisioning"].detail


def test_the_command_prints_one_line_per_check_and_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    env = {
        "CALLCONTROL_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/empty.db",
        "CALLCONTROL_ARI__URL": f"http://127.0.0.1:{free_port()}",
        "CALLCONTROL_ARI__APP": "callcontrol-test-doctor",
        "CALLCONTROL_SMTP__PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "doctor"],
        env=env | {"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    names = [line.split(":", 1)[0].split()[-1] for line in lines]
    assert names == [
        "database",
        "ari",
        "ari-app",
        "media",
        "ami",
        "dialplan",
        "smtp",
        "provisioning",
    ]
    assert all(line.split()[0] in ("OK", "FAIL", "SKIP") for line in lines)
