"""The routing change feed: every write that can change a DID's snapshot is logged by
the database's triggers and comes out of ``RoutingChangeFeed.since`` as that DID,
on both backends; ids committed out of order (PostgreSQL) are not lost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.engine import create_engine, downgrade, upgrade
from callcontrol.db.models import (
    Account,
    ForwardingDestination,
    ForwardingRule,
    MediaFile,
    Number,
    Rate,
    RoutingChange,
)
from callcontrol.domain.vocabulary import (
    DestinationType,
    ForwardingMode,
    LedgerKind,
    MediaKind,
    NumberKind,
    NumberState,
)
from callcontrol.repositories.routing_changes import RoutingChangeFeed
from callcontrol.settings import DatabaseSettings

Sessions = async_sessionmaker[AsyncSession]
FIRST, SECOND, OTHERS = "+493055500001", "+493055500002", "+493055500009"


@dataclass(frozen=True)
class World:
    """Two numbers of one account (the first with a greeting and a forwarding rule
    with one destination) and a number of another account."""

    account_id: int
    other_account_id: int
    first_id: int
    second_id: int
    greeting_id: int
    destination_id: int


def _number(e164: str, account_id: int, **fields: object) -> Number:
    return Number(
        e164=e164, country_code=49, region="DE", city="Berlin", kind=NumberKind.VOICE,
        state=NumberState.ACTIVE, account_id=account_id, monthly_fee_minor=5_00,
        setup_fee_minor=0, currency="EUR", **fields,
    )  # fmt: skip


async def _account(session: AsyncSession, name: str) -> int:
    account = Account(name=name, email=f"{name.lower()}@example.com", currency="EUR")
    session.add(account)
    await session.flush()
    return account.id


@pytest.fixture
async def world(db_session: Sessions) -> World:
    async with db_session() as session, session.begin():
        account_id = await _account(session, "Acme")
        other_id = await _account(session, "Other")
        greeting = MediaFile(
            account_id=account_id, kind=MediaKind.GREETING, original_name="hello.wav",
            stored_name="acme/hello.wav", size_bytes=1_000, duration_ms=2_000,
        )  # fmt: skip
        session.add(greeting)
        await session.flush()
        first = _number(FIRST, account_id, greeting_media_id=greeting.id)
        second = _number(SECOND, account_id)
        session.add_all([first, second, _number(OTHERS, other_id)])
        await session.flush()
        session.add(ForwardingRule(number_id=first.id, mode=ForwardingMode.SIMULTANEOUS))
        destination = ForwardingDestination(
            number_id=first.id, position=1, type=DestinationType.SIP_URI,
            target="sip:alice@example.com", ring_timeout_s=20,
        )  # fmt: skip
        session.add(destination)
        await session.flush()
        return World(account_id, other_id, first.id, second.id, greeting.id, destination.id)


@pytest.fixture
def feed(db_engine: AsyncEngine, world: World) -> RoutingChangeFeed:
    return RoutingChangeFeed(db_engine)


async def _changed_by(
    feed: RoutingChangeFeed, sessions: Sessions, *statements: sa.Executable
) -> frozenset[str] | None:
    """What ``since`` reports after ``statements`` ran in one transaction."""
    start = await feed.cursor()
    async with sessions() as session, session.begin():
        for statement in statements:
            await session.execute(statement)
    cursor, changed = await feed.since(start)
    assert cursor > start
    return changed


async def test_nothing_changed_gives_the_same_cursor_and_no_number(
    feed: RoutingChangeFeed,
) -> None:
    start = await feed.cursor()
    assert start > 0  # the seeding itself was logged
    assert await feed.since(start) == (start, frozenset())
    assert await feed.since(start) == (start, frozenset())


async def test_the_cursor_of_an_empty_log_is_zero(db_engine: AsyncEngine) -> None:
    feed = RoutingChangeFeed(db_engine)
    assert await feed.cursor() == 0
    assert await feed.since(0) == (0, frozenset())


async def test_reading_from_zero_names_every_number_written(feed: RoutingChangeFeed) -> None:
    _, changed = await feed.since(0)
    assert changed == frozenset({FIRST, SECOND, OTHERS})


async def test_a_state_change_names_the_number(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    suspend = (
        sa.update(Number).where(Number.id == world.second_id).values(state=NumberState.SUSPENDED)
    )
    assert await _changed_by(feed, db_session, suspend) == frozenset({SECOND})


async def test_a_new_number_is_named(feed: RoutingChangeFeed, db_session: Sessions) -> None:
    start = await feed.cursor()
    async with db_session() as session, session.begin():
        session.add(_number("+493055500003", (await _account(session, "New"))))
    assert (await feed.since(start))[1] == frozenset({"+493055500003"})


async def test_renumbering_names_the_old_and_the_new_e164(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    renumber = sa.update(Number).where(Number.id == world.second_id).values(e164="+493055500004")
    assert await _changed_by(feed, db_session, renumber) == frozenset({SECOND, "+493055500004"})


async def test_each_destination_write_names_its_number(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    add = sa.insert(ForwardingDestination).values(
        number_id=world.first_id, position=2, type=DestinationType.PSTN,
        target="+4915112345678", ring_timeout_s=30,
    )  # fmt: skip
    retarget = (
        sa.update(ForwardingDestination)
        .where(ForwardingDestination.id == world.destination_id)
        .values(target="sip:bob@example.com")
    )
    remove = sa.delete(ForwardingDestination).where(
        ForwardingDestination.id == world.destination_id
    )
    for statement in (add, retarget, remove):
        assert await _changed_by(feed, db_session, statement) == frozenset({FIRST})


async def test_forwarding_rule_writes_name_the_number(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    sequential = (
        sa.update(ForwardingRule)
        .where(ForwardingRule.number_id == world.first_id)
        .values(mode=ForwardingMode.SEQUENTIAL)
    )
    assert await _changed_by(feed, db_session, sequential) == frozenset({FIRST})
    new_rule = sa.insert(ForwardingRule).values(
        number_id=world.second_id, mode=ForwardingMode.SEQUENTIAL
    )
    assert await _changed_by(feed, db_session, new_rule) == frozenset({SECOND})
    no_rule = sa.delete(ForwardingRule).where(ForwardingRule.number_id == world.first_id)
    assert await _changed_by(feed, db_session, no_rule) == frozenset({FIRST})


async def test_a_balance_change_names_every_number_of_the_account(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    start = await feed.cursor()
    async with db_session() as session, session.begin():
        await ledger.post(
            session, account_id=world.account_id, kind=LedgerKind.TOP_UP,
            amount_minor=10_00, currency="EUR",
        )  # fmt: skip
    assert (await feed.since(start))[1] == frozenset({FIRST, SECOND})


async def test_a_currency_change_names_the_account_numbers(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    to_usd = sa.update(Account).where(Account.id == world.other_account_id).values(currency="USD")
    assert await _changed_by(feed, db_session, to_usd) == frozenset({OTHERS})


async def test_an_account_update_leaving_balance_and_currency_names_nothing(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    start = await feed.cursor()
    async with db_session() as session, session.begin():
        await session.execute(
            sa.update(Account)
            .where(Account.id == world.account_id)
            .values(name="Acme GmbH", balance_minor=Account.balance_minor, currency="EUR")
        )
    assert await feed.since(start) == (start, frozenset())


async def test_deleting_a_greeting_names_the_numbers_that_played_it(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    """No trigger on media_files DELETE: the numbers' ON DELETE SET NULL is an UPDATE
    of ``numbers`` and fires its trigger, on both backends."""
    start = await feed.cursor()
    async with db_session() as session, session.begin():
        await session.execute(sa.delete(MediaFile).where(MediaFile.id == world.greeting_id))
    assert (await feed.since(start))[1] == frozenset({FIRST})
    async with db_session() as session:
        logged = await session.scalars(
            sa.select(RoutingChange.e164).where(RoutingChange.id > start)
        )
        assert list(logged) == [FIRST]  # written by the numbers trigger


async def test_replacing_a_greeting_file_names_the_numbers_that_play_it(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    rename = (
        sa.update(MediaFile)
        .where(MediaFile.id == world.greeting_id)
        .values(stored_name="acme/hello-2.wav")
    )
    assert await _changed_by(feed, db_session, rename) == frozenset({FIRST})


async def test_deleting_a_number_names_its_e164(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    """Its rule and destinations go by cascade; their rows name nothing more."""
    remove = sa.delete(Number).where(Number.id == world.first_id)
    assert await _changed_by(feed, db_session, remove) == frozenset({FIRST})


async def test_deleting_an_account_names_the_numbers_it_owned(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    remove = sa.delete(Account).where(Account.id == world.other_account_id)
    assert await _changed_by(feed, db_session, remove) == frozenset({OTHERS})


async def test_any_rates_change_means_everything(
    feed: RoutingChangeFeed, db_session: Sessions
) -> None:
    new_rate = sa.insert(Rate).values(prefix="49", rate_per_minute_minor=2, currency="EUR")
    assert await _changed_by(feed, db_session, new_rate) is None
    cheaper = sa.update(Rate).where(Rate.prefix == "49").values(rate_per_minute_minor=1)
    assert await _changed_by(feed, db_session, cheaper) is None
    assert await _changed_by(feed, db_session, sa.delete(Rate)) is None


async def test_more_changes_than_the_limit_mean_everything(
    db_engine: AsyncEngine, db_session: Sessions, world: World
) -> None:
    feed = RoutingChangeFeed(db_engine, max_changes=2)
    start = await feed.cursor()
    async with db_session() as session, session.begin():
        await session.execute(sa.update(Number).values(state=NumberState.SUSPENDED))
    cursor, changed = await feed.since(start)
    assert changed is None
    assert cursor == await feed.cursor() > start
    assert await feed.since(cursor) == (cursor, frozenset())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def _log(sessions: Sessions, change_id: int, e164: str) -> None:
    """A row as a transaction that committed late would leave it (its id given)."""
    async with sessions() as session, session.begin():
        await session.execute(sa.insert(RoutingChange).values(id=change_id, e164=e164))


def _feed_with(clock: Callable[[], float], engine: AsyncEngine) -> RoutingChangeFeed:
    return RoutingChangeFeed(engine, gap_ttl_s=10.0, clock=clock)


async def test_a_row_committed_below_the_cursor_is_still_seen(
    db_engine: AsyncEngine, db_session: Sessions, world: World
) -> None:
    feed = _feed_with(FakeClock(), db_engine)
    start = await feed.cursor()
    await _log(db_session, start + 2, SECOND)
    cursor, changed = await feed.since(start)
    assert (cursor, changed) == (start + 2, frozenset({SECOND}))

    await _log(db_session, start + 1, FIRST)  # the transaction holding start + 1 commits
    assert await feed.since(cursor) == (start + 2, frozenset({FIRST}))
    assert await feed.since(cursor) == (start + 2, frozenset())


async def test_a_gap_older_than_its_ttl_is_given_up(
    db_engine: AsyncEngine, db_session: Sessions, world: World
) -> None:
    clock = FakeClock()
    feed = _feed_with(clock, db_engine)
    start = await feed.cursor()
    await _log(db_session, start + 2, SECOND)
    cursor, _ = await feed.since(start)

    clock.now += 10.5  # start + 1 rolled back, as far as anyone can tell
    await _log(db_session, start + 1, FIRST)
    assert await feed.since(cursor) == (start + 2, frozenset())


async def test_cursor_counts_missing_recent_ids_as_gaps(
    db_engine: AsyncEngine, db_session: Sessions, world: World
) -> None:
    """A transaction still open while a reader takes its cursor (then syncs) is
    seen when it commits."""
    start = await RoutingChangeFeed(db_engine).cursor()
    await _log(db_session, start + 2, SECOND)
    feed = RoutingChangeFeed(db_engine)
    cursor = await feed.cursor()
    assert cursor == start + 2

    await _log(db_session, start + 1, FIRST)
    assert await feed.since(cursor) == (cursor, frozenset({FIRST}))


@pytest.mark.postgresql_only  # SQLite runs one writer at a time: ids commit in order
async def test_an_earlier_id_committed_after_a_later_one_is_seen(
    feed: RoutingChangeFeed, db_engine: AsyncEngine, world: World
) -> None:
    start = await feed.cursor()
    async with db_engine.connect() as slow, db_engine.connect() as fast:
        await slow.begin()
        await slow.execute(_suspend(world.first_id))  # takes the lower id
        await fast.begin()
        await fast.execute(_suspend(world.second_id))
        await fast.commit()
        cursor, changed = await feed.since(start)
        assert changed == frozenset({SECOND})

        await slow.commit()
        assert await feed.since(cursor) == (cursor, frozenset({FIRST}))


@pytest.mark.postgresql_only
async def test_a_transaction_open_while_the_cursor_is_taken_is_seen(
    feed: RoutingChangeFeed, db_engine: AsyncEngine, world: World
) -> None:
    async with db_engine.connect() as slow, db_engine.connect() as fast:
        await slow.begin()
        await slow.execute(_suspend(world.first_id))
        await fast.begin()
        await fast.execute(_suspend(world.second_id))
        await fast.commit()
        cursor = await feed.cursor()  # then the reader's full sync: FIRST not yet changed

        await slow.commit()
        assert await feed.since(cursor) == (cursor, frozenset({FIRST}))


def _suspend(number_id: int) -> sa.Update:
    return sa.update(Number).where(Number.id == number_id).values(state=NumberState.SUSPENDED)


async def test_prune_deletes_rows_older_than_the_given_time(
    feed: RoutingChangeFeed, db_session: Sessions, world: World
) -> None:
    now = datetime.now(UTC)
    async with db_session() as session, session.begin():
        await session.execute(sa.delete(RoutingChange))
        await session.execute(
            sa.insert(RoutingChange),
            [{"e164": FIRST, "changed_at": now - timedelta(hours=2)},
             {"e164": SECOND, "changed_at": now - timedelta(minutes=59)}],
        )  # fmt: skip
        await session.execute(_suspend(world.second_id))  # logged now, by the trigger

    assert await feed.prune(now - timedelta(hours=1)) == 1
    assert await feed.prune(now - timedelta(hours=1)) == 0
    async with db_session() as session:
        left = await session.scalars(sa.select(RoutingChange.e164).order_by(RoutingChange.id))
        assert list(left) == [SECOND, SECOND]


async def test_routed_numbers_lists_every_e164(feed: RoutingChangeFeed) -> None:
    assert await feed.routed_numbers() == [FIRST, SECOND, OTHERS]


_LEFT_OVER = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'trigger'",
    "postgresql": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    " UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'routing_changes%'",
}


async def test_downgrade_leaves_no_trigger_behind(empty_db_url: str, db_backend: str) -> None:
    """A trigger left on ``numbers`` would fail every write once the log is gone."""
    settings = DatabaseSettings(url=empty_db_url)
    await upgrade(settings)
    await downgrade(settings, "0004")
    engine = create_engine(settings, pooled=False)
    try:
        async with engine.begin() as conn:
            assert list(await conn.scalars(sa.text(_LEFT_OVER[db_backend]))) == []
            await conn.execute(sa.insert(Rate).values(prefix="1", rate_per_minute_minor=1,
                                                      currency="EUR"))  # fmt: skip
    finally:
        await engine.dispose()
