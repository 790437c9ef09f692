"""Sends mail over SMTP.

The stdlib ``smtplib`` runs in a worker thread so the event loop never waits
on a mail server; one connection per message keeps failure handling simple
(mail volume is one message per voicemail or notice, not per call).
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Protocol

from callcontrol.settings import SmtpSettings


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    async def send(self, message: EmailMessage) -> None:
        if "From" not in message:
            message["From"] = self._settings.sender
        await asyncio.to_thread(self._send_blocking, message)

    def _send_blocking(self, message: EmailMessage) -> None:
        s = self._settings
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout_s) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.username and s.password:
                smtp.login(s.username, s.password.get_secret_value())
            smtp.send_message(message)
