"""The shipped migrations build the schema the models describe, on both backends."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from callcontrol.db.engine import (
    create_engine,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from callcontrol.db.models import Account, Base, Number
from callcontrol.domain.vocabulary import NumberKind, NumberState
from callcontrol.settings import DatabaseSettings


async def _table_names(url: str) -> set[str]:
    engine = create_engine(DatabaseSettings(url=url), pooled=False)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_creates_every_table_of_the_models(empty_db_url: str) -> None:
    settings = DatabaseSettings(url=empty_db_url)
    assert await current_revision(settings) is None

    await upgrade(settings)

    assert await current_revision(settings) == head_revision()
    assert await _table_names(empty_db_url) == set(Base.metadata.tables) | {"alembic_version"}


async def _differences(engine: AsyncEngine, metadata: sa.MetaData) -> list[Any]:
    def diff(conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(diff)


async def test_migrated_schema_has_no_difference_from_the_models(db_engine: AsyncEngine) -> None:
    assert await _differences(db_engine, Base.metadata) == []


async def test_schema_comparison_sees_a_changed_model(db_engine: AsyncEngine) -> None:
    """Guards the test above: a model that drifted from the migrations is reported."""
    drifted = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["rates"].append_column(sa.Column("zone", sa.String(10), nullable=True))
    drifted.tables["sip_accounts"].c.login.type = sa.String(200)

    differences = await _differences(db_engine, drifted)
    flat = [d[0] if isinstance(d, list) else d for d in differences]  # column diffs nest
    found = {(d[0], d[2]) for d in flat}  # (operation, table name)

    assert ("add_column", "rates") in found
    assert ("modify_type", "sip_accounts") in found


async def test_downgrade_to_base_then_upgrade_again(empty_db_url: str) -> None:
    settings = DatabaseSettings(url=empty_db_url)
    await upgrade(settings)

    await downgrade(settings, "base")
    assert await _table_names(empty_db_url) == {"alembic_version"}

    await upgrade(settings)
    assert await _table_names(empty_db_url) >= set(Base.metadata.tables)


async def test_upgrade_twice_is_harmless(fresh_db_url: str) -> None:
    await upgrade(DatabaseSettings(url=fresh_db_url))
    assert await current_revision(DatabaseSettings(url=fresh_db_url)) == head_revision()


def _number(e164: str, account_id: int | None = None) -> Number:
    return Number(
        e164=e164,
        country_code=49,
        region="DE",
        city="Berlin",
        kind=NumberKind.VOICE,
        state=NumberState.ACTIVE,
        account_id=account_id,
        activated_on=date(2024, 1, 20),
        monthly_fee_minor=500,
        setup_fee_minor=0,
        currency="EUR",
    )


async def test_unknown_enum_value_is_refused_by_the_database(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    async with db_session() as session, session.begin():
        session.add(_number("+493012345678"))

    with pytest.raises(IntegrityError):
        async with db_session() as session, session.begin():
            await session.execute(sa.text("UPDATE numbers SET state = 'lost'"))


async def test_deleting_an_account_returns_its_numbers_unowned(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    """Foreign keys are enforced (SQLite too): ON DELETE SET NULL really happens."""
    async with db_session() as session, session.begin():
        account = Account(name="Acme", email="ops@acme.example", currency="EUR")
        session.add(account)
        await session.flush()
        number = _number("+493087654321", account_id=account.id)
        session.add(number)
        await session.flush()
        account.callerid_number_id = number.id

    async with db_session() as session, session.begin():
        await session.execute(sa.delete(Account).where(Account.id == account.id))

    async with db_session() as session:
        owner = await session.scalar(sa.select(Number.account_id).where(Number.id == number.id))
    assert owner is None


async def test_duplicate_e164_is_refused(db_session: async_sessionmaker[AsyncSession]) -> None:
    async with db_session() as session, session.begin():
        session.add(_number("+4930111"))
    with pytest.raises(IntegrityError):
        async with db_session() as session, session.begin():
            session.add(_number("+4930111"))
