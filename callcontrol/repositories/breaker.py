"""Lookups on the call path fail fast while the database is away.

A caller should hear 503 within a fraction of a second when the database is
down, not after a connection attempt or a query has timed out for each call.
``LookupGuard`` keeps two rules for every lookup the routers make:

- **a deadline**: a lookup that has not answered within ``timeout_s`` fails
  (``LookupUnavailable``) - the router answers 503 and the call is not held
  while a half-open connection waits for the kernel to give up;
- **a circuit breaker**: after a lookup failed, every lookup fails at once for
  ``open_s`` (no database round trip at all, so the 503 is immediate); then one
  lookup is let through as a trial while the others still fail at once; the
  trial's success closes the circuit, its failure opens it again.

A deadline that fires long after it was due (``STALL_MARGIN_S``) says that
this process stood still (SIGSTOP, a frozen VM, a blocked loop), not that the
database is slow: the lookup is tried once more on a fresh deadline and the
circuit stays closed, so the calls that waited for the engine are routed once
it runs again instead of getting 503 (and the next second's calls with them).

Only the database's failures count (a driver error, a socket error, the
deadline): a lookup that answers "no such number" is an answer, and a bug in
one number's data fails that call alone instead of opening the circuit.
``GuardedNumberDirectory`` and ``GuardedSipAccountDirectory`` wrap the ports
of ``engine/ports.py``; the routing cache (``routing_cache.py``), if on, wraps
the guarded directory, so an open circuit still serves a young snapshot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import DBAPIError

from callcontrol.domain.outbound import SipAccountFacts
from callcontrol.domain.rating import Rate
from callcontrol.domain.routing import NumberSnapshot
from callcontrol.engine.ports import (
    STALL_MARGIN_S,
    LookupUnavailable,
    NumberDirectory,
    SipAccountDirectory,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

DATABASE_FAILURES: tuple[type[BaseException], ...] = (DBAPIError, OSError)
"""What says the database is away or unusable (asyncpg's and sqlite's errors
arrive wrapped in ``DBAPIError``; a refused connection may come as ``OSError``)."""


class LookupGuard:
    def __init__(
        self,
        *,
        timeout_s: float,
        open_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout_s = timeout_s
        self._open_s = open_s
        self._clock = clock
        self._open_until: float | None = None
        self._trial = False
        self.fast_failures = 0
        """Lookups refused at once while the circuit was open (for the logs)."""

    @property
    def open(self) -> bool:
        return self._open_until is not None

    async def call(self, lookup: Callable[[], Awaitable[T]], *, retried: bool = False) -> T:
        trial = False
        if self._open_until is not None:
            if self._trial or self._clock() < self._open_until:
                self.fast_failures += 1
                raise LookupUnavailable("database unavailable (circuit open)")
            self._trial = trial = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for wraps the lookup in a
            # task of its own, a task per call (3.12's wait_for is this same timeout).
            async with asyncio.timeout(self._timeout_s):
                result = await lookup()
        except TimeoutError as exc:
            late_s = loop.time() - started - self._timeout_s
            if late_s > STALL_MARGIN_S and not retried:
                log.info("lookup_retried_after_stall", late_s=round(late_s, 1))
                if trial:
                    self._trial = False  # no verdict: the retry may be the trial
                return await self.call(lookup, retried=True)
            self._failed(trial)
            raise LookupUnavailable(f"no answer within {self._timeout_s} s") from exc
        except DATABASE_FAILURES as exc:
            self._failed(trial)
            raise LookupUnavailable(f"database error: {str(exc)[:200]}") from exc
        except BaseException:  # another error or cancelled: the trial ends without a verdict
            if trial:
                self._trial = False
            raise
        if self._open_until is not None:
            log.info("database_lookups_restored", refused_meanwhile=self.fast_failures)
            self._open_until = None
            self.fast_failures = 0
        self._trial = False
        return result

    def _failed(self, trial: bool) -> None:
        if self._open_until is None:
            log.warning("database_lookups_failing", open_s=self._open_s)
        self._open_until = self._clock() + self._open_s
        if trial:
            self._trial = False


class GuardedNumberDirectory:
    def __init__(self, directory: NumberDirectory, guard: LookupGuard) -> None:
        self._directory = directory
        self._guard = guard

    async def snapshot(self, did: str) -> NumberSnapshot | None:
        return await self._guard.call(lambda: self._directory.snapshot(did))


class GuardedSipAccountDirectory:
    def __init__(self, accounts: SipAccountDirectory, guard: LookupGuard) -> None:
        self._accounts = accounts
        self._guard = guard

    async def facts(self, login: str) -> SipAccountFacts | None:
        return await self._guard.call(lambda: self._accounts.facts(login))

    async def rate_for(self, digits: str) -> Rate | None:
        return await self._guard.call(lambda: self._accounts.rate_for(digits))
