"""Customer mails of the number life cycle and of billing.

Mail is queued during a transaction (``Outbox``) and delivered only after the
commit (``deliver``): a transaction that rolls back sends nothing, and a mail
server that is down never rolls back an activation -- the failure is logged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from enum import StrEnum

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Account, Number
from callcontrol.domain.billing import next_charge_date
from callcontrol.domain.money import format_minor
from callcontrol.notify.mailer import Mailer

log = structlog.get_logger(__name__)


class NumberMailKind(StrEnum):
    ACTIVATION = "activation"
    DISCONNECTION = "disconnection"


@dataclass(frozen=True, slots=True)
class NumberMail:
    kind: NumberMailKind
    account_id: int
    number_id: int


class Outbox:
    """Mails decided inside a transaction, to deliver once it committed."""

    def __init__(self) -> None:
        self._mails: list[NumberMail] = []

    def add(self, mail: NumberMail) -> None:
        self._mails.append(mail)

    def __iter__(self) -> Iterator[NumberMail]:
        return iter(self._mails)

    def __len__(self) -> int:
        return len(self._mails)


async def deliver(
    outbox: Outbox, *, sessions: async_sessionmaker[AsyncSession], mailer: Mailer
) -> int:
    """Send the queued mails; return how many were handed to the mail server."""
    sent = 0
    for mail in outbox:
        async with sessions() as session:
            message = await _number_mail(session, mail)
        if message is None:
            continue
        if await send_logged(mailer, message, mail=mail.kind, number_id=mail.number_id):
            sent += 1
    return sent


async def send_logged(mailer: Mailer, message: EmailMessage, **context: object) -> bool:
    """Send one message; a failure is logged, never raised (the data is committed)."""
    try:
        await mailer.send(message)
    except Exception as exc:  # any mailer failure: SMTP, DNS, a fake's error
        log.warning("mail_failed", error=str(exc)[:300], **context)
        return False
    return True


async def _number_mail(session: AsyncSession, mail: NumberMail) -> EmailMessage | None:
    row = (
        await session.execute(
            sa.select(Account.email, Number)
            .join(Number, Number.id == mail.number_id)
            .where(Account.id == mail.account_id)
        )
    ).first()
    email, number = row if row is not None else (None, None)
    if not email or number is None:
        log.info("mail_skipped_no_address", mail=mail.kind, account_id=mail.account_id)
        return None
    if mail.kind is NumberMailKind.ACTIVATION:
        return activation_mail(email, number)
    return disconnection_mail(email, number.e164)


def activation_mail(to: str, number: Number) -> EmailMessage:
    fee = format_minor(number.monthly_fee_minor, number.currency)
    lines = [f"Your number {number.e164} is active and takes calls now.", ""]
    if number.activated_on is not None and number.monthly_fee_minor > 0:
        following = next_charge_date(number.activated_on, number.activated_on)
        lines += [
            f"The monthly fee of {fee} was charged today ({number.activated_on.isoformat()})",
            f"and falls due next on {following.isoformat()}, then on the same day each month.",
        ]
    return _message(to, f"Your number {number.e164} is active", lines)


def disconnection_mail(to: str, e164: str) -> EmailMessage:
    lines = [
        f"Your number {e164} has been disconnected and no longer takes calls.",
        "If nobody takes it meanwhile, it can be given back to you (the setup fee applies).",
    ]
    return _message(to, f"Your number {e164} was disconnected", lines)


def reminder_mail(
    to: str, *, due_on: date, balance_minor: int, fees_minor: int, currency: str,
    numbers: Sequence[str],
) -> EmailMessage:  # fmt: skip
    lines = [
        f"On {due_on.isoformat()} the monthly fees of {format_minor(fees_minor, currency)} "
        f"fall due for: {', '.join(numbers)}.",
        f"Your balance is {format_minor(balance_minor, currency)} and will not cover them.",
        "Please top up: a number whose fee leaves the balance negative stops taking calls,",
        "and a number left unpaid is disconnected.",
    ]
    return _message(to, "Please top up your balance", lines)


def _message(to: str, subject: str, lines: Sequence[str]) -> EmailMessage:
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = subject
    message.set_content("\n".join(lines) + "\n")
    return message
