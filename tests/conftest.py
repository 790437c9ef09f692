"""Database fixtures shared by every test layer (nothing else belongs here).

The backend is chosen per run: ``--db=sqlite`` (default) or ``--db=postgresql``,
or the environment variable ``CALLCONTROL_TEST_DB``. PostgreSQL is a real
throwaway cluster started once per run (``tests/support/postgres.py``).

Every database handed out is migrated by the shipped Alembic migrations, once per
run into a template that is then copied (SQLite: the file; PostgreSQL:
``CREATE DATABASE ... TEMPLATE``), so each test gets its own fresh database in
tens of milliseconds and may commit freely.

- ``db_url`` (session): one migrated database for the whole run (e2e: the engine).
- ``fresh_db_url``: a migrated database for this test only.
- ``empty_db_url``: an empty database for this test only (migration tests).
- ``db_engine``: an AsyncEngine on ``fresh_db_url``; ``db_session``: its
  ``async_sessionmaker`` (call it for a session).
Tests using any of them are marked ``db`` automatically.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support.postgres import PostgresCluster

from callcontrol.db.engine import create_engine, session_factory, upgrade
from callcontrol.settings import DatabaseSettings

BACKENDS = ("sqlite", "postgresql")
DB_FIXTURES = {"db_url", "fresh_db_url", "empty_db_url", "db_engine", "db_session"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=BACKENDS,
        default=os.environ.get("CALLCONTROL_TEST_DB", "sqlite"),
        help="database backend for tests (default: $CALLCONTROL_TEST_DB or sqlite)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark database tests ``db``; tests of PostgreSQL-only features are deselected
    (not skipped) on other backends, and run in the PostgreSQL pass."""
    on_postgres = config.getoption("--db") == "postgresql"
    kept, dropped = [], []
    for item in items:
        if DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)
        if item.get_closest_marker("postgresql_only") and not on_postgres:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class DatabaseProvider:
    """Hands out fresh databases on one backend; one migrated template per run."""

    def __init__(self, backend: str, root: Path, cluster: PostgresCluster | None) -> None:
        if backend not in BACKENDS:
            raise pytest.UsageError(f"CALLCONTROL_TEST_DB/--db must be one of {BACKENDS}")
        self.backend, self.root, self.cluster = backend, root, cluster
        self._names = itertools.count(1)
        self._template: str | None = None

    def new(self, *, migrated: bool) -> str:
        name = f"cc_test_{next(self._names)}"
        if migrated and self._template is None:
            self._template = self._make_template()
        template = self._template if migrated else None
        if self.cluster is not None:
            self.cluster.create_database(name, template=template)
            return self.cluster.url(name)
        path = self.root / f"{name}.db"
        if template is not None:
            shutil.copyfile(template, path)
        return f"sqlite+aiosqlite:///{path}"

    def drop(self, url: str) -> None:
        if self.cluster is not None:
            self.cluster.drop_database(url.rsplit("/", 1)[1])
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(url.split("///", 1)[1] + suffix).unlink(missing_ok=True)

    def _make_template(self) -> str:
        if self.cluster is not None:
            self.cluster.create_database("cc_template")
            asyncio.run(upgrade(DatabaseSettings(url=self.cluster.url("cc_template"))))
            return "cc_template"
        path = self.root / "template.db"
        asyncio.run(upgrade(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}")))
        return str(path)


@pytest.fixture(scope="session")
def db_backend(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--db"))


@pytest.fixture(scope="session")
def test_databases(
    db_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DatabaseProvider]:
    cluster = PostgresCluster.start() if db_backend == "postgresql" else None
    try:
        yield DatabaseProvider(db_backend, tmp_path_factory.mktemp("db"), cluster)
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture(scope="session")
def db_url(test_databases: DatabaseProvider) -> str:
    return test_databases.new(migrated=True)


@pytest.fixture
def fresh_db_url(test_databases: DatabaseProvider) -> Iterator[str]:
    url = test_databases.new(migrated=True)
    yield url
    test_databases.drop(url)


@pytest.fixture
def empty_db_url(test_databases: DatabaseProvider) -> Iterator[str]:
    url = test_databases.new(migrated=False)
    yield url
    test_databases.drop(url)


@pytest.fixture
async def db_engine(fresh_db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(DatabaseSettings(url=fresh_db_url))
    yield engine
    await engine.dispose()


@pytest.fixture
def db_session(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(db_engine)
