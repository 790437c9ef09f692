"""A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

from __future__ import annotations

import email
import email.policy
import time
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

from aiosmtpd.controller import Controller


class _Collect:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


class SmtpSink:
    def __init__(self, port: int) -> None:
        self.port = port
        self._handler = _Collect()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        return list(self._handler.messages)

    def wait_for(self, to: str, timeout_s: float = 15.0) -> EmailMessage:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self._handler.messages:
                addresses = {a.lower() for _, a in getaddresses([str(message["To"] or "")])}
                if to.lower() in addresses:  # the address itself, not a substring of another
                    return message
            time.sleep(0.1)
        raise AssertionError(f"no mail to {to} within {timeout_s}s")
