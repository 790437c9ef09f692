"""``callcontrol billing run [--date YYYY-MM-DD]``: the daily billing, by hand or cron.

``add_cli`` registers the sub-command; the leaf sets ``handler``
(``Callable[[argparse.Namespace], int]``). The run is idempotent: running it
again, or after a crash, charges nothing twice.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from callcontrol.settings import Settings, SettingsError, load_settings

CONNECT_TIMEOUT_S = 15.0

if TYPE_CHECKING:
    from callcontrol.services.billing_run import BillingReport


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    billing = subparsers.add_parser("billing", help="monthly fees, suspension, reminders")
    verbs = billing.add_subparsers(dest="billing_command", required=True, metavar="ACTION")
    run = verbs.add_parser("run", help="run the daily billing now (safe to repeat)")
    run.add_argument(
        "--date",
        type=_iso_date,
        default=None,
        help="the billing day, YYYY-MM-DD (default: today in UTC); catches up missed days",
    )
    run.set_defaults(handler=_billing_run)
    reminders = subparsers.add_parser("reminders", help="low-balance reminders by phone")
    actions = reminders.add_subparsers(dest="reminders_command", required=True, metavar="ACTION")
    actions.add_parser(
        "call", help="place the due reminder calls now and wait for them (needs Asterisk)"
    ).set_defaults(handler=_reminders_call)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _billing_run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"billing: {exc}", file=sys.stderr)
        return 2
    today: date = args.date if args.date is not None else datetime.now(UTC).date()
    report = asyncio.run(_run_once(settings, today))
    print(f"billing run for {today.isoformat()}")
    for line in report.lines():
        print(f"  {line}")
    return 0


async def _run_once(settings: Settings, today: date) -> BillingReport:
    from callcontrol.db.engine import create_engine, session_factory
    from callcontrol.notify.mailer import Mailer, SmtpMailer
    from callcontrol.notify.retrying_mailer import SpoolingMailer
    from callcontrol.repositories.spool import Spool, SpoolMismatch, spool_target
    from callcontrol.services.billing_run import run_billing
    from callcontrol.services.phone_reminders import PhoneReminderQueue

    # Mails the server refuses go to the spool of `callcontrol serve`, which sends them.
    spool = Spool(settings.spool.path, target=spool_target(settings.database.url))
    mailer: Mailer = SpoolingMailer(SmtpMailer(settings.smtp), spool=spool)
    try:
        await spool.open()
    except SpoolMismatch as exc:
        print(f"billing: {exc}; mails that fail are not retried", file=sys.stderr)
        mailer = SmtpMailer(settings.smtp)
    engine = create_engine(settings.database, pooled=False)
    sessions = session_factory(engine)
    try:
        return await run_billing(
            sessions,
            today=today,
            settings=settings.billing,
            mailer=mailer,
            phone=PhoneReminderQueue(sessions=sessions)
            if settings.phone_reminders.enabled
            else None,
        )
    finally:
        await engine.dispose()
        await spool.close()


def _reminders_call(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"reminders: {exc}", file=sys.stderr)
        return 2
    if not settings.phone_reminders.enabled:
        print("reminders: phone reminders are off (CALLCONTROL_PHONE_REMINDERS__ENABLED)",
              file=sys.stderr)  # fmt: skip
        return 2
    placed = asyncio.run(_call_once(settings))
    print(f"reminder calls placed: {placed}")
    return 0


async def _call_once(settings: Settings) -> int:
    import aiohttp

    from callcontrol.app import reminder_worker
    from callcontrol.db.engine import create_engine, session_factory

    engine = create_engine(settings.database, pooled=False)
    try:
        async with (
            aiohttp.ClientSession() as http,
            reminder_worker(settings, session_factory(engine), http) as runtime,
        ):
            try:
                await asyncio.wait_for(runtime.connected.wait(), CONNECT_TIMEOUT_S)
            except TimeoutError:
                other = runtime.lease.other
                if other is not None:  # a running `callcontrol serve` calls them already
                    raise SystemExit(
                        f"reminders: the reminder app is held by another engine ({other})"
                    ) from None
                raise SystemExit(f"reminders: no ARI connection to {settings.ari.url}") from None
            return await runtime.worker.run_due()
    finally:
        await engine.dispose()
