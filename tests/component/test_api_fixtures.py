"""Shared fixtures of the HTTP API tests: a real server on a fresh database.

Imported by the ``test_api_*`` modules (fixtures by name); holds no tests itself.
``api`` serves ``build_app(settings, call_engine=False)`` (the database and the API) through
aiohttp's TestServer, with an operator token; ``api.customer()`` opens an account
with its own customer token. Seeds go through the real models and the ledger.
The settings are built here, whatever ``CALLCONTROL_*`` says: SIP accounts are
provisioned for real, by the file back-end into the test's own folder (realm
``test-realm``, domain ``sip.example.net``, AMI off); ``api.pjsip_conf()`` reads
the file once pending changes are written.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.app import build_app
from callcontrol.db import ledger
from callcontrol.db.models import Account, Cdr, Number, VoicemailMessage
from callcontrol.domain.vocabulary import (
    CallDirection,
    Disposition,
    LedgerKind,
    NumberKind,
    NumberState,
)
from callcontrol.keys import SESSIONS
from callcontrol.settings import (
    AmiSettings,
    DatabaseSettings,
    DocumentSettings,
    MediaSettings,
    Settings,
)
from callcontrol.web.api.config import PROVISIONER
from callcontrol.web.api.tokens import create_token
from provisioning.service import ProvisioningService
from provisioning.settings import ProvisioningSettings

Sessions = async_sessionmaker[AsyncSession]
_dids = itertools.count(1000)
REALM = "test-realm"
SIP_DOMAIN = "sip.example.net"


def next_did(prefix: str = "+4930777") -> str:
    return f"{prefix}{next(_dids):04d}"


def wav(rate: int = 8000, bits: int = 16, channels: int = 1, frames: int = 800) -> bytes:
    """A WAV PCM file of silence with the given format."""
    block = channels * bits // 8
    data = b"\x00" * (frames * block)
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, channels,
        rate, rate * block, block, bits, b"data", len(data),
    )  # fmt: skip
    return header + data


def stored_wavs(root: Path) -> list[Path]:
    return list(root.rglob("*.wav"))


class RecordingMailer:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


@dataclass
class Customer:
    account_id: int
    headers: dict[str, str]


@dataclass
class Api:
    client: TestClient[Any, Any]
    sessions: Sessions
    media_root: Path
    operator: dict[str, str]
    mailer: RecordingMailer
    provisioning_file: Path

    async def pjsip_conf(self) -> str:
        """The provisioning include file once every pending change is on disk ("" if none)."""
        service = self.client.app[PROVISIONER]
        assert isinstance(service, ProvisioningService)
        await service.backend.flush()
        return self.provisioning_file.read_text() if self.provisioning_file.exists() else ""

    async def customer(
        self, *, balance_minor: int = 10_000, email: str = "a@example.com"
    ) -> Customer:
        async with self.sessions() as session, session.begin():
            account = Account(name="Customer", email=email, currency="EUR")
            session.add(account)
            await session.flush()
            if balance_minor:
                await ledger.post(
                    session, account_id=account.id, kind=LedgerKind.TOP_UP,
                    amount_minor=balance_minor, currency="EUR",
                )  # fmt: skip
            account_id = account.id
        token = await create_token(self.sessions, role="customer", account_id=account_id)
        return Customer(account_id, {"Authorization": f"Bearer {token}"})

    async def number(
        self, account_id: int | None, *, state: NumberState = NumberState.ACTIVE,
        did: str | None = None, kind: NumberKind = NumberKind.VOICE, city: str | None = "Berlin",
        activated_on: Any = None,
    ) -> str:  # fmt: skip
        did = did or next_did()
        async with self.sessions() as session, session.begin():
            session.add(Number(
                e164=did, country_code=49, region="DE", city=city, kind=kind, state=state,
                account_id=account_id, activated_on=activated_on, monthly_fee_minor=500,
                setup_fee_minor=100, currency="EUR",
            ))  # fmt: skip
        return did

    async def cdr(
        self, account_id: int, did: str, *, started_at: datetime, caller: str = "+4915112345678",
        talk_ms: int = 0, cost_minor: int = 0, disposition: Disposition = Disposition.ANSWERED,
    ) -> str:  # fmt: skip
        cdr_id = str(uuid.uuid4())
        async with self.sessions() as session, session.begin():
            session.add(Cdr(
                id=cdr_id, direction=CallDirection.INBOUND, did=did, account_id=account_id,
                caller=caller, started_at=started_at, ended_at=started_at, talk_ms=talk_ms,
                cost_minor=cost_minor, currency="EUR", disposition=disposition,
            ))  # fmt: skip
        return cdr_id

    async def voicemail(
        self, account_id: int, *, created_at: datetime | None = None, caller: str = "+4915100000001"
    ) -> tuple[int, Path]:
        stored_name = f"voicemail/{account_id}/{uuid.uuid4()}.wav"
        path = self.media_root / stored_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav())
        async with self.sessions() as session, session.begin():
            row = VoicemailMessage(
                account_id=account_id, caller=caller, stored_name=stored_name,
                duration_ms=100, size_bytes=path.stat().st_size,
                created_at=created_at or datetime.now(UTC),
            )  # fmt: skip
            session.add(row)
            await session.flush()
            return row.id, path


def provisioning_file(media_root: Path) -> Path:
    """Beside the media folder (both in the test's own folder), never the working directory."""
    return media_root.parent / f"{media_root.name}-asterisk" / "pjsip_callcontrol.conf"


def api_settings(url: str, media_root: Path, max_upload_bytes: int = 1024 * 1024) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url),
        media=MediaSettings(root=media_root, max_upload_bytes=max_upload_bytes),
        documents=DocumentSettings(root=media_root.parent / "documents", max_bytes=64 * 1024),
        ami=AmiSettings(enabled=False),
        provisioning=ProvisioningSettings(
            file_path=provisioning_file(media_root),
            realm=REALM,
            sip_domain=SIP_DOMAIN,
            reload_via="off",  # no Asterisk here: the include file is what is checked
        ),
    )


@contextlib.asynccontextmanager
async def open_api(db_url: str, tmp_path: Path, **updates: Any) -> AsyncIterator[Api]:
    """A served API on ``db_url``; ``updates`` replace parts of the settings
    (``quotas=QuotaSettings(...)``, ``forwarding=...``)."""
    media_root = tmp_path / "media"
    settings = api_settings(db_url, media_root).model_copy(update=updates)
    mailer = RecordingMailer()
    # The composition root opens provisioning, from settings.provisioning.
    app = build_app(settings, call_engine=False, mailer=mailer)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        sessions = app[SESSIONS]
        token = await create_token(sessions, role="operator")
        operator = {"Authorization": f"Bearer {token}"}
        yield Api(client, sessions, media_root, operator, mailer, settings.provisioning.file_path)
    finally:
        await client.close()


@pytest.fixture(name="api")
async def api_fixture(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(fresh_db_url, tmp_path) as api:
        yield api
