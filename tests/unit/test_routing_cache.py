"""The routing fallback: a number's last snapshot serves a call while the database
is away, but never once it is older than the cache age; while the database
answers, every change counts at once. A fake directory and a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from callcontrol.domain.routing import NumberSnapshot
from callcontrol.domain.vocabulary import NumberKind, NumberState
from callcontrol.repositories.routing_cache import FallbackNumberDirectory

ACTIVE = NumberSnapshot(
    number_id=1, account_id=1, e164="+4930123456", kind=NumberKind.VOICE,
    state=NumberState.ACTIVE, balance_minor=500, currency="EUR",
)  # fmt: skip
SUSPENDED = replace(ACTIVE, state=NumberState.SUSPENDED)


class DatabaseAway(Exception):
    pass


@dataclass
class Directory:
    numbers: dict[str, NumberSnapshot] = field(default_factory=dict)
    away: bool = False
    lookups: int = 0

    async def snapshot(self, did: str) -> NumberSnapshot | None:
        self.lookups += 1
        if self.away:
            raise DatabaseAway("connection refused")
        return self.numbers.get(did)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def cached(directory: Directory, clock: Clock, max_age_s: float = 5.0) -> FallbackNumberDirectory:
    return FallbackNumberDirectory(directory, max_age_s=max_age_s, clock=clock)


async def test_while_the_database_answers_every_lookup_goes_to_it_and_a_suspension_counts_at_once() -> (  # noqa: E501
    None
):
    directory, clock = Directory({"+4930123456": ACTIVE}), Clock()
    cache = cached(directory, clock)
    assert await cache.snapshot("+4930123456") == ACTIVE
    directory.numbers["+4930123456"] = SUSPENDED
    clock.now += 0.1
    assert await cache.snapshot("+4930123456") == SUSPENDED
    assert directory.lookups == 2


async def test_during_an_outage_a_snapshot_younger_than_the_age_is_served() -> None:
    directory, clock = Directory({"+4930123456": ACTIVE}), Clock()
    cache = cached(directory, clock)
    await cache.snapshot("+4930123456")
    directory.away = True
    clock.now += 4.9
    assert await cache.snapshot("+4930123456") == ACTIVE
    assert cache.served_from_cache == 1


async def test_a_snapshot_as_old_as_the_age_is_not_served_and_the_failure_goes_on() -> None:
    directory, clock = Directory({"+4930123456": ACTIVE}), Clock()
    cache = cached(directory, clock)
    await cache.snapshot("+4930123456")
    directory.away = True
    clock.now += 5.0
    with pytest.raises(DatabaseAway):
        await cache.snapshot("+4930123456")


async def test_a_number_suspended_just_before_the_outage_is_not_forwardable_past_the_age() -> None:
    """Active read at t, suspended in the database at t+1, database away from t+2:
    the stale active snapshot may serve until t+5, not a moment later."""
    directory, clock = Directory({"+4930123456": ACTIVE}), Clock()
    cache = cached(directory, clock)
    read_at = clock.now
    await cache.snapshot("+4930123456")
    directory.numbers["+4930123456"] = SUSPENDED
    directory.away = True
    for offset in (2.0, 4.99):
        clock.now = read_at + offset
        assert (await cache.snapshot("+4930123456")) == ACTIVE
    clock.now = read_at + 5.0
    with pytest.raises(DatabaseAway):
        await cache.snapshot("+4930123456")


async def test_a_did_never_read_gets_the_failure_and_an_unknown_did_stays_unknown() -> None:
    directory, clock = Directory({}), Clock()
    cache = cached(directory, clock)
    assert await cache.snapshot("+4930000000") is None
    directory.away = True
    assert await cache.snapshot("+4930000000") is None  # kept: a 404 stays a 404
    with pytest.raises(DatabaseAway):
        await cache.snapshot("+4930999999")


async def test_the_cache_keeps_at_most_its_bound_of_numbers() -> None:
    directory, clock = Directory({f"+49301{n:05d}": ACTIVE for n in range(10)}), Clock()
    cache = FallbackNumberDirectory(directory, max_age_s=5.0, max_entries=4, clock=clock)
    for n in range(10):
        clock.now += 0.01
        await cache.snapshot(f"+49301{n:05d}")
    directory.away = True
    with pytest.raises(DatabaseAway):
        await cache.snapshot("+4930100000")  # the oldest went
    assert await cache.snapshot("+4930100009") == ACTIVE


def test_a_cache_age_of_zero_is_refused_the_composition_root_leaves_the_wrapper_out() -> None:
    with pytest.raises(ValueError):
        FallbackNumberDirectory(Directory(), max_age_s=0)
