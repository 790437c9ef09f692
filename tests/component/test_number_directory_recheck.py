"""The call path checks forwarding targets again (``SqlNumberDirectory`` with a policy):
a target stored before a rule existed, or a DID imported after the forwarding was set,
is left out of the call's snapshot instead of being rung."""

from __future__ import annotations

import ipaddress

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import Account, ForwardingDestination, ForwardingRule, Number
from callcontrol.domain.destinations import DestinationPolicy, policy_endpoints
from callcontrol.domain.vocabulary import DestinationType, ForwardingMode, NumberKind, NumberState
from callcontrol.repositories.numbers import SqlNumberDirectory
from callcontrol.settings import MediaSettings

DID, LOOP_DID = "+4930555000001", "+4930555000002"


async def _seed(
    sessions: async_sessionmaker[AsyncSession], targets: list[tuple[DestinationType, str]]
) -> None:
    async with sessions() as session, session.begin():
        account = Account(name="A", email=None, currency="EUR")
        session.add(account)
        await session.flush()
        for did in (DID, LOOP_DID):
            session.add(Number(
                e164=did, country_code=49, region="DE", kind=NumberKind.VOICE,
                state=NumberState.ACTIVE, account_id=account.id, monthly_fee_minor=0,
                setup_fee_minor=0, currency="EUR",
            ))  # fmt: skip
        await session.flush()
        number_id = (await session.scalars(sa.select(Number.id).where(Number.e164 == DID))).one()
        session.add(ForwardingRule(number_id=number_id, mode=ForwardingMode.SIMULTANEOUS))
        for position, (kind, target) in enumerate(targets, 1):
            session.add(ForwardingDestination(
                number_id=number_id, position=position, type=kind, target=target, ring_timeout_s=20
            ))  # fmt: skip


async def test_a_stored_target_on_a_forbidden_address_is_not_rung(
    db_session: async_sessionmaker[AsyncSession], tmp_path: object
) -> None:
    await _seed(
        db_session, [(DestinationType.IP, "169.254.169.254"), (DestinationType.IP, "192.0.2.7")]
    )
    policy = DestinationPolicy(own_endpoints=policy_endpoints([("127.0.0.1", 5038)]))
    directory = SqlNumberDirectory(sessions=db_session, media=MediaSettings(), policy=policy)
    snapshot = await directory.snapshot(DID)
    assert snapshot is not None
    assert [d.target for d in snapshot.destinations] == ["192.0.2.7"]
    unchecked = SqlNumberDirectory(sessions=db_session, media=MediaSettings())
    both = await unchecked.snapshot(DID)
    assert both is not None and len(both.destinations) == 2


async def test_a_pstn_target_that_became_one_of_our_dids_is_not_rung(
    db_session: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(
        db_session, [(DestinationType.PSTN, LOOP_DID), (DestinationType.PSTN, "+4915112345678")]
    )
    lab = DestinationPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    directory = SqlNumberDirectory(sessions=db_session, media=MediaSettings(), policy=lab)
    snapshot = await directory.snapshot(DID)
    assert snapshot is not None
    assert [d.target for d in snapshot.destinations] == ["+4915112345678"]
