"""Jobs that run once per cluster (billing run, reminders, purge) under a
PostgreSQL advisory lock: two engines on one database, real PostgreSQL.

Two ``ClusterJobLock`` on separate connection pools stand for two engines; the
job records when it starts and stops in each. Killing the holder's database
session (``pg_terminate_backend``, as a crashed engine's session ends) must
hand the jobs to the other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from sqlalchemy import text

from callcontrol.db.engine import create_engine
from callcontrol.services.cluster_lock import JOBS_LOCK_KEY, ClusterJobLock
from callcontrol.settings import DatabaseSettings

pytestmark = [pytest.mark.postgresql_only, pytest.mark.db]


class JobLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.running: set[str] = set()

    def job(self, name: str) -> Callable[[], AbstractAsyncContextManager[None]]:
        @asynccontextmanager
        async def run() -> AsyncIterator[None]:
            self.events.append(("start", name))
            self.running.add(name)
            try:
                yield
            finally:
                self.running.discard(name)
                self.events.append(("stop", name))

        return run


async def wait_for(condition: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not true after {timeout_s} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def holder_backend_pid(url: str) -> int:
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with engine.connect() as conn:
            pid = await conn.scalar(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND objid = :key AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ),
                {"key": JOBS_LOCK_KEY},
            )
            assert pid is not None, "nobody holds the jobs lock"
            return int(pid)
    finally:
        await engine.dispose()


async def kill_backend(url: str, pid: int) -> None:
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await engine.dispose()


async def test_two_engines_run_the_jobs_once_and_the_survivor_takes_over_a_killed_holder(
    fresh_db_url: str,
) -> None:
    log = JobLog()
    engines = {name: create_engine(DatabaseSettings(url=fresh_db_url)) for name in ("a", "b")}
    locks = {
        name: ClusterJobLock(engine=engine, jobs=log.job(name), retry_s=0.3, check_s=0.2)
        for name, engine in engines.items()
    }
    try:
        async with locks["a"].running(), locks["b"].running():
            await wait_for(lambda: len(log.running) == 1, 5)
            # For a while: still exactly one runs, and it started once.
            for _ in range(20):
                await asyncio.sleep(0.1)
                assert len(log.running) == 1
                assert sum(1 for kind, _ in log.events if kind == "start") == 1
            (first,) = log.running
            (second,) = {"a", "b"} - {first}
            assert locks[first].held and not locks[second].held

            await kill_backend(fresh_db_url, await holder_backend_pid(fresh_db_url))
            took = await wait_for(lambda: log.running == {second}, 5)
            assert ("stop", first) in log.events
            assert not locks[first].held and locks[second].held
            assert took < 3
            # The old holder does not come back while the new one holds the lock.
            await asyncio.sleep(1)
            assert log.running == {second}
        assert log.running == set()
    finally:
        for engine in engines.values():
            await engine.dispose()


async def test_a_holder_that_shuts_down_frees_the_lock_for_the_other_engine(
    fresh_db_url: str,
) -> None:
    log = JobLog()
    engines = [create_engine(DatabaseSettings(url=fresh_db_url)) for _ in range(2)]
    a = ClusterJobLock(engine=engines[0], jobs=log.job("a"), retry_s=0.3, check_s=0.2)
    b = ClusterJobLock(engine=engines[1], jobs=log.job("b"), retry_s=0.3, check_s=0.2)
    task_a = asyncio.create_task(a.run())
    try:
        await wait_for(lambda: log.running == {"a"}, 5)
        async with b.running():
            await asyncio.sleep(0.6)
            assert log.running == {"a"}
            task_a.cancel()
            await asyncio.gather(task_a, return_exceptions=True)
            assert ("stop", "a") in log.events
            await wait_for(lambda: log.running == {"b"}, 3)
    finally:
        task_a.cancel()
        await asyncio.gather(task_a, return_exceptions=True)
        for engine in engines:
            await engine.dispose()
