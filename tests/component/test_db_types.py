"""Times come back aware UTC and enums as their values, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.engine import create_engine
from callcontrol.db.models import Account, Cdr
from callcontrol.db.preflight import DatabaseUrlError
from callcontrol.domain.vocabulary import CallDirection, Disposition
from callcontrol.settings import DatabaseSettings

BERLIN_SUMMER = timezone(timedelta(hours=2))


async def test_datetimes_come_back_aware_utc_and_the_same_instant(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    started = datetime(2024, 7, 1, 12, 30, 15, 123456, tzinfo=BERLIN_SUMMER)
    async with db_session() as session, session.begin():
        session.add(Cdr(id="c1", direction=CallDirection.INBOUND, did="+4930", started_at=started))

    async with db_session() as session:
        loaded = await session.scalar(sa.select(Cdr.started_at).where(Cdr.id == "c1"))

    assert loaded is not None
    assert loaded.tzinfo is not None and loaded.utcoffset() == timedelta(0)
    assert loaded == started
    assert loaded.hour == 10


async def test_time_order_in_sql_follows_the_instant_not_the_offset(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    early = datetime(2024, 7, 1, 13, 0, tzinfo=BERLIN_SUMMER)  # 11:00 UTC
    late = datetime(2024, 7, 1, 11, 30, tzinfo=UTC)
    async with db_session() as session, session.begin():
        session.add_all(
            [
                Cdr(id="late", direction=CallDirection.INBOUND, did="+4930", started_at=late),
                Cdr(id="early", direction=CallDirection.INBOUND, did="+4930", started_at=early),
            ]
        )
    async with db_session() as session:
        ids = (await session.scalars(sa.select(Cdr.id).order_by(Cdr.started_at))).all()
    assert ids == ["early", "late"]


async def test_naive_datetime_is_refused(db_session: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with db_session() as session, session.begin():
            session.add(
                Cdr(
                    id="n",
                    direction=CallDirection.INBOUND,
                    did="+4930",
                    started_at=datetime(2024, 1, 1, 12, 0),
                )
            )


async def test_enums_are_stored_as_their_values(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    async with db_session() as session, session.begin():
        session.add(
            Cdr(
                id="e",
                direction=CallDirection.OUTBOUND,
                did="+4930",
                started_at=datetime.now(UTC),
                disposition=Disposition.NO_ANSWER,
            )
        )
    async with db_session() as session:
        raw = (await session.execute(sa.text("SELECT direction, disposition FROM cdrs"))).one()
        typed = await session.scalar(sa.select(Cdr.disposition))
    assert tuple(raw) == ("outbound", "no_answer")
    assert typed is Disposition.NO_ANSWER


async def test_new_rows_get_aware_utc_created_at(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    async with db_session() as session, session.begin():
        account = Account(name="A", email=None, currency="EUR")
        session.add(account)
    async with db_session() as session:
        created = await session.scalar(sa.select(Account.created_at))
    assert created is not None and created.tzinfo is not None
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)


def test_sqlite_engine_refuses_a_file_whose_folder_does_not_exist(tmp_path: Path) -> None:
    """Issue 14: a missing folder is an error naming it, never created silently."""
    missing = tmp_path / "deep" / "er"
    with pytest.raises(DatabaseUrlError, match="mkdir -p"):
        create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{missing}/cc.db"))
    assert not missing.exists()


async def test_sqlite_engine_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "cc.db"
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    try:
        async with engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    finally:
        await engine.dispose()
    assert path.exists()
    assert (mode, fks) == ("wal", 1)
