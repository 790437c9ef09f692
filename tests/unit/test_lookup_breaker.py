"""Routing lookups fail fast while the database is away (repositories/breaker.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.exc import OperationalError

from callcontrol.engine.ports import LookupUnavailable
from callcontrol.repositories.breaker import LookupGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Database:
    def __init__(self) -> None:
        self.calls = 0
        self.down = False
        self.hang = False

    async def lookup(self) -> str:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(10)
        if self.down:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("refused"))
        return "snapshot"


def run(guard: LookupGuard, db: Database) -> str | type[BaseException]:
    try:
        return asyncio.run(guard.call(db.lookup))
    except LookupUnavailable:
        return LookupUnavailable


def test_after_a_failure_lookups_fail_at_once_then_one_trial_closes_the_circuit() -> None:
    clock, db = Clock(), Database()
    guard = LookupGuard(timeout_s=0.5, open_s=1.0, clock=clock)
    assert run(guard, db) == "snapshot"
    db.down = True
    assert run(guard, db) is LookupUnavailable
    assert db.calls == 2
    for _ in range(5):
        assert run(guard, db) is LookupUnavailable
    assert db.calls == 2  # the circuit is open: no round trip at all
    assert guard.fast_failures == 5
    clock.now += 1.0
    assert run(guard, db) is LookupUnavailable  # the trial fails: open again
    assert db.calls == 3
    assert run(guard, db) is LookupUnavailable and db.calls == 3
    db.down = False
    clock.now += 1.0
    assert run(guard, db) == "snapshot"  # the trial succeeds: closed
    assert not guard.open
    assert run(guard, db) == "snapshot" and db.calls == 5


def test_a_lookup_that_hangs_is_cut_at_the_deadline() -> None:
    db = Database()
    db.hang = True
    guard = LookupGuard(timeout_s=0.05, open_s=1.0)
    assert run(guard, db) is LookupUnavailable
    assert guard.open


def test_while_a_trial_is_out_the_other_lookups_still_fail_at_once() -> None:
    clock, db = Clock(), Database()
    guard = LookupGuard(timeout_s=1.0, open_s=1.0, clock=clock)
    db.down = True
    assert run(guard, db) is LookupUnavailable
    clock.now += 2
    db.down, db.hang = False, True

    async def both() -> list[object]:
        trial = asyncio.create_task(guard.call(db.lookup))
        await asyncio.sleep(0)
        other = await asyncio.gather(guard.call(db.lookup), return_exceptions=True)
        trial.cancel()
        await asyncio.gather(trial, return_exceptions=True)
        return [type(other[0])]

    assert asyncio.run(both()) == [LookupUnavailable]
    assert db.calls == 2  # the first failure and the trial; not the other lookup
    db.hang = False
    assert run(guard, db) == "snapshot"  # the cancelled trial did not jam the circuit


def test_an_error_that_is_not_the_databases_fails_its_call_alone() -> None:
    guard = LookupGuard(timeout_s=1.0)

    async def broken() -> str:
        raise KeyError("bad row")

    with pytest.raises(KeyError):
        asyncio.run(guard.call(broken))
    assert not guard.open


def test_a_deadline_missed_because_the_engine_stood_still_is_tried_again() -> None:
    """SIGSTOP (or a frozen VM) while a lookup waits: when the process runs again
    the deadline fires long after it was due. The database was not slow: the
    lookup runs once more and the circuit stays closed."""
    guard = LookupGuard(timeout_s=0.1)
    db = Database()

    async def lookup() -> str:
        db.calls += 1
        if db.calls == 1:
            await asyncio.sleep(0.05)  # would have answered in time...
        return "snapshot"

    async def scenario() -> str:
        waiting = asyncio.ensure_future(guard.call(lookup))
        await asyncio.sleep(0)  # the lookup is out
        time.sleep(1.3)  # noqa: ASYNC251 - ...but the whole process stands still
        return await waiting

    assert asyncio.run(scenario()) == "snapshot"
    assert db.calls == 2 and not guard.open


def test_a_deadline_missed_on_time_still_opens_the_circuit_after_one_retry_at_most() -> None:
    guard = LookupGuard(timeout_s=0.1)
    db = Database()
    db.hang = True
    assert run(guard, db) is LookupUnavailable
    assert db.calls == 1 and guard.open  # on time: the database's fault, no retry
