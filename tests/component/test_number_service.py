"""The number life cycle through the service: real database, every transition audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db import ledger
from callcontrol.db.models import (
    Account,
    ForwardingDestination,
    LedgerEntry,
    Number,
    NumberEvent,
)
from callcontrol.domain.errors import CurrencyMismatch, IllegalTransition, NotPermitted
from callcontrol.domain.vocabulary import DestinationType, LedgerKind, NumberKind, NumberState
from callcontrol.services.errors import InsufficientFunds, NoNumberAvailable, RefundRefused
from callcontrol.services.numbers import ForwardTo, NumberService
from callcontrol.services.tables import NumberBillingState

Sessions = async_sessionmaker[AsyncSession]
S = NumberState
MONDAY = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
SIP = ForwardTo(DestinationType.SIP_URI, "sip:alice@sip.other-provider.example")


class FakeMailer:
    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[EmailMessage] = []
        self.fail = fail

    async def send(self, message: EmailMessage) -> None:
        if self.fail:
            raise OSError("mail server down")
        self.sent.append(message)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY)


@pytest.fixture
def service(db_session: Sessions, mailer: FakeMailer, clock: Clock) -> NumberService:
    return NumberService(sessions=db_session, mailer=mailer, clock=clock)


async def make_account(sessions: Sessions, balance: int = 100_00, currency: str = "EUR") -> int:
    async with sessions() as session, session.begin():
        account = Account(name="Acme", email="owner@acme.example", currency=currency)
        session.add(account)
        await session.flush()
        if balance:
            await ledger.post(
                session, account_id=account.id, kind=LedgerKind.ADJUSTMENT,
                amount_minor=balance, currency=currency,
            )  # fmt: skip
        return account.id


_serial = iter(range(1000, 10_000))


async def make_number(sessions: Sessions, **fields: object) -> int:
    values: dict[str, object] = {
        "e164": f"+4930{next(_serial)}", "country_code": 49, "region": "DE", "city": "Berlin",
        "kind": NumberKind.VOICE, "state": S.AVAILABLE, "monthly_fee_minor": 5_00,
        "setup_fee_minor": 10_00, "currency": "EUR",
    }  # fmt: skip
    values.update(fields)
    async with sessions() as session, session.begin():
        number = Number(**values)
        session.add(number)
        await session.flush()
        return number.id


async def number_of(sessions: Sessions, number_id: int) -> Number:
    async with sessions() as session:
        number = await session.get(Number, number_id)
        assert number is not None
        return number


async def events_of(sessions: Sessions, number_id: int) -> list[tuple[str | None, str, str]]:
    async with sessions() as session:
        rows = await session.scalars(
            sa.select(NumberEvent)
            .where(NumberEvent.number_id == number_id)
            .order_by(NumberEvent.id)
        )
        return [(e.from_state, e.to_state, e.actor) for e in rows]


async def balance_of(sessions: Sessions, account_id: int) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(sa.select(Account.balance_minor).where(Account.id == account_id))
            or 0
        )


async def entries_of(sessions: Sessions, account_id: int) -> list[tuple[str, int]]:
    async with sessions() as session:
        rows = await session.scalars(
            sa.select(LedgerEntry)
            .where(LedgerEntry.account_id == account_id, LedgerEntry.kind != LedgerKind.ADJUSTMENT)
            .order_by(LedgerEntry.id)
        )
        return [(e.kind.value, e.amount_minor) for e in rows]


async def active_number(service: NumberService, sessions: Sessions, account: int) -> int:
    number_id = await make_number(sessions)
    await service.buy(number_id, account)
    await service.activate(number_id)
    return number_id


# -- reservation ------------------------------------------------------------------------------


async def test_reserving_holds_the_number_for_the_account_and_writes_an_audit_row(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    number_id = await make_number(db_session)

    change = await service.reserve(number_id, account)

    number = await number_of(db_session, number_id)
    assert (change.from_state, change.to_state) == (S.AVAILABLE, S.RESERVED)
    assert (number.state, number.account_id) == (S.RESERVED, account)
    assert number.reserved_until == MONDAY + timedelta(days=2)
    assert await events_of(db_session, number_id) == [
        ("available", "reserved", f"account:{account}")
    ]


async def test_releasing_a_reservation_returns_the_number_to_the_pool(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    number_id = await make_number(db_session)
    await service.reserve(number_id, account)

    await service.release(number_id, account)

    number = await number_of(db_session, number_id)
    assert (number.state, number.account_id, number.reserved_until) == (S.AVAILABLE, None, None)


async def test_another_account_cannot_buy_a_reserved_number_and_nothing_changes(
    service: NumberService, db_session: Sessions
) -> None:
    holder, other = await make_account(db_session), await make_account(db_session)
    number_id = await make_number(db_session)
    await service.reserve(number_id, holder)

    with pytest.raises(NotPermitted, match="reserved for another account"):
        await service.buy(number_id, other)

    assert (await number_of(db_session, number_id)).account_id == holder
    assert await balance_of(db_session, other) == 100_00
    assert len(await events_of(db_session, number_id)) == 1


async def test_an_expired_reservation_returns_to_the_pool(
    service: NumberService, db_session: Sessions, clock: Clock
) -> None:
    account = await make_account(db_session)
    number_id = await make_number(db_session)
    await service.reserve(number_id, account)

    assert await service.expire_reservations() == 0
    clock.now += timedelta(days=2)
    assert await service.expire_reservations() == 1

    assert (await number_of(db_session, number_id)).state is S.AVAILABLE
    assert (await events_of(db_session, number_id))[-1] == ("reserved", "available", "system")


# -- purchase and activation ------------------------------------------------------------------


async def test_buying_charges_the_setup_fee_and_leaves_the_number_pending(
    service: NumberService, db_session: Sessions, mailer: FakeMailer
) -> None:
    account = await make_account(db_session)
    number_id = await make_number(db_session)

    change = await service.buy(number_id, account)

    assert change.to_state is S.PENDING
    assert await entries_of(db_session, account) == [("setup_fee", -10_00)]
    assert mailer.sent == []


async def test_buying_without_a_balance_for_setup_and_first_month_is_refused(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session, balance=14_99)
    number_id = await make_number(db_session)

    with pytest.raises(InsufficientFunds):
        await service.buy(number_id, account)

    assert (await number_of(db_session, number_id)).state is S.AVAILABLE
    assert await entries_of(db_session, account) == []


async def test_buying_a_number_priced_in_another_currency_is_refused(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session, currency="USD")
    number_id = await make_number(db_session)

    with pytest.raises(CurrencyMismatch):
        await service.buy(number_id, account)


async def test_activation_charges_the_first_month_and_mails_the_number(
    service: NumberService, db_session: Sessions, mailer: FakeMailer
) -> None:
    account = await make_account(db_session)
    number_id = await make_number(db_session)
    await service.buy(number_id, account)

    await service.activate(number_id)

    number = await number_of(db_session, number_id)
    assert (number.state, number.activated_on) == (S.ACTIVE, MONDAY.date())
    assert await entries_of(db_session, account) == [("setup_fee", -10_00), ("monthly_fee", -5_00)]
    [mail] = mailer.sent
    assert mail["To"] == "owner@acme.example"
    assert number.e164 in mail["Subject"] and number.e164 in mail.get_content()
    assert [e[:2] for e in await events_of(db_session, number_id)] == [
        ("available", "pending"),
        ("pending", "active"),
    ]


async def test_a_mail_failure_does_not_roll_back_the_activation(db_session: Sessions) -> None:
    service = NumberService(sessions=db_session, mailer=FakeMailer(fail=True), clock=Clock(MONDAY))
    account = await make_account(db_session)
    number_id = await make_number(db_session)
    await service.buy(number_id, account)

    await service.activate(number_id)

    assert (await number_of(db_session, number_id)).state is S.ACTIVE


async def test_a_number_needing_documents_is_activated_only_after_they_are_accepted(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    number_id = await make_number(db_session, needs_documents=True)
    await service.buy(number_id, account)

    with pytest.raises(IllegalTransition, match="documents have not been accepted"):
        await service.activate(number_id)
    await service.accept_documents(number_id)
    await service.activate(number_id)

    assert (await number_of(db_session, number_id)).state is S.ACTIVE
    assert [e[2] for e in await events_of(db_session, number_id)] == [
        f"account:{account}",
        "operator",
        "system",
    ]


async def test_activating_a_number_in_the_pool_is_refused_with_a_clear_error_and_no_change(
    service: NumberService, db_session: Sessions
) -> None:
    number_id = await make_number(db_session)

    with pytest.raises(IllegalTransition, match=r"available -> active by 'activate'"):
        await service.activate(number_id)

    assert (await number_of(db_session, number_id)).state is S.AVAILABLE
    assert await events_of(db_session, number_id) == []


async def test_automatic_purchase_picks_a_number_of_the_asked_city(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    await make_number(db_session, city="Hamburg")
    munich = await make_number(db_session, city="Munich")

    change = await service.buy_automatic(account, "DE", "Munich")

    assert (change.number_id, change.to_state) == (munich, S.PENDING)


async def test_automatic_purchase_in_an_empty_region_says_no_number_is_available(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    await make_number(db_session)

    with pytest.raises(NoNumberAvailable, match="AT"):
        await service.buy_automatic(account, "AT")


# -- free tests -------------------------------------------------------------------------------


async def test_a_free_test_forwards_for_an_hour_then_returns_the_number_to_the_pool(
    service: NumberService, db_session: Sessions, clock: Clock
) -> None:
    account = await make_account(db_session, balance=0)
    number_id = await make_number(db_session)

    await service.start_test(account, SIP, number_id=number_id)
    async with db_session() as session:
        targets = (await session.scalars(sa.select(ForwardingDestination.target))).all()
    assert targets == [SIP.target]
    number = await number_of(db_session, number_id)
    assert (number.state, number.test_account_id) == (S.TESTING, account)
    assert number.test_expires_at == MONDAY + timedelta(hours=1)

    clock.now += timedelta(minutes=59)
    assert await service.expire_tests() == 0
    clock.now += timedelta(minutes=1)
    assert await service.expire_tests() == 1

    number = await number_of(db_session, number_id)
    assert (number.state, number.account_id, number.test_account_id) == (S.AVAILABLE, None, None)
    async with db_session() as session:
        assert (await session.scalars(sa.select(ForwardingDestination))).all() == []


async def test_an_account_may_test_one_number_at_a_time(
    service: NumberService, db_session: Sessions, clock: Clock
) -> None:
    account = await make_account(db_session)
    await make_number(db_session)
    second = await make_number(db_session)
    await service.start_test(account, SIP, region="DE")

    with pytest.raises(NotPermitted, match="already has a number on test"):
        await service.start_test(account, SIP, number_id=second)

    clock.now += timedelta(hours=1)
    await service.expire_tests()
    await service.start_test(account, SIP, number_id=second)


async def test_sms_numbers_are_never_lent_for_a_test(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    number_id = await make_number(db_session, kind=NumberKind.SMS_ONCE)

    with pytest.raises(IllegalTransition, match="never lent"):
        await service.start_test(account, SIP, number_id=number_id)


# -- the end of a rental ----------------------------------------------------------------------


async def test_deleting_records_the_day_and_remembers_the_former_owner(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    number_id = await active_number(service, db_session, account)

    await service.delete(number_id, account)

    number = await number_of(db_session, number_id)
    assert (number.state, number.account_id) == (S.DISCONNECTED, None)
    assert number.previous_account_id == account
    async with db_session() as session:
        state = await session.get(NumberBillingState, number_id)
    assert state is not None and state.deleted_on == MONDAY.date()


async def test_only_the_owner_may_delete_a_number(
    service: NumberService, db_session: Sessions
) -> None:
    owner, stranger = await make_account(db_session), await make_account(db_session)
    number_id = await active_number(service, db_session, owner)

    with pytest.raises(NotPermitted):
        await service.delete(number_id, stranger)

    assert (await number_of(db_session, number_id)).state is S.ACTIVE


async def test_the_former_owner_takes_a_deleted_number_back_paying_the_setup_fee_again(
    service: NumberService, db_session: Sessions, clock: Clock
) -> None:
    account = await make_account(db_session)
    number_id = await active_number(service, db_session, account)
    await service.delete(number_id, account)
    clock.now += timedelta(days=3)

    change = await service.give_back(number_id, account)

    assert change.to_state is S.ACTIVE
    assert await entries_of(db_session, account) == [
        ("setup_fee", -10_00), ("monthly_fee", -5_00), ("setup_fee", -10_00), ("monthly_fee", -5_00)
    ]  # fmt: skip
    assert (await number_of(db_session, number_id)).activated_on == clock.now.date()


async def test_the_former_owner_takes_a_number_back_from_the_pool(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    number_id = await make_number(db_session, previous_account_id=account)

    change = await service.give_back(number_id, account)

    assert (change.from_state, change.to_state) == (S.AVAILABLE, S.ACTIVE)


async def test_nobody_else_takes_a_deleted_number_back(
    service: NumberService, db_session: Sessions
) -> None:
    owner, stranger = await make_account(db_session), await make_account(db_session)
    number_id = await active_number(service, db_session, owner)
    await service.delete(number_id, owner)

    with pytest.raises(NotPermitted, match="not the former owner"):
        await service.give_back(number_id, stranger)


# -- balance ----------------------------------------------------------------------------------


async def test_a_call_charge_that_makes_the_balance_negative_suspends_the_numbers(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    number_id = await active_number(service, db_session, account)
    async with db_session() as session, session.begin():
        await ledger.post(
            session, account_id=account, kind=LedgerKind.CALL_CHARGE, amount_minor=-90_00,
            currency="EUR",
        )  # fmt: skip

    changes = await service.on_balance_change(account)

    assert [(c.number_id, c.to_state) for c in changes] == [(number_id, S.SUSPENDED)]
    async with db_session() as session:
        state = await session.get(NumberBillingState, number_id)
    assert state is not None and state.suspended_since == MONDAY.date()


async def test_a_top_up_that_makes_the_balance_positive_reactivates_at_once(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    number_id = await active_number(service, db_session, account)
    async with db_session() as session, session.begin():
        await ledger.post(
            session, account_id=account, kind=LedgerKind.CALL_CHARGE, amount_minor=-86_00,
            currency="EUR",
        )  # fmt: skip
    await service.on_balance_change(account)

    result = await service.top_up(account, 2_00, "payment:1")

    assert (result.balance_minor, result.reactivated) == (1_00, (number_id,))
    assert (await number_of(db_session, number_id)).state is S.ACTIVE


async def test_a_top_up_to_exactly_zero_keeps_the_number_suspended(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session)
    number_id = await active_number(service, db_session, account)
    async with db_session() as session, session.begin():
        await ledger.post(
            session, account_id=account, kind=LedgerKind.CALL_CHARGE, amount_minor=-86_00,
            currency="EUR",
        )  # fmt: skip
    await service.on_balance_change(account)

    result = await service.top_up(account, 1_00, "payment:1")

    assert (result.balance_minor, result.reactivated) == (0, ())
    assert (await number_of(db_session, number_id)).state is S.SUSPENDED


async def test_a_top_up_is_credited_once_per_idempotency_key(
    service: NumberService, db_session: Sessions
) -> None:
    account = await make_account(db_session, balance=0)

    first = await service.top_up(account, 20_00, "payment:abc")
    again = await service.top_up(account, 20_00, "payment:abc")

    assert (first.posted, again.posted) == (True, False)
    assert await balance_of(db_session, account) == 20_00


# -- refunds ----------------------------------------------------------------------------------


async def test_an_order_cancelled_within_two_working_days_is_refunded(
    service: NumberService, db_session: Sessions, clock: Clock
) -> None:
    clock.now = datetime(2024, 3, 8, 16, 0, tzinfo=UTC)  # a Friday
    account = await make_account(db_session)
    number_id = await active_number(service, db_session, account)
    clock.now = datetime(2024, 3, 12, 15, 0, tzinfo=UTC)  # Tuesday: within 48 working hours

    change = await service.refund_order(number_id)

    assert change.to_state is S.DISCONNECTED
    assert await balance_of(db_session, account) == 100_00
    assert [k for k, _ in await entries_of(db_session, account)] == [
        "setup_fee", "monthly_fee", "refund", "refund"
    ]  # fmt: skip


async def test_an_order_older_than_two_working_days_is_not_refunded(
    service: NumberService, db_session: Sessions, clock: Clock
) -> None:
    account = await make_account(db_session)
    number_id = await active_number(service, db_session, account)
    clock.now += timedelta(days=2, minutes=1)

    with pytest.raises(RefundRefused, match="more than 2 working days"):
        await service.refund_order(number_id)

    assert (await number_of(db_session, number_id)).state is S.ACTIVE
    assert await balance_of(db_session, account) == 85_00


async def test_the_whole_life_of_a_number_is_in_its_audit_trail(
    service: NumberService, db_session: Sessions, clock: Clock
) -> None:
    account = await make_account(db_session)
    number_id = await make_number(db_session)
    await service.reserve(number_id, account)
    await service.buy(number_id, account)
    await service.activate(number_id)
    async with db_session() as session, session.begin():
        await ledger.post(
            session, account_id=account, kind=LedgerKind.CALL_CHARGE, amount_minor=-90_00,
            currency="EUR",
        )  # fmt: skip
    await service.on_balance_change(account)
    await service.top_up(account, 50_00, "payment:2")
    await service.delete(number_id, account)
    await service.give_back(number_id, account)

    assert [e[:2] for e in await events_of(db_session, number_id)] == [
        ("available", "reserved"),
        ("reserved", "pending"),
        ("pending", "active"),
        ("active", "suspended"),
        ("suspended", "active"),
        ("active", "disconnected"),
        ("disconnected", "active"),
    ]
