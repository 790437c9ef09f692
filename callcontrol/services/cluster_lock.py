"""Jobs that run once per cluster: the billing run, reminders, the privacy purge.

Every engine of a cluster shares one PostgreSQL, and every engine runs
``serve``; the jobs run only in the engine holding a PostgreSQL session-level
advisory lock (``pg_try_advisory_lock``) on a connection it keeps for as long
as it holds it. The rules:

- the lock lives with the database session: an engine that crashes, or whose
  connection is cut, loses it at once on the server's side, and another engine
  takes it at its next try (every ``retry_s``);
- the holder checks its connection every ``check_s``; when the check fails it
  stops its jobs before it tries again, so two engines overlap at most for
  ``check_s`` after a cut (the jobs are idempotent: the billing run records
  that it finished, the purge finds nothing left);
- on leaving (shutdown), the connection is invalidated, never returned to the
  pool still holding the lock;
- the tries run in the jobs' own loop (``services/periodic.py``): one try
  (take, hold, lose) is one tick, every ``retry_s``.

SQLite has one engine per database by nature; there the composition root runs
the jobs directly, as before.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callcontrol.services.periodic import every, owned_task

log = structlog.get_logger(__name__)

#: The advisory lock's key: fixed, derived from a name so it reads in pg_locks.
JOBS_LOCK_KEY = zlib.crc32(b"callcontrol-cluster-jobs")


class ClusterJobLock:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        jobs: Callable[[], AbstractAsyncContextManager[None]],
        key: int = JOBS_LOCK_KEY,
        retry_s: float = 2.0,
        check_s: float = 1.0,
    ) -> None:
        self._engine = engine
        self._jobs = jobs
        self._key = key
        self._retry_s = retry_s
        self._check_s = check_s
        self.held = False

    async def run(self) -> None:
        """Try, hold and run the jobs, lose, try again - until cancelled."""
        await every(self._retry_s, self._try_and_hold)

    def running(self) -> AbstractAsyncContextManager[asyncio.Task[None]]:
        """The loop as an owned task, cancelled and awaited on exit (for a cleanup_ctx)."""
        return owned_task(self.run, name="cluster-jobs-lock")

    async def _try_and_hold(self) -> None:
        """One try: take the lock and run the jobs until the connection fails."""
        try:
            async with self._engine.connect() as conn:
                if await self._try_lock(conn):
                    await self._hold(conn)
        except (DBAPIError, SQLAlchemyError, OSError) as exc:
            log.warning("cluster_jobs_connection_failed", error=str(exc).splitlines()[0])

    async def _try_lock(self, conn: AsyncConnection) -> bool:
        got = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key})
        await conn.commit()  # the lock is the session's; end the transaction around it
        return bool(got)

    async def _hold(self, conn: AsyncConnection) -> None:
        self.held = True
        log.info("cluster_jobs_acquired", key=self._key)
        try:
            async with self._jobs():
                while True:
                    await asyncio.sleep(self._check_s)
                    await conn.scalar(text("SELECT 1"))
                    await conn.commit()
        finally:
            self.held = False
            log.info("cluster_jobs_released", key=self._key)
            # Never back to the pool with the lock: closing the session frees it.
            with suppress(Exception):
                await conn.invalidate()
