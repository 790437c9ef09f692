"""Mails are retried until the mail server takes them, and sent once: the spooling
mailer against a real SMTP server (aiosmtpd on loopback) that is down, then up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
from support.engine import free_port
from support.smtp import SmtpSink

from callcontrol.notify.mailer import SmtpMailer
from callcontrol.notify.retrying_mailer import SpoolingMailer, replay_mails
from callcontrol.repositories.spool import MAIL_QUEUE, Spool, SpoolKind
from callcontrol.repositories.spooling import SpoolReplayer
from callcontrol.settings import SmtpSettings


def voicemail_mail(to: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = "New voicemail"
    message["Message-ID"] = "<voicemail.call-1@callcontrol.invalid>"
    message.set_content("You have a new voicemail message.")
    message.add_attachment(b"RIFF....WAVE", maintype="audio", subtype="wav", filename="vm.wav")
    return message


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    opened = Spool(tmp_path / "spool.db")
    await opened.open()
    yield opened
    await opened.close()


async def test_a_mail_refused_while_the_server_is_down_is_sent_once_when_it_is_back(
    spool: Spool,
) -> None:
    port = free_port()
    smtp = SmtpMailer(SmtpSettings(port=port, timeout_s=2.0))
    mailer = SpoolingMailer(smtp, spool=spool)
    replayer = SpoolReplayer(
        spool=spool, kinds=MAIL_QUEUE, replay=lambda _kind: replay_mails(smtp),
        retry_min_s=0.05, retry_max_s=0.2, remember_done=True, name="mail",
    )  # fmt: skip
    task = asyncio.create_task(replayer.run())
    sink = SmtpSink(port)
    try:
        await mailer.send(voicemail_mail("owner@example.invalid"))  # nobody listens: queued
        assert spool.depth.held[SpoolKind.MAIL] == 1
        await asyncio.sleep(0.3)  # a few retries against the closed port
        [entry] = await spool.oldest(MAIL_QUEUE)
        assert entry.attempts >= 1
        sink.start()
        await until(lambda: len(sink.messages) == 1 and spool.depth.total == 0)
        received = sink.messages[0]
        assert received["Message-ID"] == "<voicemail.call-1@callcontrol.invalid>"
        assert any(part.get_filename() == "vm.wav" for part in received.iter_attachments())
        # The same mail handed over again (a voicemail replayed after a crash): not resent.
        await mailer.send(voicemail_mail("owner@example.invalid"))
        # Another mail while the server is up: sent at once, not queued.
        other = voicemail_mail("other@example.invalid")
        del other["Message-ID"]
        await mailer.send(other)
        assert [str(m["To"]) for m in sink.messages] == [
            "owner@example.invalid", "other@example.invalid",
        ]  # fmt: skip
        assert spool.depth.total == 0 and spool.replayed[SpoolKind.MAIL] == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sink.stop()


async def test_while_mails_are_queued_a_new_one_waits_behind_them(spool: Spool) -> None:
    port = free_port()
    mailer = SpoolingMailer(SmtpMailer(SmtpSettings(port=port, timeout_s=2.0)), spool=spool)
    first, second = voicemail_mail("a@example.invalid"), voicemail_mail("b@example.invalid")
    second.replace_header("Message-ID", "<voicemail.call-2@callcontrol.invalid>")
    await mailer.send(first)
    sink = SmtpSink(port)
    sink.start()
    try:
        await mailer.send(second)  # the server is up, but an older mail goes first
        assert sink.messages == []
        assert [e.key for e in await spool.oldest(MAIL_QUEUE, limit=5)] == [
            "mail:<voicemail.call-1@callcontrol.invalid>",
            "mail:<voicemail.call-2@callcontrol.invalid>",
        ]
    finally:
        sink.stop()
