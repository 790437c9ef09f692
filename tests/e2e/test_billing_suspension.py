"""Money decides calls: a monthly fee that pushes the balance below zero
suspends the number, so callers get 403; a top-up reactivates it at once and
the next call is forwarded. Billing runs in the test process on the database
the engine reads.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.data import Seeder
from support.engine import EngineProcess
from support.sipp import Sipp
from support.smtp import SmtpSink

from callcontrol.db.engine import create_engine, session_factory
from callcontrol.domain.vocabulary import DestinationType
from callcontrol.notify.mailer import SmtpMailer
from callcontrol.services.billing_run import run_billing
from callcontrol.services.numbers import NumberService
from callcontrol.settings import BillingSettings, DatabaseSettings, SmtpSettings

pytestmark = pytest.mark.e2e

CARRIER, FAR_A = "127.0.0.2", "127.0.0.3"


def call_expecting(workdir: Path, did: str, code: int) -> None:
    result = Sipp(
        "caller_expect_code.xml",
        CARRIER,
        5070,
        workdir,
        remote="127.0.0.1:5060",
        service=did,
        keys={"caller": "4915112345678"},
        variables={"expected": str(code)},
        timeout_s=15,
    ).run()
    assert result.ok, result.describe()


def test_a_fee_that_makes_the_balance_negative_suspends_and_a_top_up_restores_calls(
    engine: EngineProcess, db_url: str, data: Seeder, smtp: SmtpSink, workdir: Path
) -> None:
    account = data.account(balance_minor=100)  # the fee is 500
    today = datetime.now(UTC).date()
    did = data.number(
        account,
        activated_on=today - timedelta(days=40),  # a charge day has passed since
        destinations=[(DestinationType.SIP_URI, f"sip:alice@{FAR_A}:5080", 10)],
    )
    mailer = SmtpMailer(SmtpSettings(port=smtp.port))

    async def bill() -> None:
        engine_ = create_engine(DatabaseSettings(url=db_url), pooled=False)
        try:
            await run_billing(
                session_factory(engine_), today=today, settings=BillingSettings(), mailer=mailer
            )
        finally:
            await engine_.dispose()

    asyncio.run(bill())
    assert data.balance(account) < 0
    call_expecting(workdir / "suspended", did, 403)

    async def top_up() -> None:
        engine_ = create_engine(DatabaseSettings(url=db_url), pooled=False)
        try:
            service = NumberService(sessions=session_factory(engine_), mailer=mailer)
            result = await service.top_up(account, 2000, f"e2e-top-up-{did}")
            assert result.reactivated, result
        finally:
            await engine_.dispose()

    asyncio.run(top_up())
    (workdir / "active").mkdir()
    far = Sipp("far_answer.xml", FAR_A, 5080, workdir / "active", variables={"answer_ms": "100"})
    far.start().wait_ready()
    answered = Sipp(
        "caller_answered.xml",
        CARRIER,
        5070,
        workdir / "active",
        remote="127.0.0.1:5060",
        service=did,
        keys={"caller": "4915112345678"},
        duration_ms=500,
    ).run()
    assert answered.ok, answered.describe()
    assert far.wait(15).ok
