"""The daily billing run against the real database: charged once per period, whatever happens."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import Account, LedgerEntry, Number
from callcontrol.domain.vocabulary import LedgerKind, NumberKind, NumberState
from callcontrol.services.billing_run import BillingReport, LowBalanceNotice, run_billing
from callcontrol.services.numbers import NumberService
from callcontrol.services.tables import BillingRun
from callcontrol.settings import BillingSettings

Sessions = async_sessionmaker[AsyncSession]
S = NumberState
SETTINGS = BillingSettings(grace_days=5, reminder_days=3)
REPO = Path(__file__).resolve().parents[2]


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.fail = False

    async def send(self, message: EmailMessage) -> None:
        if self.fail:
            raise OSError("mail server down")
        self.sent.append(message)


class FakePhone:
    def __init__(self) -> None:
        self.notices: list[LowBalanceNotice] = []

    async def notify_low_balance(self, notice: LowBalanceNotice) -> None:
        self.notices.append(notice)


@pytest.fixture
def mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
def phone() -> FakePhone:
    return FakePhone()


@pytest.fixture
def run(
    db_session: Sessions, mailer: FakeMailer, phone: FakePhone
) -> Callable[[date], Awaitable[BillingReport]]:
    async def run_on(day: date) -> BillingReport:
        now = datetime.combine(day, time(3), UTC)
        return await run_billing(
            db_session, today=day, settings=SETTINGS, mailer=mailer, phone=phone, now=now
        )

    return run_on


Run = Callable[[date], Awaitable[BillingReport]]


def service_at(sessions: Sessions, mailer: FakeMailer, day: date, hour: int = 12) -> NumberService:
    moment = datetime.combine(day, time(hour), UTC)
    return NumberService(sessions=sessions, mailer=mailer, clock=lambda: moment)


async def make_account(sessions: Sessions, balance: int) -> int:
    async with sessions() as session, session.begin():
        account = Account(name="Acme", email="owner@acme.example", currency="EUR")
        session.add(account)
        await session.flush()
        if balance:
            await ledger.post(
                session, account_id=account.id, kind=LedgerKind.ADJUSTMENT,
                amount_minor=balance, currency="EUR",
            )  # fmt: skip
        return account.id


_serial = iter(range(1000, 10_000))


async def rented(sessions: Sessions, account: int, activated_on: date, fee: int = 5_00) -> int:
    """A number active since ``activated_on`` (its first month taken as paid)."""
    async with sessions() as session, session.begin():
        number = Number(
            e164=f"+4940{next(_serial)}", country_code=49, region="DE", city="Hamburg",
            kind=NumberKind.VOICE, state=S.ACTIVE, account_id=account,
            activated_on=activated_on, monthly_fee_minor=fee, setup_fee_minor=0,
            currency="EUR",
            state_changed_at=datetime.combine(activated_on, time(), UTC),
        )  # fmt: skip
        session.add(number)
        await session.flush()
        return number.id


async def in_the_pool(sessions: Sessions) -> int:
    async with sessions() as session, session.begin():
        number = Number(
            e164=f"+4940{next(_serial)}", country_code=49, region="DE", kind=NumberKind.VOICE,
            monthly_fee_minor=5_00, setup_fee_minor=0, currency="EUR",
        )  # fmt: skip
        session.add(number)
        await session.flush()
        return number.id


async def monthly_keys(sessions: Sessions, number_id: int) -> list[str | None]:
    async with sessions() as session:
        rows = await session.scalars(
            sa.select(LedgerEntry.idempotency_key)
            .where(LedgerEntry.number_id == number_id, LedgerEntry.kind == LedgerKind.MONTHLY_FEE)
            .order_by(LedgerEntry.period_start)
        )
        return list(rows.all())


async def number_of(sessions: Sessions, number_id: int) -> Number:
    async with sessions() as session:
        number = await session.get(Number, number_id)
        assert number is not None
        return number


# -- charge days ------------------------------------------------------------------------------


async def test_a_number_activated_on_the_31st_is_charged_on_the_last_day_of_february(
    db_session: Sessions, mailer: FakeMailer, run: Run
) -> None:
    account = await make_account(db_session, 100_00)
    number_id = await in_the_pool(db_session)
    on_the_31st = service_at(db_session, mailer, date(2024, 1, 31))
    await on_the_31st.buy(number_id, account)
    await on_the_31st.activate(number_id)

    assert (await run(date(2024, 2, 28))).charges_posted == 0
    assert (await run(date(2024, 2, 29))).charges_posted == 1
    assert (await run(date(2024, 3, 30))).charges_posted == 0
    assert (await run(date(2024, 3, 31))).charges_posted == 1

    assert await monthly_keys(db_session, number_id) == [
        f"monthly:{number_id}:2024-01-31",
        f"monthly:{number_id}:2024-02-29",
        f"monthly:{number_id}:2024-03-31",
    ]


async def test_days_the_run_missed_are_charged_period_by_period(
    db_session: Sessions, run: Run
) -> None:
    account = await make_account(db_session, 100_00)
    number_id = await rented(db_session, account, date(2024, 1, 10))
    await run(date(2024, 1, 15))

    report = await run(date(2024, 4, 12))

    assert report.charges_posted == 3
    assert await monthly_keys(db_session, number_id) == [
        f"monthly:{number_id}:2024-02-10",
        f"monthly:{number_id}:2024-03-10",
        f"monthly:{number_id}:2024-04-10",
    ]


# -- idempotence and crashes ------------------------------------------------------------------


async def test_running_twice_on_one_day_charges_once(db_session: Sessions, run: Run) -> None:
    account = await make_account(db_session, 100_00)
    number_id = await rented(db_session, account, date(2024, 1, 10))

    first = await run(date(2024, 2, 10))
    second = await run(date(2024, 2, 10))

    assert (first.charges_posted, second.charges_posted) == (1, 0)
    assert second.charges_already_posted == 1
    assert await monthly_keys(db_session, number_id) == [f"monthly:{number_id}:2024-02-10"]


async def test_a_run_that_crashed_half_way_and_ran_again_charges_every_number_once(
    db_session: Sessions, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await make_account(db_session, 100_00)
    numbers = [await rented(db_session, account, date(2024, 1, 10)) for _ in range(5)]
    real_post, posts = ledger.post, []

    async def crash_on_the_third(*args: Any, **kwargs: Any) -> ledger.LedgerPostResult:
        result = await real_post(*args, **kwargs)
        posts.append(result)
        if len(posts) == 3:
            raise RuntimeError("killed half-way")  # after the post, before the commit
        return result

    monkeypatch.setattr(ledger, "post", crash_on_the_third)
    with pytest.raises(RuntimeError, match="killed half-way"):
        await run(date(2024, 2, 10))
    monkeypatch.setattr(ledger, "post", real_post)

    rerun = await run(date(2024, 2, 10))

    assert (rerun.charges_posted, rerun.charges_already_posted) == (3, 2)
    for number_id in numbers:
        assert await monthly_keys(db_session, number_id) == [f"monthly:{number_id}:2024-02-10"]
    async with db_session() as session:
        assert await ledger.balance_from_ledger(session, account) == 75_00
        runs = (await session.scalars(sa.select(BillingRun).order_by(BillingRun.id))).all()
    assert [r.finished_at is not None for r in runs] == [False, True]


_DYING_RUN = textwrap.dedent(
    """
    import argparse, os, signal, sys
    from callcontrol.db import ledger
    from callcontrol.services.cli import add_cli

    real_post, posts = ledger.post, []

    async def post_then_die(*args, **kwargs):
        result = await real_post(*args, **kwargs)
        posts.append(result)
        if len(posts) == int(os.environ["DIE_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)  # inside the charge's transaction
        return result

    ledger.post = post_then_die
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["billing", "run", "--date", sys.argv[1]])
    sys.exit(args.handler(args))
    """
)


def billing_cli(
    url: str, day: str, spool: Path, die_after: int = 0
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLCONTROL_DATABASE__URL": url, "DIE_AFTER": str(die_after)}
    env["CALLCONTROL_SPOOL__PATH"] = str(spool)  # mails that fail are journaled here
    env.pop("CALLCONTROL_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-c", _DYING_RUN, day], env=env, cwd=REPO, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


async def test_a_billing_cli_killed_with_sigkill_and_run_again_charges_every_number_once(
    db_session: Sessions, fresh_db_url: str, tmp_path: Path
) -> None:
    account = await make_account(db_session, 100_00)
    numbers = [await rented(db_session, account, date(2024, 1, 10)) for _ in range(4)]

    spool = tmp_path / "spool.db"
    killed = billing_cli(fresh_db_url, "2024-02-10", spool, die_after=3)
    assert killed.returncode == -9, killed.stderr
    rerun = billing_cli(fresh_db_url, "2024-02-10", spool)

    assert rerun.returncode == 0, rerun.stderr
    assert "billing run for 2024-02-10" in rerun.stdout
    assert "charges_posted: 2" in rerun.stdout  # two were committed before the kill
    for number_id in numbers:
        assert await monthly_keys(db_session, number_id) == [f"monthly:{number_id}:2024-02-10"]


def test_the_cli_refuses_a_date_that_is_not_a_date() -> None:
    from callcontrol.services.cli import add_cli

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["billing", "run", "--date", "2024-02-30"])


# -- suspension, reactivation, disconnection --------------------------------------------------


async def test_a_fee_that_pushes_the_balance_negative_suspends_the_number(
    db_session: Sessions, run: Run
) -> None:
    account = await make_account(db_session, 3_00)
    number_id = await rented(db_session, account, date(2024, 1, 10))

    report = await run(date(2024, 2, 10))

    assert (report.charges_posted, report.suspended) == (1, 1)
    assert (await number_of(db_session, number_id)).state is S.SUSPENDED


async def test_a_top_up_reactivates_at_once_and_the_charge_day_stays_the_activation_day(
    db_session: Sessions, mailer: FakeMailer, run: Run
) -> None:
    account = await make_account(db_session, 3_00)
    number_id = await rented(db_session, account, date(2024, 1, 10))
    await run(date(2024, 2, 10))

    await service_at(db_session, mailer, date(2024, 2, 20)).top_up(account, 10_00, "pay:1")

    assert (await number_of(db_session, number_id)).state is S.ACTIVE
    await run(date(2024, 3, 10))
    assert await monthly_keys(db_session, number_id) == [
        f"monthly:{number_id}:2024-02-10", f"monthly:{number_id}:2024-03-10"
    ]  # fmt: skip


async def test_call_charges_posted_elsewhere_are_reconciled_by_the_run(
    db_session: Sessions, run: Run
) -> None:
    account = await make_account(db_session, 3_00)
    number_id = await rented(db_session, account, date(2024, 1, 10))
    async with db_session() as session, session.begin():
        await ledger.post(
            session, account_id=account, kind=LedgerKind.CALL_CHARGE, amount_minor=-4_00,
            currency="EUR",
        )  # fmt: skip

    report = await run(date(2024, 1, 20))

    assert report.suspended == 1
    assert (await number_of(db_session, number_id)).state is S.SUSPENDED


async def test_a_number_unpaid_for_the_grace_days_is_disconnected_then_returned_to_the_pool(
    db_session: Sessions, mailer: FakeMailer, run: Run
) -> None:
    account = await make_account(db_session, 3_00)
    number_id = await rented(db_session, account, date(2024, 1, 10))
    await run(date(2024, 2, 10))  # suspended on Feb 10; grace: 5 days

    assert (await run(date(2024, 2, 14))).disconnected == 0
    assert (await run(date(2024, 2, 15))).disconnected == 1
    number = await number_of(db_session, number_id)
    assert (number.state, number.account_id) == (S.DISCONNECTED, None)
    assert any("disconnected" in m["Subject"] for m in mailer.sent)

    assert (await run(date(2024, 2, 16))).returned_to_pool == 1
    number = await number_of(db_session, number_id)
    assert (number.state, number.previous_account_id) == (S.AVAILABLE, account)
    assert (await run(date(2024, 3, 10))).charges_posted == 0


# -- deletion ---------------------------------------------------------------------------------


async def test_a_number_deleted_the_day_before_its_charge_day_is_not_charged(
    db_session: Sessions, mailer: FakeMailer, run: Run
) -> None:
    account = await make_account(db_session, 100_00)
    number_id = await rented(db_session, account, date(2024, 1, 10))
    await run(date(2024, 2, 8))

    await service_at(db_session, mailer, date(2024, 2, 9)).delete(number_id, account)
    await run(date(2024, 2, 10))

    assert await monthly_keys(db_session, number_id) == []


async def test_a_number_deleted_on_its_charge_day_pays_that_month_once(
    db_session: Sessions, mailer: FakeMailer, run: Run
) -> None:
    account = await make_account(db_session, 100_00)
    number_id = await rented(db_session, account, date(2024, 1, 10))
    await run(date(2024, 2, 9))

    await service_at(db_session, mailer, date(2024, 2, 10), hour=1).delete(number_id, account)
    await run(date(2024, 2, 10))

    assert await monthly_keys(db_session, number_id) == [f"monthly:{number_id}:2024-02-10"]


# -- reminders --------------------------------------------------------------------------------


async def test_a_low_balance_is_reminded_once_per_charge_date_by_mail_and_phone(
    db_session: Sessions, mailer: FakeMailer, phone: FakePhone, run: Run
) -> None:
    account = await make_account(db_session, 3_00)
    await rented(db_session, account, date(2024, 1, 10))

    assert (await run(date(2024, 2, 6))).reminders_sent == 0  # 4 days ahead: not yet
    assert (await run(date(2024, 2, 7))).reminders_sent == 1
    assert (await run(date(2024, 2, 8))).reminders_sent == 0

    [mail] = mailer.sent
    assert "2024-02-10" in mail.get_content() and mail["To"] == "owner@acme.example"
    assert [(n.account_id, n.due_on, n.fees_minor) for n in phone.notices] == [
        (account, date(2024, 2, 10), 5_00)
    ]


async def test_a_balance_that_covers_the_fee_gets_no_reminder(
    db_session: Sessions, run: Run
) -> None:
    account = await make_account(db_session, 5_00)
    await rented(db_session, account, date(2024, 1, 10))

    assert (await run(date(2024, 2, 8))).reminders_sent == 0


async def test_a_reminder_whose_mail_failed_is_sent_by_the_next_run(
    db_session: Sessions, mailer: FakeMailer, run: Run
) -> None:
    account = await make_account(db_session, 3_00)
    await rented(db_session, account, date(2024, 1, 10))

    mailer.fail = True
    assert (await run(date(2024, 2, 7))).reminders_sent == 0
    mailer.fail = False
    assert (await run(date(2024, 2, 8))).reminders_sent == 1
    assert (await run(date(2024, 2, 9))).reminders_sent == 0


# -- expiries ---------------------------------------------------------------------------------


async def test_the_run_expires_finished_tests(db_session: Sessions, run: Run) -> None:
    async with db_session() as session, session.begin():
        session.add(
            Number(
                e164="+4940999111", country_code=49, region="DE", kind=NumberKind.VOICE,
                state=S.TESTING, monthly_fee_minor=5_00, setup_fee_minor=0, currency="EUR",
                test_expires_at=datetime(2024, 2, 1, 2, 0, tzinfo=UTC),
            )
        )  # fmt: skip

    assert (await run(date(2024, 2, 1))).tests_expired == 1


# -- the scheduler ----------------------------------------------------------------------------


async def test_the_scheduler_runs_the_daily_billing_once_after_its_hour(
    db_session: Sessions, mailer: FakeMailer
) -> None:
    from callcontrol.services.scheduler import BillingScheduler

    account = await make_account(db_session, 100_00)
    number_id = await rented(db_session, account, date(2024, 1, 10))
    moments = iter(
        datetime(2024, 2, 10, hour, minute, tzinfo=UTC)
        for hour, minute in ((2, 59), (3, 0), (3, 1))
    )
    scheduler = BillingScheduler(
        sessions=db_session, settings=SETTINGS, mailer=mailer, clock=lambda: next(moments)
    )

    await scheduler.tick()
    assert await monthly_keys(db_session, number_id) == []
    await scheduler.tick()
    await scheduler.tick()

    assert await monthly_keys(db_session, number_id) == [f"monthly:{number_id}:2024-02-10"]
    async with db_session() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(BillingRun)) == 1


async def test_the_scheduler_task_stops_when_cancelled(
    db_session: Sessions, mailer: FakeMailer
) -> None:
    from callcontrol.services.scheduler import BillingScheduler

    scheduler = BillingScheduler(sessions=db_session, settings=SETTINGS, mailer=mailer)
    async with scheduler.running() as task:
        assert not task.done()

    assert task.cancelled()
