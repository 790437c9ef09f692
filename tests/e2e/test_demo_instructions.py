"""The README's first command prints SIPp commands for a demo call; they must
work exactly as printed. This runs `callcontrol demo seed` on the test
database, takes the two `sipp` lines from scripts/demo.sh, and runs them
(with only `-nostdin` and a timeout added) against the real Asterisk and
the engine: the demo DID is forwarded to the far end, answered, and leaves
an answered CDR."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.data import Seeder
from support.engine import EngineProcess
from support.provisioning import provisioned
from support.smtp import SmtpSink

from callcontrol.demo import DEMO_DID, demo_account_id
from callcontrol.settings import DatabaseSettings, Settings
from provisioning.service import LoginTaken, ProvisioningService

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
UNATTENDED = ["-nostdin", "-timeout", "30s", "-timeout_error"]


def printed_sipp_commands(password: str = "") -> list[list[str]]:
    lines = (ROOT / "scripts" / "demo.sh").read_text().replace("$PASSWORD", password)
    return [
        shlex.split(line.strip())
        for line in lines.splitlines()
        if line.strip().startswith("sipp -sf")
    ]


def seed(engine: EngineProcess) -> None:
    seeded = subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "demo", "seed"],
        env=engine.env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr


def run_pair(background: list[str], foreground: list[str]) -> None:
    """Start ``background`` (a far end), run ``foreground`` to its end; both must pass."""
    far = subprocess.Popen(
        [*background, *UNATTENDED], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        called = subprocess.run(
            [*foreground, *UNATTENDED], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert called.returncode == 0, called.stdout[-2000:] + called.stderr[-2000:]
        assert far.wait(timeout=30) == 0
    finally:
        if far.poll() is None:
            far.kill()
            far.wait()


def demo_phone_password(asterisk: AsteriskSandbox, db_url: str) -> str:
    """The demo's SIP account, created like `callcontrol sip-account create` does."""
    account = asyncio.run(demo_account_id(Settings(database=DatabaseSettings(url=db_url))))

    async def create_or_reset(svc: ProvisioningService) -> str:
        try:
            return (await svc.create_sip_account(account, "demo-phone"))[1]
        except LoginTaken:
            return (await svc.reset_password("demo-phone"))[1]

    return provisioned(asterisk, db_url, create_or_reset)


def test_the_demo_call_printed_by_the_demo_works_as_given(
    engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    seed(engine)
    far_end, caller = printed_sipp_commands()[:2]  # the forwarded call
    assert far_end[2].endswith("far_answer.xml") and caller[2].endswith("caller_answered.xml")
    far = subprocess.Popen(
        [*far_end, *UNATTENDED], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        called = subprocess.run(
            [*caller, *UNATTENDED], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert called.returncode == 0, called.stdout[-2000:] + called.stderr[-2000:]
        assert far.wait(timeout=30) == 0
    finally:
        if far.poll() is None:
            far.kill()
            far.wait()
    cdr = data.wait_for_cdr(DEMO_DID)
    assert cdr["disposition"] == "answered"
    assert cdr["answered_destination"] == "1:sip_uri:sip:demo@127.0.0.3:5080"


def test_the_demo_phone_registers_and_calls_out_as_printed(
    engine: EngineProcess, asterisk: AsteriskSandbox, db_url: str, data: Seeder
) -> None:
    seed(engine)
    password = demo_phone_password(asterisk, db_url)
    commands = printed_sipp_commands(password)
    register, carrier, phone = commands[4], commands[5], commands[6]
    assert register[2].endswith("phone_register.xml") and phone[2].endswith("phone_call.xml")
    registered = subprocess.run(
        [*register, *UNATTENDED], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert registered.returncode == 0, registered.stdout[-2000:] + registered.stderr[-2000:]
    run_pair(carrier, phone)


def test_the_demo_voicemail_as_printed_is_mailed_with_the_recording(
    engine: EngineProcess, data: Seeder, smtp: SmtpSink
) -> None:
    seed(engine)
    busy, caller = printed_sipp_commands()[2:4]
    assert busy[2].endswith("far_busy.xml")
    before = len(data.cdrs_for(DEMO_DID))
    run_pair(busy, caller)
    deadline = time.monotonic() + 15
    while len(data.cdrs_for(DEMO_DID)) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert data.cdrs_for(DEMO_DID)[before:][0]["disposition"] == "voicemail"
    mail = smtp.wait_for("demo@example.invalid")
    assert any(part.get_content_type().startswith("audio/") for part in mail.iter_attachments())
