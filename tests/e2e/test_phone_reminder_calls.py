"""Low-balance reminder by phone, through real Asterisk to a SIPp PSTN carrier.

``callcontrol billing run`` mails the reminder and queues the phone notice;
``callcontrol reminders call`` places it: Asterisk originates through the PSTN
trunk (127.0.0.5) with the provider's number as CallerID and plays the
operator's prompt - a 1 kHz tone here, found in the RTP the carrier receives -
then the number, amount and date. A second run calls nobody.
"""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import wave
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.asterisk import AsteriskSandbox
from support.data import Seeder
from support.engine import engine_env, free_port
from support.rtp import RtpSink
from support.sipp import Sipp
from support.smtp import SmtpSink

from callcontrol.db.money_models import AccountContact, PhoneReminderAttempt, ReminderPrompt
from callcontrol.domain.vocabulary import LedgerKind

pytestmark = pytest.mark.e2e

PSTN_CARRIER = "127.0.0.5"
PROVIDER_NUMBER = "+4930999000"
CONTACT = "+4915199887766"


def tone_wav(path: Path, seconds: float, hz: float = 1000.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * n / 8000)))
        for n in range(int(8000 * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)


def fee_day_soon(today: date) -> date:
    """An activation day last month whose charge day falls in the next 1-3 days."""
    for offset in (1, 2, 3):
        charge = today + timedelta(days=offset)
        if charge.day <= 28:
            month = charge.month - 1 or 12
            year = charge.year - (charge.month == 1)
            return date(year, month, charge.day)
    raise AssertionError("no charge day in the window")


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_due_reminder_calls_the_contact_phone_once_with_the_prompt(
    asterisk: AsteriskSandbox, db_url: str, data: Seeder, smtp: SmtpSink, workdir: Path
) -> None:
    today = datetime.now(UTC).date()
    email = f"reminded-{free_port()}@example.invalid"
    account = data.account(balance_minor=100, email=email)  # the 5.00 fee is not covered
    did = data.number(account, activated_on=fee_day_soon(today))
    stored = f"prompts/reminder-e2e-{account}.wav"
    tone_wav(asterisk.media_dir / stored, seconds=1.5)

    async def seed(session: sa.ext.asyncio.AsyncSession) -> None:
        session.add(AccountContact(account_id=account, phone=CONTACT,
                                   updated_at=datetime.now(UTC)))  # fmt: skip
        session.add(ReminderPrompt(original_name="notice.wav", stored_name=stored,
                                   size_bytes=24044, duration_ms=1500,
                                   created_at=datetime.now(UTC)))  # fmt: skip

    data._run(seed)
    env = engine_env(asterisk, db_url, spool=workdir / "spool.db", smtp_port=smtp.port)
    env |= {
        "CALLCONTROL_PHONE_REMINDERS__ENABLED": "true",
        "CALLCONTROL_PHONE_REMINDERS__CALLER_ID": PROVIDER_NUMBER,
        # Any hour, so the test does not depend on the time of day (the night rule
        # has its own tests); a short ring so a missed call fails fast.
        "CALLCONTROL_PHONE_REMINDERS__CALL_FROM_HOUR": "0",
        "CALLCONTROL_PHONE_REMINDERS__CALL_UNTIL_HOUR": "24",
        "CALLCONTROL_PHONE_REMINDERS__RING_TIMEOUT_S": "10",
    }
    cli(env, "billing", "run", "--date", today.isoformat())
    mail = smtp.wait_for(email)
    assert did in mail.as_string()

    rtp_port = free_port()
    for folder in ("first", "second"):
        (workdir / folder).mkdir()
    with RtpSink(PSTN_CARRIER, rtp_port) as rtp:
        carrier = Sipp("far_answer_rtp_to.xml", PSTN_CARRIER, 5060, workdir / "first",
                       variables={"answer_ms": "100", "rtp_port": str(rtp_port)},
                       timeout_s=60).start()  # fmt: skip
        carrier.wait_ready()
        out = cli(env, "reminders", "call")
        heard = carrier.wait(20)
    assert "reminder calls placed: 1" in out, out
    assert heard.ok, heard.describe()
    invite = heard.received("INVITE")[0]
    assert CONTACT.lstrip("+") in invite.first_line
    assert PROVIDER_NUMBER in (invite.header("From") or ""), invite.header("From")
    assert rtp.seconds_of_tone(1000.0) >= 1.0, f"{rtp.packets} RTP packets, no prompt tone"

    async def attempts(session: sa.ext.asyncio.AsyncSession) -> list[tuple[int, str | None]]:
        rows = await session.execute(
            sa.select(PhoneReminderAttempt.attempt, PhoneReminderAttempt.outcome)
            .where(PhoneReminderAttempt.phone == CONTACT)
        )  # fmt: skip
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]

    assert data._run(attempts) == [(1, "answered")]
    # The notice call is not charged: no call charge, the balance is what it was.
    assert all(e[0] is not LedgerKind.CALL_CHARGE for e in data.ledger_entries(account))
    assert data.balance(account) == 100

    # A second run: no second mail, no second call for the same fee.
    listener = Sipp("far_answer_rtp_to.xml", PSTN_CARRIER, 5060, workdir / "second",
                    variables={"answer_ms": "100", "rtp_port": str(rtp_port)},
                    timeout_s=30).start()  # fmt: skip
    listener.wait_ready()
    cli(env, "billing", "run", "--date", today.isoformat())
    again = cli(env, "reminders", "call")
    silent = listener.stop()
    assert "reminder calls placed: 0" in again, again
    assert silent.received("INVITE") == [], "a second call for the same fee"
    assert data._run(attempts) == [(1, "answered")]
    assert sum(1 for m in smtp.messages if m["To"] == email) == 1
