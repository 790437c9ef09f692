"""Keeps a voicemail message: the WAV under the media folder, a database row,
and a mail with the WAV attached to the number's owner.

Implements ``engine.ports.VoicemailBox``. The file and the row are written
before the mail is tried, so a mail server that is down loses nothing: the
row keeps ``mail_error`` (with the spooling mailer the mail is queued and
retried instead) and the message stays downloadable.

Delivering the same call's message again (a replay from the spool after a
crash) is idempotent: the file name is derived from the call id, the row is
looked up by its CDR before one is added, a row already mailed is not mailed
again, and the mail's Message-ID is derived from the call id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Account, VoicemailMessage
from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.wav import inspect_wav
from callcontrol.notify.mailer import Mailer
from callcontrol.repositories import media_files

log = structlog.get_logger(__name__)


class MailingVoicemailBox:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], media_root: Path, mailer: Mailer
    ) -> None:
        self._sessions = sessions
        self._root = media_root
        self._mailer = mailer

    async def deliver(
        self,
        *,
        call_id: str,
        number_id: int,
        account_id: int | None,
        did: str,
        caller: str | None,
        duration_s: int,
        audio: bytes,
    ) -> None:
        if account_id is None:
            return
        stored_name = f"voicemail/{account_id}/{call_id.replace('.', '_')}.wav"
        await media_files.write(self._root, stored_name, audio)
        async with self._sessions() as session, session.begin():
            message = await session.scalar(
                sa.select(VoicemailMessage).where(VoicemailMessage.cdr_id == call_id).limit(1)
            )
            if message is None:
                message = VoicemailMessage(
                    number_id=number_id,
                    account_id=account_id,
                    cdr_id=call_id,
                    caller=caller,
                    stored_name=stored_name,
                    duration_ms=recorded_ms(audio, duration_s),
                    size_bytes=len(audio),
                )
                session.add(message)
                await session.flush()
            elif message.mailed_at is not None:
                return  # delivered before (a replay)
            email = await session.scalar(sa.select(Account.email).where(Account.id == account_id))
        if not email:
            return
        mail = _voicemail_mail(email, did, caller, duration_s, audio)
        mail["Message-ID"] = voicemail_message_id(call_id)
        try:
            await self._mailer.send(mail)
            error = None
        except OSError as exc:  # smtplib errors are OSErrors
            error = str(exc)[:500]
            log.warning("voicemail_mail_failed", error=error)
        async with self._sessions() as session, session.begin():
            await session.execute(
                sa.update(VoicemailMessage)
                .where(VoicemailMessage.id == message.id)
                .values(
                    mailed_at=None if error else datetime.now(UTC),
                    mail_error=error,
                )
            )


def recorded_ms(audio: bytes, duration_s: int) -> int:
    """The message's length from its own audio (ARI reports whole seconds only: a
    1.92 s message was stored as 1000 ms); the reported seconds if it is no WAV."""
    try:
        return inspect_wav(audio, max_bytes=max(len(audio), 1)).duration_ms
    except (InvalidInput, ZeroDivisionError):
        return duration_s * 1000


def voicemail_message_id(call_id: str) -> str:
    return f"<voicemail.{call_id}@callcontrol.invalid>"


def _voicemail_mail(
    to: str, did: str, caller: str | None, duration_s: int, audio: bytes
) -> EmailMessage:
    mail = EmailMessage()
    mail["To"] = to
    mail["Subject"] = f"New voicemail for {did} from {caller or 'an unknown caller'}"
    mail.set_content(
        f"You have a new voicemail message on {did}.\n"
        f"From: {caller or 'unknown'}\nLength: {duration_s} s\n\n"
        "The recording is attached (WAV)."
    )
    mail.add_attachment(audio, maintype="audio", subtype="wav", filename="voicemail.wav")
    return mail
