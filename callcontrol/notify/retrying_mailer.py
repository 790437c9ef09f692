"""A ``Mailer`` that never loses a mail: what the mail server does not take now
is journaled in the spool and sent later, with back-off, once.

Every mail of the service goes through it (voicemail, number activation and
disconnection, billing reminders: the composition root hands this one mailer
to all of them). The rules it keeps:

- A mail is identified by its ``Message-ID`` (set here if the sender did not
  set one; the voicemail box derives it from the call id, so a replayed
  voicemail names the same mail). A Message-ID already sent (remembered by
  the spool for a week) or already queued is not sent again.
- ``send`` tries the server at once unless older mails are queued (they go
  first); on any failure the mail is journaled (fsynced) and ``send``
  returns: to its caller the mail is handed over, as to a local MTA.
- The replayer sends the queue oldest first, removing an entry (and
  remembering its Message-ID) only after the server accepted it. SMTP itself
  has no idempotency: a crash between the server's "250" and that removal
  sends the mail again, with the same Message-ID (which mail clients use to
  drop duplicates). A 5xx refusal counts towards the entry's dead mark.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import make_msgid

import structlog

from callcontrol.notify.mailer import Mailer
from callcontrol.repositories.spool import MAIL_QUEUE, Spool, SpoolEntry, SpoolKind
from callcontrol.repositories.spooling import NotTried, Replay

log = structlog.get_logger(__name__)

MSGID_DOMAIN = "callcontrol.invalid"


def mail_key(message: EmailMessage) -> str:
    """The spool key of ``message``, giving it a Message-ID if it has none."""
    if "Message-ID" not in message:
        message["Message-ID"] = make_msgid(domain=MSGID_DOMAIN)
    return f"mail:{message['Message-ID']}"


class SpoolingMailer:
    def __init__(self, mailer: Mailer, *, spool: Spool) -> None:
        self._mailer = mailer
        self._spool = spool

    @property
    def inner(self) -> Mailer:
        """The real mailer (the replayer sends through it)."""
        return self._mailer

    async def send(self, message: EmailMessage) -> None:
        key = mail_key(message)
        if await self._spool.is_done(key) or await self._spool.holds(key):
            log.info("mail_already_handled", key=key)
            return
        if not self._spool.pending(MAIL_QUEUE):
            try:
                await self._mailer.send(message)
            except Exception as exc:  # any failure: SMTP, DNS, refused, timeout
                reason = f"{type(exc).__name__}: {exc}"
            else:
                await self._spool.mark_done(key)
                return
        else:
            reason = "older mails are queued"
        await self._spool.append(SpoolKind.MAIL, key, message.as_bytes())
        log.warning("mail_spooled", key=key, to=str(message["To"]), reason=reason[:300])


def replay_mails(mailer: Mailer) -> Replay:
    """Sends queued mails through the real mailer one by one, oldest first, until one fails."""

    async def replay(entries: Sequence[SpoolEntry]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for entry in entries:
            if results and results[-1] is not None:
                results.append(NotTried())
                continue
            try:
                await mailer.send(parse_mail(entry.payload))
            except Exception as exc:  # reported per entry
                results.append(exc)
            else:
                results.append(None)
        return results

    return replay


def parse_mail(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message
