"""Demo data for the local sandbox: one account, one active DID, one rate.

Idempotent: running it again leaves the existing demo untouched. The DID
+4930123456 forwards sequentially to a SIP far end on 127.0.0.3:5080 (start a
SIPp ``far_answer.xml`` there) and then to voicemail.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from callcontrol.db import ledger
from callcontrol.db.engine import create_engine, session_factory, upgrade
from callcontrol.db.models import Account, ForwardingDestination, ForwardingRule, Number, Rate
from callcontrol.domain.vocabulary import (
    DestinationType,
    ForwardingMode,
    LedgerKind,
    NumberKind,
    NumberState,
)
from callcontrol.settings import Settings

DEMO_DID = "+4930123456"
DEMO_FAR_END = "sip:demo@127.0.0.3:5080"


async def seed_demo(settings: Settings) -> str:
    await upgrade(settings.database)
    engine = create_engine(settings.database)
    try:
        async with session_factory(engine)() as session, session.begin():
            if await session.scalar(sa.select(Number.id).where(Number.e164 == DEMO_DID)):
                return f"demo already present: {DEMO_DID}"
            account = Account(name="Demo customer", email="demo@example.invalid", currency="EUR")
            session.add(account)
            await session.flush()
            await ledger.post(
                session,
                account_id=account.id,
                kind=LedgerKind.TOP_UP,
                amount_minor=1000,
                currency="EUR",
                idempotency_key="demo:top-up",
                description="demo credit",
            )
            number = Number(
                e164=DEMO_DID,
                country_code=49,
                region="DE",
                city="Berlin",
                kind=NumberKind.VOICE,
                state=NumberState.ACTIVE,
                account_id=account.id,
                activated_on=datetime.now(UTC).date(),
                monthly_fee_minor=500,
                setup_fee_minor=0,
                currency="EUR",
                voicemail_enabled=True,
            )
            session.add(number)
            await session.flush()
            session.add(ForwardingRule(number_id=number.id, mode=ForwardingMode.SEQUENTIAL))
            session.add(
                ForwardingDestination(
                    number_id=number.id,
                    position=1,
                    type=DestinationType.SIP_URI,
                    target=DEMO_FAR_END,
                    ring_timeout_s=20,
                )
            )
            if not await session.scalar(sa.select(Rate.id).where(Rate.prefix == "49")):
                session.add(Rate(prefix="49", rate_per_minute_minor=2, currency="EUR"))
    finally:
        await engine.dispose()
    return f"demo number {DEMO_DID} (account balance 10.00 EUR) forwards to {DEMO_FAR_END}"


async def demo_account_id(settings: Settings) -> int:
    """The id of the account owning the demo number (after :func:`seed_demo`)."""
    engine = create_engine(settings.database)
    try:
        async with session_factory(engine)() as session:
            account_id = await session.scalar(
                sa.select(Number.account_id).where(Number.e164 == DEMO_DID)
            )
    finally:
        await engine.dispose()
    if account_id is None:
        raise LookupError(f"no demo number {DEMO_DID}: run callcontrol demo seed")
    return int(account_id)
