"""The database engine, sessions and schema upgrades.

Rules this module keeps:
- One engine per process, made here from ``DatabaseSettings`` (the composition root
  owns it and disposes it on shutdown).
- SQLite is configured so it behaves like a database: foreign keys on, WAL, a busy
  timeout, and transactions SQLAlchemy really controls (``BEGIN IMMEDIATE``), so that
  SAVEPOINTs nest and a transaction that reads then writes cannot fail with
  "database is locked" half-way; writers queue on the busy timeout instead.
- The schema is made only by the Alembic migrations (:func:`upgrade`), never by
  ``create_all``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from callcontrol.settings import DatabaseSettings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_POOL_SIZE = 10
PG_MAX_OVERFLOW = 10


def create_engine(settings: DatabaseSettings, *, pooled: bool = True) -> AsyncEngine:
    """An AsyncEngine for ``settings.url`` (``sqlite+aiosqlite`` or ``postgresql+asyncpg``).

    ``pooled=False`` gives a NullPool engine (one-shot tools: migrations, scripts).
    A URL of another form, or a SQLite file in a folder that does not exist,
    raises ``DatabaseUrlError`` (``callcontrol/db/preflight.py``) with one line.
    """
    from callcontrol.db.preflight import validate_url

    url = validate_url(settings.url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings.echo, pooled=pooled)
    kw: dict[str, Any] = {"echo": settings.echo, "pool_pre_ping": True}
    if pooled:
        kw |= {"pool_size": PG_POOL_SIZE, "max_overflow": PG_MAX_OVERFLOW}
    else:
        kw["poolclass"] = NullPool
    return _create_async_engine(url, **kw)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (no lazy reload under asyncio)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _sqlite_engine(url: URL, echo: bool, *, pooled: bool) -> AsyncEngine:
    in_memory = url.database in (None, "", ":memory:")
    kw: dict[str, Any] = {"echo": echo}
    if in_memory:
        kw |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    elif not pooled:
        kw["poolclass"] = NullPool
    engine = _create_async_engine(url, **kw)
    _configure_sqlite(engine, wal=not in_memory)
    return engine


def _configure_sqlite(engine: AsyncEngine, *, wal: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Driver autocommit: SQLAlchemy emits BEGIN itself (see _on_begin), so
        # savepoints and transactional DDL work as documented.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


async def upgrade(settings: DatabaseSettings, revision: str = "head") -> None:
    """Migrate the database of ``settings`` to ``revision`` (default: the newest)."""
    await _alembic(settings, "upgrade", revision)


async def downgrade(settings: DatabaseSettings, revision: str) -> None:
    """Migrate the database of ``settings`` back to ``revision`` (``"base"``: empty)."""
    await _alembic(settings, "downgrade", revision)


async def current_revision(settings: DatabaseSettings) -> str | None:
    """The revision the database is at (None: never migrated)."""
    engine = create_engine(settings, pooled=False)
    try:
        return await current_revision_of(engine)
    finally:
        await engine.dispose()


async def current_revision_of(engine: AsyncEngine) -> str | None:
    """The revision the database of ``engine`` is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def head_revision() -> str:
    """The newest revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic Config pointing at the shipped migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def _alembic(settings: DatabaseSettings, command_name: str, revision: str) -> None:
    engine = create_engine(settings, pooled=False)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_alembic, command_name, revision)
    finally:
        await engine.dispose()


def _run_alembic(connection: Connection, command_name: str, revision: str) -> None:
    from alembic import command

    getattr(command, command_name)(alembic_config(connection), revision)
