"""Voicemail kept by ``MailingVoicemailBox``: its length comes from the audio itself."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_api_fixtures import RecordingMailer, wav

from callcontrol.db.models import Account, Cdr, Number, VoicemailMessage
from callcontrol.domain.vocabulary import CallDirection, NumberKind, NumberState
from callcontrol.notify.voicemail import MailingVoicemailBox


async def test_a_message_of_1_92_s_is_stored_as_1920_ms_not_1000(
    db_session: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    async with db_session() as session, session.begin():
        account = Account(name="A", email="a@example.com", currency="EUR")
        session.add(account)
        await session.flush()
        number = Number(
            e164="+4930111222333", country_code=49, region="DE", kind=NumberKind.VOICE,
            state=NumberState.ACTIVE, account_id=account.id, monthly_fee_minor=0,
            setup_fee_minor=0, currency="EUR",
        )  # fmt: skip
        session.add(number)
        await session.flush()
        account_id, number_id = account.id, number.id
        session.add(Cdr(
            id="c-1", direction=CallDirection.INBOUND, did=number.e164, account_id=account_id,
            started_at=datetime.now(UTC),
        ))  # fmt: skip
    box = MailingVoicemailBox(sessions=db_session, media_root=tmp_path, mailer=RecordingMailer())
    await box.deliver(
        call_id="c-1", number_id=number_id, account_id=account_id, did="+4930111222333",
        caller="+4915100000001", duration_s=1, audio=wav(frames=15_360),  # 1.92 s at 8 kHz
    )  # fmt: skip
    async with db_session() as session:
        stored = await session.scalar(sa.select(VoicemailMessage.duration_ms))
    assert stored == 1920
