"""Alembic environment of callcontrol.

The database URL comes from the caller, never from alembic.ini:
- programmatically (``callcontrol.db.engine.upgrade``): the caller hands over an
  open connection in ``config.attributes["connection"]``;
- from the ``alembic`` command line (developers writing a revision):
  ``alembic -c callcontrol/db/migrations/alembic.ini -x url=sqlite+aiosqlite:///x.db ...``
  or, without ``-x url``, the ``CALLCONTROL_DATABASE__URL`` setting.

SQLite gets ``render_as_batch`` (ALTER by table copy) and runs with foreign keys
off during the migration, as a table copy requires; they are checked afterwards.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from callcontrol.db.models import Base

target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    if is_sqlite:
        _sqlite_pragma(connection, "PRAGMA foreign_keys = OFF")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if is_sqlite:
        bad = _sqlite_pragma(connection, "PRAGMA foreign_key_check")
        if bad:
            raise RuntimeError(f"foreign keys violated after migration: {bad[:5]}")
        _sqlite_pragma(connection, "PRAGMA foreign_keys = ON")


def _sqlite_pragma(connection: Connection, sql: str) -> list[tuple[object, ...]]:
    # On the raw driver connection: the engine runs it in autocommit, and these
    # pragmas are no-ops inside a transaction.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []
    finally:
        cursor.close()


async def _run_with_own_engine(url: str) -> None:
    from callcontrol.db.engine import create_engine
    from callcontrol.settings import DatabaseSettings

    engine = create_engine(DatabaseSettings(url=url), pooled=False)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


def _url_from_caller() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    from callcontrol.settings import load_settings

    return load_settings().database.url


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
    else:
        asyncio.run(_run_with_own_engine(_url_from_caller()))


if context.is_offline_mode():
    raise SystemExit("callcontrol migrations run online only (they need a live connection)")
run_migrations_online()
