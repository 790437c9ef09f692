"""A transaction PostgreSQL aborted to break a deadlock is run again (services/transitions.py)."""

from __future__ import annotations

import pytest
import sqlalchemy.exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.notify.mailer import Mailer
from callcontrol.services import transitions as tr
from callcontrol.services.numbers import utc_now


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def aborted(sqlstate: str) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("SELECT ... FOR UPDATE", {}, _PgError(sqlstate))


class NoMail:
    async def send(self, message: object) -> None:  # pragma: no cover - nothing is queued
        raise AssertionError("no mail expected")


async def run(sessions: async_sessionmaker[AsyncSession], failures: list[str]) -> int:
    attempts = 0

    async def operation(work: tr.Work) -> int:
        nonlocal attempts
        attempts += 1
        if failures:
            raise aborted(failures.pop(0))
        return attempts

    mailer: Mailer = NoMail()  # type: ignore[assignment]
    return await tr.in_transaction(sessions, mailer, utc_now(), operation)


async def test_a_deadlock_victim_is_run_again(db_session: async_sessionmaker[AsyncSession]) -> None:
    assert await run(db_session, ["40P01", "40001"]) == 3


async def test_it_gives_up_after_the_retries(db_session: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(sa_exc.DBAPIError):
        await run(db_session, ["40P01"] * tr.RETRIES)


async def test_other_database_errors_are_not_retried(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(sa_exc.DBAPIError):
        await run(db_session, ["23505", "40P01"])  # a unique violation: raised at once
