"""The scheduled privacy purge of ``callcontrol serve``, as the composition root wires it.

``privacy_purge_scheduler`` (app.py) on a real database: a tick removes caller
numbers of CDRs and voicemail recordings (file and row) older than the
retention and keeps fresher ones; a failing tick is logged and the loop goes on;
leaving ``running()`` cancels the owned task.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from callcontrol.app import privacy_purge_scheduler
from callcontrol.db.models import Account, Cdr, VoicemailMessage
from callcontrol.domain.vocabulary import CallDirection, Disposition
from callcontrol.services.privacy_purge import PrivacyPurgeScheduler, PurgeCounts
from callcontrol.settings import DatabaseSettings, MediaSettings, PrivacySettings, Settings

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


async def _account(sessions: Sessions) -> int:
    async with sessions() as session, session.begin():
        account = Account(name="Customer", email="a@example.com", currency="EUR")
        session.add(account)
        await session.flush()
        return account.id


async def _cdr(sessions: Sessions, account_id: int, *, age: timedelta, caller: str) -> None:
    async with sessions() as session, session.begin():
        session.add(Cdr(
            id=str(uuid.uuid4()), direction=CallDirection.INBOUND, did="+4930777000001",
            account_id=account_id, caller=caller, started_at=NOW - age, ended_at=NOW - age,
            disposition=Disposition.ANSWERED,
        ))  # fmt: skip


async def _recording(
    sessions: Sessions, media_root: Path, account_id: int, *, age: timedelta
) -> Path:
    stored_name = f"voicemail/{account_id}/{uuid.uuid4()}.wav"
    path = media_root / stored_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    async with sessions() as session, session.begin():
        session.add(VoicemailMessage(
            account_id=account_id, caller="+4915100000001", stored_name=stored_name,
            duration_ms=100, size_bytes=4, created_at=NOW - age,
        ))  # fmt: skip
    return path


def _scheduler(sessions: Sessions, media_root: Path, retention_days: int) -> PrivacyPurgeScheduler:
    settings = Settings(
        database=DatabaseSettings(url="sqlite+aiosqlite://"),  # unused: sessions are passed
        media=MediaSettings(root=media_root),
        privacy=PrivacySettings(retention_days=retention_days, purge_interval_s=3600),
    )
    return privacy_purge_scheduler(settings, sessions, clock=lambda: NOW)


async def test_a_tick_purges_caller_numbers_and_recordings_past_the_retention(
    db_session: Sessions, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    account_id = await _account(db_session)
    await _cdr(db_session, account_id, age=timedelta(days=31), caller="+4915100000009")
    await _cdr(db_session, account_id, age=timedelta(days=29), caller="+4915100000008")
    old = await _recording(db_session, media_root, account_id, age=timedelta(days=31))
    fresh = await _recording(db_session, media_root, account_id, age=timedelta(days=29))

    counts = await _scheduler(db_session, media_root, retention_days=30).tick()

    async with db_session() as session:
        callers = set(await session.scalars(sa.select(Cdr.caller)))
        kept = list(await session.scalars(sa.select(VoicemailMessage.stored_name)))
    assert counts is not None
    assert (counts.calls_anonymised, counts.recordings_deleted) == (1, 1)
    assert callers == {None, "+4915100000008"}
    assert not old.exists() and fresh.exists()
    assert [media_root / name for name in kept] == [fresh]


async def test_the_retention_setting_decides_what_is_old(
    db_session: Sessions, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    account_id = await _account(db_session)
    await _cdr(db_session, account_id, age=timedelta(days=31), caller="+4915100000009")
    recording = await _recording(db_session, media_root, account_id, age=timedelta(days=31))

    counts = await _scheduler(db_session, media_root, retention_days=180).tick()

    async with db_session() as session:
        callers = set(await session.scalars(sa.select(Cdr.caller)))
    assert counts is not None and (counts.calls_anonymised, counts.recordings_deleted) == (0, 0)
    assert callers == {"+4915100000009"} and recording.exists()


class _FlakyPurge:
    """Fails on the first call, then counts; records when it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[datetime, int]] = []
        self.called = asyncio.Event()

    async def __call__(self, now: datetime, retention_days: int) -> PurgeCounts:
        self.calls.append((now, retention_days))
        if len(self.calls) >= 2:
            self.called.set()
        if len(self.calls) == 1:
            raise RuntimeError("database went away")
        return _Counts()


class _Counts:
    calls_anonymised = 0
    recordings_deleted = 0


async def test_a_failing_tick_is_logged_and_the_loop_runs_on_until_cancelled() -> None:
    purge = _FlakyPurge()
    settings = PrivacySettings(retention_days=7, purge_interval_s=0.01)
    scheduler = PrivacyPurgeScheduler(purge=purge, settings=settings, clock=lambda: NOW)

    with capture_logs() as logs:
        async with scheduler.running() as task:
            await asyncio.wait_for(purge.called.wait(), timeout=5)

    assert task.cancelled()
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["privacy_purge_failed"]
    assert purge.calls[:2] == [(NOW, 7), (NOW, 7)]
    settled = len(purge.calls)
    await asyncio.sleep(0.05)
    assert len(purge.calls) == settled  # nothing ticks after shutdown


def test_the_purge_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="purge_interval_s"):
        PrivacySettings(purge_interval_s=0)
